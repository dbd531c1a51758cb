"""Uploads of labelled tickets: decode, validate with `training.text.data`, store normalised rows.

Validation is exactly the training package's (same columns, aliases, per-row reasons), so a file
that uploads cleanly also trains, and `ticketserve train FILE` reports the same rows.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass, field

from shim.errors import BadRequest, Conflict, Unprocessable, UnsupportedMediaType
from shim.schemas import DatasetPublic, TrainDataSummaryPublic, TrainDataUploadPublic
from shim.store.registry import DatasetRecord, Store, utcnow
from training.config import MAX_NAME_CHARS
from training.text.cleaning import CleaningSettings
from training.text.data import (
    DEFAULT_MIN_CLASS_EXAMPLES,
    DELIMITERS,
    FIELDS_COLUMN,
    MAIL_FORMATS,
    Columns,
    DataError,
    Format,
    TicketData,
    parse_feature_columns,
    parse_label_columns,
    read_table,
    validate,
)
from training.text.head_names import MAX_HEADS, heads_problem
from training.text.labels import label_key
from training.text.text_rules import MAX_TICKET_CHARS, label_problem

MEDIA_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
    "message/rfc822": "eml",
    "application/mbox": "mbox",
}
UPLOAD_SOURCE = "upload"
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class UploadOptions:
    """How to read one upload; columns are detected by name unless given."""

    replace: bool = False
    text_column: str | None = None
    queue_column: str | None = None
    priority_column: str | None = None
    label_columns: str | None = (
        None  # "queue,priority,type": training.text.data.parse_label_columns
    )
    feature_columns: str | None = None  # "type,channel": kept as each row's fields
    delimiter: str = ","
    min_class_examples: int = DEFAULT_MIN_CLASS_EXAMPLES
    max_text_chars: int = MAX_TICKET_CHARS
    cleaning: CleaningSettings = field(default_factory=CleaningSettings)
    idempotency_key: str | None = None  # the client's; else the body's hash is the key
    # A mail upload's labels, "head:label" each (a mail carries none): every message gets them.
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.delimiter not in DELIMITERS:
            shown = ", ".join(repr(d) for d in DELIMITERS)
            raise Unprocessable(
                f"delimiter must be one of {shown}, got {self.delimiter!r}",
                {"loc": ["query", "delimiter"]},
                code="validation_error",
            )
        self.columns()  # 422 before a byte of the body is read
        self.mail_labels()
        key = self.idempotency_key
        if key is not None and not (0 < len(key) <= MAX_KEY_CHARS and key.isprintable()):
            raise BadRequest(
                f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable characters",
                code="bad_idempotency_key",
            )

    def columns(self) -> Columns:
        """The columns to read; a bad `label_columns` is a 422 on the query parameter."""
        try:
            labels = (
                parse_label_columns(self.label_columns, "label_columns")
                if self.label_columns is not None
                else None
            )
        except DataError as exc:
            raise Unprocessable(
                str(exc), {"loc": ["query", "label_columns"]}, code="validation_error"
            ) from exc
        try:
            features = (
                parse_feature_columns(self.feature_columns, "feature_columns")
                if self.feature_columns is not None
                else ()
            )
        except DataError as exc:
            raise Unprocessable(
                str(exc), {"loc": ["query", "feature_columns"]}, code="validation_error"
            ) from exc
        return Columns(
            text=self.text_column,
            queue=self.queue_column,
            priority=self.priority_column,
            labels=labels,
            features=features,
        )

    def mail_labels(self) -> dict[str, str]:
        """The `label` query values as head -> label; 422 naming a malformed one."""
        labels: dict[str, str] = {}
        if len(self.labels) > MAX_HEADS:
            raise Unprocessable(
                f"{len(self.labels)} labels; at most {MAX_HEADS} (one per head)",
                {"loc": ["query", "label"]},
                code="validation_error",
            )
        for value in self.labels:
            head, sep, label = value.partition(":")
            problem = (
                "give each as head:label, e.g. queue:Billing"
                if not sep or not label.strip()
                else f"longer than {MAX_NAME_CHARS} characters"
                if len(label) > MAX_NAME_CHARS
                else heads_problem([head])
                or (f"{head!r} is given twice" if head in labels else None)
                or label_problem(label.strip())
            )
            if problem:
                raise Unprocessable(
                    f"label {value[:80]!r}: {problem}",
                    {"loc": ["query", "label"]},
                    code="validation_error",
                )
            labels[head] = label.strip()
        return labels

    def upload_key(self, raw: bytes, content_type: str | None) -> str:
        """What makes two uploads the same: the client's key, else body, type and options."""
        if self.idempotency_key is not None:
            return "key:" + self.idempotency_key
        digest = hashlib.sha256(raw)
        options = [content_type, self.replace, self.text_column, self.queue_column,
                   self.priority_column, self.label_columns, self.feature_columns,
                   self.delimiter,
                   self.cleaning.to_dict(), self.labels]  # fmt: skip
        digest.update(json.dumps(options).encode())
        return "sha256:" + digest.hexdigest()


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
    if charset is not None:
        try:
            # Only text encodings: rot13, base64 or zlib are codecs too, but not charsets.
            if not codecs.lookup(charset)._is_text_encoding:
                raise LookupError(charset)
        except LookupError as exc:
            raise UnsupportedMediaType(f"unknown charset {charset[:40]!r}") from exc
    return fmt, charset


def ingest(
    store: Store, raw: bytes, content_type: str | None, options: UploadOptions
) -> TrainDataUploadPublic:
    """Validate one body and store its accepted rows as a new dataset.

    An upload repeating an earlier one (same Idempotency-Key, or the same body and options)
    whose dataset is still stored is validated again but not stored twice: `duplicate_of`.
    """
    upload_key = options.upload_key(raw, content_type)
    fmt, charset = upload_format(content_type)
    columns = options.columns()
    if fmt in MAIL_FORMATS:
        columns = _mail_columns(options)
    else:
        raw = _to_utf8(raw, charset)
    try:
        table = read_table(raw, fmt, UPLOAD_SOURCE, options.delimiter)
    except DataError as exc:
        raise BadRequest(str(exc), {"format": fmt}, code="unreadable_body") from exc
    for head, label in options.mail_labels().items() if fmt in MAIL_FORMATS else ():
        table[head] = label
    try:
        data = validate(
            table,
            UPLOAD_SOURCE,
            columns,
            options.min_class_examples,
            options.max_text_chars,
            options.cleaning,
            # A mail upload is a mailbox folder: one label per head, the others come in theirs.
            min_labels=1 if fmt in MAIL_FORMATS else 2,
        )
    except DataError as exc:
        raise Unprocessable(
            str(exc), {"columns": [str(c) for c in table.columns]}, code="invalid_data"
        ) from exc

    with store.upload_lock:
        return _store_upload(store, data, options, fmt, len(raw), upload_key)


def _mail_columns(options: UploadOptions) -> Columns:
    """A mail upload's columns: subject and body, and one head per `label`; 422 without."""
    labels = options.mail_labels()
    if not labels:
        raise Unprocessable(
            "a mail upload needs the labels of its messages: ?label=queue:Billing&"
            "label=priority:high (one per head; every message gets them)",
            {"loc": ["query", "label"]},
            code="validation_error",
        )
    return Columns(labels=tuple(labels))


def _store_upload(
    store: Store,
    data: TicketData,
    options: UploadOptions,
    fmt: Format,
    size: int,
    upload_key: str,
) -> TrainDataUploadPublic:
    earlier = store.datasets.for_key(upload_key)
    if earlier is not None:
        return _upload_public(store, earlier, data, options, duplicate=True)
    heads = list(data.heads)
    stored = store.datasets.all()
    stored_heads = stored[0].heads if stored else heads
    if not options.replace and stored_heads != heads:
        raise Conflict(
            f"this upload has label columns {heads}, the stored data {stored_heads}; "
            "upload the same columns, or replace the stored data with ?replace=true",
            {"upload_heads": heads, "stored_heads": stored_heads},
            code="heads_mismatch",
        )
    # Each row: its text, a label per head, and its fields when feature columns were read.
    frame = data.frame[["text", *heads, *([FIELDS_COLUMN] if FIELDS_COLUMN in data.frame else [])]]
    content = "".join(
        json.dumps(record, ensure_ascii=False) + "\n" for record in frame.to_dict("records")
    ).encode("utf-8")
    dataset_id, path = store.datasets.write_file(content)
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
        store.datasets.add(record, replace=options.replace, upload_key=upload_key)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return _upload_public(store, dataset_id, data, options, duplicate=False)


def _upload_public(
    store: Store, dataset_id: str, data: TicketData, options: UploadOptions, duplicate: bool
) -> TrainDataUploadPublic:
    report = data.report.to_dict()
    datasets = store.datasets.all()
    return TrainDataUploadPublic(
        dataset_id=dataset_id,
        replaced=options.replace and not duplicate,
        duplicate=duplicate,
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
    datasets = store.datasets.all()
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
    codec = codecs.lookup(charset)  # upload_format has checked it
    if codec.name in ("utf-8", "utf-8-sig"):
        return raw
    try:
        return raw.decode(codec.name).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the body is not valid {charset} (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            code="unreadable_body",
        ) from exc
