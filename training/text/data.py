"""Read labelled tickets from CSV, JSON or JSON Lines, validate them and split them.

Every rule reports where it applies: a file-level problem raises one `DataError` naming it, a
row-level problem rejects that row (row numbers count records from 1, header excluded) and
goes into the `DataReport`, so a user can fix the export and upload again.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from training.errors import UserError
from training.text.cleaning import (
    CONTENT_TYPES,
    PLAIN_TYPE,
    CleaningSettings,
    clean_ticket,
    read_mail,
    read_mbox,
)
from training.text.head_names import feature_columns_problem, heads_problem
from training.text.labels import display_forms, label_key
from training.text.text_rules import (
    MARKUP_FACTOR,
    MAX_TICKET_CHARS,
    field_problem,
    label_problem,
    replace_surrogates,
    text_problem,
)

Format = Literal["csv", "json", "jsonl", "eml", "mbox"]
# Mail: one RFC 822 message, or an mbox file of them; a row per message (subject, body and its
# content_type), without labels (an upload names them: one label per head for every message).
MAIL_FORMATS = ("eml", "mbox")

SUFFIX_FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".eml": "eml",
    ".mbox": "mbox",
}
TEXT_ALIASES = ("text", "ticket_text")
# A row's body type, when a file has this column: text/plain (default), text/html or
# message/rfc822 (the whole mail, whose subject is used when the row has none).
CONTENT_TYPE_COLUMN = "content_type"
# Without label columns named, the heads are those of these that the data has (by alias).
HEAD_ALIASES: dict[str, tuple[str, ...]] = {
    "queue": ("queue", "label", "category", "department"),
    "priority": ("priority",),
}
# Each row's structured fields ({feature column: value}) when feature columns are read.
FIELDS_COLUMN = "fields"
# CSV delimiters a file may use (`delimiter=`); the first is the default.
DELIMITERS = (",", ";", "\t", "|", ":")
OTHER_DELIMITERS = (";", "\t", "|")
# json.loads recurses per nesting level; no ticket needs more than a few.
MAX_JSON_DEPTH_ERROR = "the JSON is nested too deeply"


DEFAULT_MIN_CLASS_EXAMPLES = 5  # rarer labels are reported: they will be learned poorly


class DataError(UserError):
    """The input cannot be used at all; the message says what and where."""


def parse_feature_columns(text: str, where: str = "feature columns") -> tuple[str, ...]:
    """`type,channel` -> the structured fields to keep beside the text; the upload's
    `?feature_columns=`."""
    names = tuple(name.strip() for name in text.split(","))
    if problem := feature_columns_problem(names):
        raise DataError(f"{where}: {problem}")
    return names


def parse_label_columns(text: str, where: str = "label columns") -> tuple[str, ...]:
    """`queue,priority,type` -> the heads to train, each a column of the data; one home for the
    command line's `--label-columns` and the upload's `?label_columns=`."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise DataError(f"{where}: give column names separated by commas, got {text[:200]!r}")
    if problem := heads_problem(names):
        raise DataError(f"{where}: {problem}")
    return names


@dataclass(frozen=True)
class Columns:
    """Which input columns hold the text, the labels and the structured fields. `labels` names
    the label columns, each a head of its own name; else the heads are queue and priority,
    found by alias (or the columns `queue`/`priority` name). `features` names columns kept as
    each row's fields (an empty cell: unknown)."""

    text: str | None = None
    subject: str = "subject"
    body: str = "body"
    queue: str | None = None
    priority: str | None = None
    labels: tuple[str, ...] | None = None
    features: tuple[str, ...] = ()


@dataclass
class RejectedRow:
    row: int
    reason: str


@dataclass
class DataReport:
    """What happened to each input row, in a form the CLI and the API both print."""

    rows_read: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    duplicates_dropped: list[int] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rows_accepted(self) -> int:
        return self.rows_read - len(self.rejected) - len(self.duplicates_dropped)

    def rejection_summary(self, limit: int = 5) -> str:
        """The first rejected rows and why, on one line."""
        shown = "; ".join(f"row {r.row}: {r.reason}" for r in self.rejected[:limit])
        more = len(self.rejected) - limit
        return shown + (f"; and {more} more" if more > 0 else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": len(self.rejected),
            "rejected": [{"row": r.row, "reason": r.reason} for r in self.rejected],
            "duplicates_dropped": len(self.duplicates_dropped),
            "conflicts": self.conflicts,
            "warnings": self.warnings,
            "label_counts": self.label_counts,
        }


@dataclass
class TicketData:
    """Validated tickets: a frame with `text`, one column per head (display-form labels) and,
    with feature columns, `fields` (each row's {column: value}, empty values left out)."""

    frame: pd.DataFrame
    heads: tuple[str, ...]
    report: DataReport


def load_tickets(
    path: str | Path,
    columns: Columns | None = None,
    min_class_examples: int = DEFAULT_MIN_CLASS_EXAMPLES,
    delimiter: str = ",",
    cleaning: CleaningSettings | None = None,
) -> TicketData:
    """Read and validate a ticket file; the format comes from its suffix."""
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
            "use .csv, .json (array of objects) or .jsonl"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file: {exc.strerror}") from exc
    return parse_tickets(
        raw,
        fmt,
        source=str(path),
        columns=columns,
        min_class_examples=min_class_examples,
        delimiter=delimiter,
        cleaning=cleaning,
    )


def parse_tickets(
    raw: bytes,
    fmt: Format,
    source: str = "input",
    columns: Columns | None = None,
    min_class_examples: int = DEFAULT_MIN_CLASS_EXAMPLES,
    delimiter: str = ",",
    cleaning: CleaningSettings | None = None,
) -> TicketData:
    """Validate tickets given as bytes (an uploaded body or a file's content)."""
    table = read_table(raw, fmt, source, delimiter)
    return validate(table, source, columns or Columns(), min_class_examples, cleaning=cleaning)


def read_table(
    raw: bytes, fmt: Format, source: str = "input", delimiter: str = ","
) -> pd.DataFrame:
    """Decode and parse bytes into a frame of strings; raise DataError on unusable input."""
    if delimiter not in DELIMITERS:
        shown = ", ".join(repr(d) for d in DELIMITERS)
        raise DataError(f"delimiter must be one of {shown}, got {delimiter!r}")
    if not raw.strip():
        raise DataError(f"{source}: the file is empty")
    if b"\x00" in raw[:8192]:
        raise DataError(f"{source}: this looks like a binary file, not {fmt.upper()} text")
    if fmt in MAIL_FORMATS:
        # Mail declares its own charsets, per part.
        mails = [read_mail(raw)] if fmt == "eml" else read_mbox(raw)
        if not mails:
            raise DataError(f"{source}: no messages in the mbox file")
        return pd.DataFrame(
            {
                "subject": [m.subject for m in mails],
                "body": [m.body for m in mails],
                CONTENT_TYPE_COLUMN: [m.content_type for m in mails],
            }
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "export the file as UTF-8"
        ) from exc
    if fmt == "csv":
        return _read_csv(text, source, delimiter)
    records = _read_json(text, source) if fmt == "json" else _read_jsonl(text, source)
    if not records:
        raise DataError(f"{source}: no tickets in the file")
    return pd.DataFrame.from_records(records)


def _read_csv(text: str, source: str, delimiter: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{source}: the file is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{source}: malformed CSV: {exc}".strip()) from exc
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        for other in OTHER_DELIMITERS:
            if other in header and other != delimiter:
                raise DataError(
                    f"{source}: the header has a single column {header[:60]!r}; the file seems "
                    f"to be separated by {other!r}, not {delimiter!r} (set the delimiter)"
                )
    if frame.empty:
        raise DataError(f"{source}: the file has a header but no rows")
    return frame


def _read_json(text: str, source: str) -> list[dict[str, Any]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError as exc:
        raise DataError(f"{source}: {MAX_JSON_DEPTH_ERROR}") from exc
    if not isinstance(items, list):
        raise DataError(
            f"{source}: expected a JSON array of ticket objects, got a {type(items).__name__}"
        )
    return [_as_record(item, f"{source}: item {i}") for i, item in enumerate(items, 1)]


def _read_jsonl(text: str, source: str) -> list[dict[str, Any]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: line {lineno}: invalid JSON: {exc.msg}") from exc
        except RecursionError as exc:
            raise DataError(f"{source}: line {lineno}: {MAX_JSON_DEPTH_ERROR}") from exc
        records.append(_as_record(item, f"{source}: line {lineno}"))
    return records


def _as_record(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise DataError(f"{where} is a {type(item).__name__}, expected an object")
    # JSON's \\ud800 escapes give lone surrogates, which no UTF-8 text can hold.
    return {
        replace_surrogates(str(key)): replace_surrogates(value) if isinstance(value, str) else value
        for key, value in item.items()
    }


def validate(
    table: pd.DataFrame,
    source: str,
    columns: Columns,
    min_class_examples: int = DEFAULT_MIN_CLASS_EXAMPLES,
    max_text_chars: int = MAX_TICKET_CHARS,
    cleaning: CleaningSettings | None = None,
    min_labels: int = 2,
) -> TicketData:
    """Turn a raw frame into clean tickets, rejecting and reporting unusable rows.

    A head needs `min_labels` labels (a mail upload, a mailbox folder of one queue, has one).

    Each text is cleaned by training.text.cleaning with `cleaning` (the defaults when None): what is
    stored and trained on is what a model reads."""
    cleaning = cleaning or CleaningSettings()
    parts = text_parts(table, source, columns)
    types = (
        table[CONTENT_TYPE_COLUMN].map(cell).str.lower()
        if CONTENT_TYPE_COLUMN in table.columns
        else pd.Series([""] * len(table))
    )
    head_columns = _head_columns(table, source, columns)
    features = _feature_columns(table, source, columns, head_columns)
    report = DataReport(rows_read=len(table))
    labels = {head: table[column].map(cell) for head, column in head_columns.items()}
    field_values = {column: table[column].map(cell) for column in features}

    keep, texts = [], []
    for i, (subject, body) in enumerate(parts):
        row = i + 1
        raw = "\n".join(p for p in (subject, body) if p)
        if not (subject or body):
            report.rejected.append(RejectedRow(row, "empty text"))
            continue
        if types.iat[i] not in ("", *CONTENT_TYPES):
            report.rejected.append(
                RejectedRow(
                    row,
                    f"column {CONTENT_TYPE_COLUMN!r}: {types.iat[i][:40]!r} is not one of "
                    + ", ".join(CONTENT_TYPES),
                )
            )
            continue
        markup = types.iat[i] not in ("", PLAIN_TYPE)
        limit = max_text_chars * MARKUP_FACTOR if markup else max_text_chars
        if problem := text_problem(raw, limit):
            report.rejected.append(RejectedRow(row, problem))
            continue
        text = clean_ticket(subject, body, types.iat[i] or None, cleaning)
        if not text:
            report.rejected.append(
                RejectedRow(row, "nothing is left after cleaning (only a quote or a signature)")
            )
            continue
        if markup and (problem := text_problem(text, max_text_chars)):
            report.rejected.append(RejectedRow(row, f"after cleaning, {problem}"))
            continue
        missing = [head_columns[h] for h in head_columns if not labels[h].iat[i]]
        if missing:
            names = ", ".join(repr(m) for m in missing)
            report.rejected.append(RejectedRow(row, f"missing label in column {names}"))
            continue
        problems = [
            f"column {head_columns[h]!r}: {problem}"
            for h in head_columns
            if (problem := label_problem(labels[h].iat[i]))
        ] + [
            f"column {column!r}: {problem}"
            for column in features
            if (problem := field_problem(field_values[column].iat[i]))
        ]
        if problems:
            report.rejected.append(RejectedRow(row, "; ".join(problems)))
            continue
        keep.append(i)
        texts.append(text)
    if not keep:
        raise DataError(f"{source}: no usable rows ({report.rejection_summary()})")

    frame = pd.DataFrame({"text": texts})
    frame["row"] = [i + 1 for i in keep]
    for head in head_columns:
        values = labels[head].iloc[keep]
        forms = display_forms(values)
        frame[head] = [forms[label_key(v)] for v in values]
    if features:
        frame[FIELDS_COLUMN] = [
            {column: value for column in features if (value := field_values[column].iat[i])}
            for i in keep
        ]

    heads = tuple(head_columns)
    frame = _drop_duplicates(frame, heads, report)
    _report_conflicts(frame, heads, report)
    for head in heads:
        counts = frame[head].value_counts()
        if len(counts) < min_labels:
            raise DataError(
                f"{source}: column {head_columns[head]!r} has a single label "
                f"{counts.index[0]!r}; a classifier needs at least two"
            )
        report.label_counts[head] = {str(k): int(v) for k, v in counts.items()}
        for label, count in counts.items():
            if count < min_class_examples:
                report.warnings.append(
                    f"{head} label {label!r} has only {count} example(s) "
                    f"(fewer than {min_class_examples}); it will be learned poorly"
                )
    return TicketData(frame=frame.reset_index(drop=True), heads=heads, report=report)


def cell(value: Any) -> str:
    """A cell as stripped text; None/NaN become "". Literal '\\n' from exports become newlines."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\t", "\t")
    return text.strip()


def text_parts(table: pd.DataFrame, source: str, columns: Columns) -> list[tuple[str, str]]:
    """(subject, body) of each row; a text column is a body without subject."""
    if columns.text is not None:
        _require_columns(table, source, [columns.text], "text")
        return [("", text) for text in table[columns.text].map(cell)]
    for alias in TEXT_ALIASES:
        if alias in table.columns:
            return [("", text) for text in table[alias].map(cell)]
    if columns.subject in table.columns and columns.body in table.columns:
        subjects = table[columns.subject].map(cell)
        bodies = table[columns.body].map(cell)
        return list(zip(subjects, bodies, strict=True))
    expected = " or ".join(repr(a) for a in TEXT_ALIASES)
    raise DataError(
        f"{source}: no text column: expected {expected}, or "
        f"{columns.subject!r} + {columns.body!r}; found {_found(table)}"
    )


def _head_columns(table: pd.DataFrame, source: str, columns: Columns) -> dict[str, str]:
    """Map each head to its input column: the label columns named, in their order, else the
    heads of HEAD_ALIASES present."""
    if columns.labels is not None:
        if columns.queue is not None or columns.priority is not None:
            raise DataError(
                f"{source}: name the label columns, or the queue/priority columns, not both"
            )
        if problem := heads_problem(columns.labels):
            raise DataError(f"{source}: {problem}")
        _require_columns(table, source, list(columns.labels), "label")
        return {name: name for name in columns.labels}
    chosen: dict[str, str] = {}
    for head, aliases in HEAD_ALIASES.items():
        configured = getattr(columns, head)
        if configured is not None:
            _require_columns(table, source, [configured], f"{head} label")
            chosen[head] = configured
            continue
        found = [a for a in aliases if a in table.columns]
        if len(found) > 1:
            raise DataError(
                f"{source}: columns {found} could all be the {head} label; choose one explicitly"
            )
        if found:
            chosen[head] = found[0]
    if not chosen:
        expected = ", ".join(a for aliases in HEAD_ALIASES.values() for a in aliases)
        raise DataError(
            f"{source}: no label column: expected one of {expected}; found {_found(table)}"
        )
    return chosen


def _feature_columns(
    table: pd.DataFrame, source: str, columns: Columns, heads: dict[str, str]
) -> tuple[str, ...]:
    if not columns.features:
        return ()
    if problem := feature_columns_problem(columns.features):
        raise DataError(f"{source}: {problem}")
    if shared := set(columns.features) & set(heads.values()):
        raise DataError(
            f"{source}: column {sorted(shared)[0]!r} is a label column; a column is either "
            "predicted or read"
        )
    _require_columns(table, source, list(columns.features), "feature")
    return columns.features


def _require_columns(table: pd.DataFrame, source: str, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise DataError(f"{source}: missing {what} column {missing[0]!r}; found {_found(table)}")


def _found(table: pd.DataFrame) -> str:
    names = [str(c) for c in table.columns]
    shown = ", ".join(repr(n) for n in names[:12])
    return f"columns {shown}" + (" ..." if len(names) > 12 else "")


def _drop_duplicates(
    frame: pd.DataFrame, heads: tuple[str, ...], report: DataReport
) -> pd.DataFrame:
    duplicated = frame.duplicated(subset=["text", *heads], keep="first")
    report.duplicates_dropped = frame.loc[duplicated, "row"].tolist()
    if report.duplicates_dropped:
        rows = _rows(report.duplicates_dropped)
        report.warnings.append(
            f"dropped {len(report.duplicates_dropped)} exact duplicate(s): row {rows}"
        )
    return frame.loc[~duplicated]


def _report_conflicts(frame: pd.DataFrame, heads: tuple[str, ...], report: DataReport) -> None:
    for _, group in frame[frame.duplicated("text", keep=False)].groupby("text", sort=False):
        for head in heads:
            labels = sorted(group[head].unique())
            if len(labels) > 1:
                report.conflicts.append(
                    f"rows {_rows(group['row'].tolist())}: identical text with conflicting "
                    f"{head} labels {labels}"
                )


def _rows(rows: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def split_tickets(
    frame: pd.DataFrame,
    stratify_on: str,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
) -> dict[str, pd.DataFrame]:
    """Deterministic train/validation/test split, stratified where the class sizes allow."""
    parts = {"train": frame}
    for name, fraction in (("test", test_fraction), ("validation", val_fraction)):
        rest = parts["train"]
        # Fractions are of the whole dataset, so rescale for what is left.
        share = fraction * len(frame) / len(rest)
        count = round(share * len(rest))
        if count == 0:
            parts[name] = rest.iloc[0:0]
            continue
        parts["train"], parts[name] = _split(rest, count, rest[stratify_on], seed)
    return {name: parts[name].reset_index(drop=True) for name in ("train", "validation", "test")}


def _split(
    frame: pd.DataFrame, count: int, labels: pd.Series, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Imported here: scikit-learn costs the API and CLI processes most of a second to start.
    from sklearn.model_selection import train_test_split

    strata = labels.where(labels.map(labels.value_counts()) >= 2, "__rare__")
    if (strata == "__rare__").sum() == 1:
        # A lone rare example cannot form a stratum; let it join the largest class.
        strata = strata.replace("__rare__", labels.value_counts().index[0])
    try:
        return train_test_split(frame, test_size=count, random_state=seed, stratify=strata)
    except ValueError:
        # Too few rows per class for the requested size: fall back to a plain shuffle split.
        return train_test_split(frame, test_size=count, random_state=seed)
