"""`/api/v1/models`: list versions, switch the default (rollback), delete a version, and read
a version's pictures and suspected label errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from shim.api.deps import StoreDep, VersionsDep
from shim.errors import NotFound
from shim.quality import label_issues
from shim.schemas import (
    MAX_VERSION,
    ErrorPublic,
    LabelIssuesPublic,
    ModelDeletedPublic,
    ModelVersionListPublic,
    ModelVersionPublic,
)
from training.text.head_names import HEAD_NAME

router = APIRouter(prefix="/models", tags=["model versions"])

VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION, description="model version")]
NOT_FOUND = {404: {"model": ErrorPublic, "description": "unknown version"}}
# The pictures training writes into a model directory (training.fit.evaluate.write_report).
FIGURE = r"^(confusion|reliability)_[A-Za-z0-9_]{1,64}\.png$"
FigurePath = Annotated[
    str,
    Path(
        pattern=FIGURE,
        max_length=90,
        description="confusion_<head>.png or reliability_<head>.png",
    ),
]


@router.get("", response_model=ModelVersionListPublic, summary="Every model version")
async def list_versions(store: StoreDep, versions: VersionsDep) -> ModelVersionListPublic:
    """Every version with its metrics, data size, creation time and whether it is default."""
    loaded = await run_in_threadpool(versions.loaded_versions)
    default = store.versions.default()
    return ModelVersionListPublic(
        default_version=default,
        versions=[
            ModelVersionPublic(**versions.public(r, default, loaded)) for r in store.versions.all()
        ],
    )


@router.post(
    "/{version}/activate",
    response_model=ModelVersionPublic,
    responses=NOT_FOUND,
    summary="Make a version the default",
)
def activate_version(
    version: VersionPath, store: StoreDep, versions: VersionsDep
) -> ModelVersionPublic:
    """Load the version if needed and switch TorchServe's default to it (also a rollback)."""
    record = versions.activate(version)
    return ModelVersionPublic(
        **versions.public(record, store.versions.default(), versions.loaded_versions())
    )


@router.delete(
    "/{version}",
    response_model=ModelDeletedPublic,
    responses={**NOT_FOUND, 409: {"model": ErrorPublic, "description": "it is the default"}},
    summary="Delete a version",
)
def delete_version(version: VersionPath, versions: VersionsDep) -> ModelDeletedPublic:
    """Unload it and remove its archive; the default only when it is the last version."""
    default = versions.delete(version)
    return ModelDeletedPublic(version=version, default_version=default)


@router.get(
    "/{version}/figures/{name}",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "the picture"},
        404: {"model": ErrorPublic, "description": "unknown version or picture"},
    },
    summary="A version's confusion matrix or reliability diagram",
)
def get_figure(version: VersionPath, name: FigurePath, store: StoreDep) -> FileResponse:
    """The PNG that training drew on the test split, per head: `confusion_queue.png`,
    `reliability_priority.png`, ... (a model too small for a test split drew them on validation)."""
    path = store.versions.get(version).model_dir / name
    if not path.is_file():
        raise NotFound(f"version {version} has no picture {name!r}", code="figure_not_found")
    return FileResponse(path, media_type="image/png")


MAX_ISSUES_PAGE = 200
MAX_ISSUES_OFFSET = 100_000


@router.get(
    "/{version}/label-issues",
    response_model=LabelIssuesPublic,
    responses={404: {"model": ErrorPublic, "description": "unknown version or head"}},
    summary="A version's suspected label errors",
)
def get_label_issues(
    version: VersionPath,
    store: StoreDep,
    head: Annotated[
        str | None,
        Query(
            pattern=f"^{HEAD_NAME.pattern}$", max_length=40, description="default: the first head"
        ),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ISSUES_OFFSET, description="issues to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_ISSUES_PAGE, description="issues to list")] = 50,
) -> LabelIssuesPublic:
    """The training rows whose given label the held-out scores contradict most (confident
    learning), the most suspect first: row id, text excerpt, given and suggested label, score.
    Relabel one with POST /api/v1/feedback `{"row_id": ..., "<head>": "<label>"}`."""
    return label_issues.page(store, version, head, offset, limit)
