"""`/api/v1/train-data`: upload labelled tickets (CSV, JSON array, JSON Lines), list them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from shim.api.deps import SettingsDep, StoreDep
from shim.schemas import ErrorPublic, TrainDataSummaryPublic, TrainDataUploadPublic
from shim.store import datasets
from training.text.data import DEFAULT_MIN_CLASS_EXAMPLES

router = APIRouter(prefix="/train-data", tags=["training data"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "labelled tickets: a text column (or subject + body, and a content_type "
        "column for HTML or mail bodies) and queue/priority; or one mail (message/rfc822) or an "
        "mbox file (application/mbox) whose messages all get the `label` values",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "message/rfc822": {"schema": {"type": "string"}},
            "application/mbox": {"schema": {"type": "string"}},
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
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    replace: Annotated[bool, Query(description="replace the stored data")] = False,
    text_column: Annotated[str | None, Query(description="column with the ticket text")] = None,
    queue_column: Annotated[str | None, Query(description="column with the queue")] = None,
    priority_column: Annotated[str | None, Query(description="column with the priority")] = None,
    label_columns: Annotated[
        str | None,
        Query(
            max_length=400,
            description="the label columns, one head each under its column's name (1 to 8), "
            "e.g. queue,priority,type (default: queue and priority, those the data has)",
        ),
    ] = None,
    feature_columns: Annotated[
        str | None,
        Query(
            max_length=400,
            description="columns kept as each ticket's structured fields (1 to 8), e.g. "
            "type,channel, for training with feature_columns; an empty cell is unknown",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        Query(
            description="a mail upload's labels, head:label each (e.g. label=queue:Billing&"
            "label=priority:high): every message of the mail or mbox gets them",
        ),
    ] = None,
    delimiter: Annotated[
        str, Query(min_length=1, max_length=1, description="CSV: one of , ; | : or a tab")
    ] = ",",
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="a retry with the same key adds nothing"),
    ] = None,
) -> TrainDataUploadPublic:
    """Validate the body as `training.text.data` does and store its rows (appended by default)."""
    content_type = request.headers.get("content-type")
    # 415 / 422 before reading a byte of the body.
    datasets.upload_format(content_type)
    options = datasets.UploadOptions(
        replace=replace,
        text_column=text_column,
        queue_column=queue_column,
        priority_column=priority_column,
        label_columns=label_columns,
        feature_columns=feature_columns,
        delimiter=delimiter,
        min_class_examples=int(
            settings.train_defaults.get("min_class_examples", DEFAULT_MIN_CLASS_EXAMPLES)
        ),
        max_text_chars=settings.max_ticket_chars,
        cleaning=settings.cleaning(),
        idempotency_key=idempotency_key,
        labels=tuple(label or ()),
    )
    raw = await request.body()  # its size is capped by shim/api/guard.py
    # Parsing tens of MB takes a while: keep it off the event loop.
    result = await run_in_threadpool(datasets.ingest, store, raw, content_type, options)
    if result.duplicate:
        response.status_code = 200
    return result


@router.get("", response_model=TrainDataSummaryPublic, summary="What training data is stored")
def get_train_data(store: StoreDep) -> TrainDataSummaryPublic:
    """Rows, label distribution and datasets stored so far."""
    return datasets.summary(store)
