"""`/api/v1/train-data`: upload labelled tickets (CSV, JSON array, JSON Lines), list them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from shim import datasets
from shim.deps import SettingsDep, StoreDep
from shim.errors import BadRequest, PayloadTooLarge
from shim.schemas import ErrorPublic, TrainDataSummaryPublic, TrainDataUploadPublic

router = APIRouter(prefix="/train-data", tags=["training data"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "labelled tickets: a text column (or subject + body) and queue/priority",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}
ERRORS = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in (
        (400, "the body cannot be read (empty, not UTF-8, malformed CSV/JSON)"),
        (409, "the label columns differ from the stored data's"),
        (413, "the body is larger than the upload limit"),
        (415, "unsupported content type"),
        (422, "no usable rows, a missing column, or a single label"),
    )
}


@router.post(
    "",
    status_code=201,
    response_model=TrainDataUploadPublic,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Upload labelled tickets",
)
async def upload_train_data(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    replace: Annotated[bool, Query(description="replace the stored data")] = False,
    text_column: Annotated[str | None, Query(description="column with the ticket text")] = None,
    queue_column: Annotated[str | None, Query(description="column with the queue")] = None,
    priority_column: Annotated[str | None, Query(description="column with the priority")] = None,
    delimiter: Annotated[str, Query(min_length=1, max_length=1)] = ",",
) -> TrainDataUploadPublic:
    """Validate the body as `training.data` does and store its rows (appended by default)."""
    content_type = request.headers.get("content-type")
    datasets.upload_format(content_type)  # 415 before reading a byte of the body
    raw = await read_body(request, settings.max_upload_bytes)
    options = datasets.UploadOptions(
        replace=replace,
        text_column=text_column,
        queue_column=queue_column,
        priority_column=priority_column,
        delimiter=delimiter,
        min_class_examples=int(settings.train_defaults.get("min_class_examples", 5)),
    )
    # Parsing tens of MB takes a while: keep it off the event loop.
    return await run_in_threadpool(datasets.ingest, store, raw, content_type, options)


@router.get("", response_model=TrainDataSummaryPublic, summary="What training data is stored")
def get_train_data(store: StoreDep) -> TrainDataSummaryPublic:
    """Rows, label distribution and datasets stored so far."""
    return datasets.summary(store)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(f"invalid Content-Length {declared!r}", code="bad_content_length")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body has {'at least ' if size <= limit else ''}{size} bytes; the limit is {limit}",
        {"limit_bytes": limit},
    )
