"""Uploads of labelled tickets: decode, validate with `training.data`, store normalised rows.

Validation is exactly the training package's (same columns, aliases, per-row reasons), so a file
that uploads cleanly also trains, and `ticketserve train FILE` reports the same rows.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

from shim.errors import BadRequest, Conflict, Unprocessable, UnsupportedMediaType
from shim.schemas import DatasetPublic, TrainDataSummaryPublic, TrainDataUploadPublic
from shim.store import DatasetRecord, Store, utcnow
from training.data import Columns, DataError, Format, TicketData, read_table, validate
from training.labels import label_key

MEDIA_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
}
UPLOAD_SOURCE = "upload"


@dataclass(frozen=True)
class UploadOptions:
    """How to read one upload; columns are detected by name unless given."""

    replace: bool = False
    text_column: str | None = None
    queue_column: str | None = None
    priority_column: str | None = None
    delimiter: str = ","
    min_class_examples: int = 5


def upload_format(content_type: str | None) -> tuple[Format, str | None]:
    """(format, charset) from a Content-Type header; 415 for anything else."""
    media_type, _, params = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    fmt = MEDIA_TYPES.get(media_type)
    if fmt is None:
        raise UnsupportedMediaType(
            f"unsupported content type {media_type or '(none)'!r}",
            {"supported": sorted(MEDIA_TYPES)},
        )
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower() or None
    return fmt, charset


def ingest(
    store: Store, raw: bytes, content_type: str | None, options: UploadOptions
) -> TrainDataUploadPublic:
    """Validate one body and store its accepted rows as a new dataset."""
    fmt, charset = upload_format(content_type)
    raw = _to_utf8(raw, charset)
    try:
        table = read_table(raw, fmt, UPLOAD_SOURCE, options.delimiter)
    except DataError as exc:
        raise BadRequest(str(exc), {"format": fmt}, code="unreadable_body") from exc
    columns = Columns(
        text=options.text_column, queue=options.queue_column, priority=options.priority_column
    )
    try:
        data = validate(table, UPLOAD_SOURCE, columns, options.min_class_examples)
    except DataError as exc:
        raise Unprocessable(
            str(exc), {"columns": [str(c) for c in table.columns]}, code="invalid_data"
        ) from exc

    with store.upload_lock:
        return _store_upload(store, data, options, fmt, len(raw))


def _store_upload(
    store: Store, data: TicketData, options: UploadOptions, fmt: Format, size: int
) -> TrainDataUploadPublic:
    heads = list(data.heads)
    stored = store.datasets()
    stored_heads = stored[0].heads if stored else heads
    if not options.replace and stored_heads != heads:
        raise Conflict(
            f"this upload has label columns {heads}, the stored data {stored_heads}; "
            "upload the same columns, or replace the stored data with ?replace=true",
            {"upload_heads": heads, "stored_heads": stored_heads},
            code="heads_mismatch",
        )
    frame = data.frame[["text", *heads]]
    content = "".join(
        json.dumps(record, ensure_ascii=False) + "\n" for record in frame.to_dict("records")
    ).encode("utf-8")
    dataset_id, path = store.write_dataset_file(content)
    record = DatasetRecord(
        id=dataset_id,
        file=path,
        format=fmt,
        bytes=size,
        rows=len(frame),
        heads=heads,
        label_counts=data.report.label_counts,
        created_at=utcnow(),
    )
    try:
        store.add_dataset(record, replace=options.replace)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    report = data.report.to_dict()
    datasets = store.datasets()
    return TrainDataUploadPublic(
        dataset_id=dataset_id,
        replaced=options.replace,
        **{k: report[k] for k in _REPORT_FIELDS},
        stored_rows=sum(d.rows for d in datasets),
        stored_datasets=len(datasets),
    )


_REPORT_FIELDS = (
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "rejected",
    "duplicates_dropped",
    "conflicts",
    "warnings",
    "label_counts",
)


def summary(store: Store) -> TrainDataSummaryPublic:
    """Rows and label distribution over every stored dataset (label spellings merged)."""
    datasets = store.datasets()
    counts: dict[str, dict[str, int]] = {}
    names: dict[tuple[str, str], str] = {}
    for dataset in datasets:
        for head, labels in dataset.label_counts.items():
            merged = counts.setdefault(head, {})
            for label, count in labels.items():
                name = names.setdefault((head, label_key(label)), label)
                merged[name] = merged.get(name, 0) + count
    return TrainDataSummaryPublic(
        rows=sum(d.rows for d in datasets),
        heads=datasets[0].heads if datasets else [],
        label_counts={
            head: dict(sorted(labels.items(), key=lambda kv: -kv[1]))
            for head, labels in counts.items()
        },
        datasets=[
            DatasetPublic(
                id=d.id,
                format=d.format,
                bytes=d.bytes,
                rows=d.rows,
                heads=d.heads,
                label_counts=d.label_counts,
                created_at=d.created_at,
            )
            for d in datasets
        ],
    )


def _to_utf8(raw: bytes, charset: str | None) -> bytes:
    """Re-encode a body declared in another charset; UTF-8 (the default) passes unchanged."""
    if charset is None:
        return raw
    try:
        codec = codecs.lookup(charset)
    except LookupError as exc:
        raise UnsupportedMediaType(f"unknown charset {charset!r}") from exc
    if codec.name in ("utf-8", "utf-8-sig"):
        return raw
    try:
        return raw.decode(codec.name).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the body is not valid {charset} (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            code="unreadable_body",
        ) from exc
