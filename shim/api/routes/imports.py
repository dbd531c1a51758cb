"""`/api/v1/connectors/{name}/import`: a help desk's closed tickets into the training data
(shim/desks/history_import.py, docs/connectors.md#history-import)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from shim.api.deps import ServicesDep
from shim.desks.history_import import ImportState
from shim.schemas import ConnectorImportPublic, ErrorPublic, ImportRequest

router = APIRouter(prefix="/connectors", tags=["connectors"])

ConnectorName = Annotated[
    str,
    Path(
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        max_length=32,
        description="the connector: zammad, znuny or rt",
        examples=["zammad"],
    ),
]
NOT_CONFIGURED = {"model": ErrorPublic, "description": "the connector is not configured"}


@router.post(
    "/{name}/import",
    status_code=202,
    response_model=ConnectorImportPublic,
    responses={
        404: NOT_CONFIGURED,
        409: {"model": ErrorPublic, "description": "an import of this connector is running"},
        422: {"model": ErrorPublic, "description": "since is no day, before 1990 or ahead"},
    },
    summary="Import a help desk's closed tickets as training data",
)
async def start_import(
    name: ConnectorName, body: ImportRequest, services: ServicesDep
) -> ConnectorImportPublic:
    """Start importing the help desk's tickets closed and changed since `since`, page by page in
    the background, with their final queue and priority (mapped to model labels by the label
    map); an import interrupted with the same `since` goes on at its cursor. A ticket imported
    before is not stored again. Follow it with GET."""
    state = await run_in_threadpool(services.imports.start, name, body.since, body.page_size)
    return _public(state)


@router.get(
    "/{name}/import",
    response_model=ConnectorImportPublic,
    responses={404: {"model": ErrorPublic, "description": "not configured, or no import yet"}},
    summary="The state of a help desk's history import",
)
async def get_import(name: ConnectorName, services: ServicesDep) -> ConnectorImportPublic:
    """The running import of the connector, else its latest: pages read, tickets imported,
    duplicates and skipped, the cursor, and the error of a failed one."""
    return _public(await run_in_threadpool(services.imports.status, name))


def _public(state: ImportState) -> ConnectorImportPublic:
    return ConnectorImportPublic.model_validate(state, from_attributes=True)
