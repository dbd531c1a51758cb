"""Files of tickets to classify, read and answered in chunks: the part of bulk classification
that needs no model, shared by `ticketserve predict --input` (training/export/bulk.py) and the
service's classify jobs (shim/jobs/classify_jobs.py).

The input is CSV or JSON Lines, its columns found as the loader finds them (a text, or subject
and body; a `content_type`; feature columns as each row's fields). The output has one row per
input row, in order: its row number (records from 1, header excluded), every head's label,
confidence and auto_route, or the error that kept the row from being classified.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from training.text.data import CONTENT_TYPE_COLUMN, Columns, DataError, cell, text_parts
from training.text.text_rules import MARKUP_FACTOR, MAX_TICKET_CHARS, text_problem

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ANSWER_KEYS = ("label", "confidence", "auto_route")


@dataclass
class BulkRow:
    """One input row: what to classify, or why not; `heads` once it is answered."""

    number: int
    subject: str = ""
    body: str = ""
    content_type: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_chunks(
    source: Path, fmt: str, delimiter: str, size: int, where: str
) -> Iterator[pd.DataFrame]:
    """The records of `source` in DataFrames of `size` rows, every cell a string. Raises
    DataError naming `where` for a file that is not what `fmt` says."""
    if fmt == "csv":
        try:
            yield from pd.read_csv(
                source, sep=delimiter, dtype=str, keep_default_na=False, chunksize=size,
                skipinitialspace=True, encoding="utf-8-sig",
            )  # fmt: skip
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{where}: cannot read it as CSV: {exc}") from exc
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{where}: the file is empty") from exc
        return
    records: list[dict[str, Any]] = []
    try:
        with source.open(encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: line {number}: invalid JSON: {exc.msg}") from exc
                if not isinstance(record, dict):
                    raise DataError(f"{where}: line {number} is not a JSON object")
                records.append(record)
                if len(records) == size:
                    yield pd.DataFrame.from_records(records)
                    records = []
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text: {exc}") from exc
    if records:
        yield pd.DataFrame.from_records(records)


def count_rows(source: Path, fmt: str, delimiter: str) -> int:
    """Records in `source`, read once (streaming, nothing kept)."""
    with source.open(encoding="utf-8-sig", newline="", errors="replace") as stream:
        if fmt == "jsonl":
            return sum(1 for line in stream if line.strip())
        # Blank lines are no records (pandas skips them too).
        return max(0, sum(1 for row in csv.reader(stream, delimiter=delimiter) if row) - 1)


def bulk_rows(
    chunk: pd.DataFrame,
    before: int,
    where: str,
    feature_columns: Sequence[str] = (),
    max_chars: int = MAX_TICKET_CHARS,
) -> list[BulkRow]:
    """The rows of `chunk` (its first is number `before + 1`), each with its text parts and
    fields, or the error of a row that has no text or too much of it."""
    parts = text_parts(chunk, where, Columns())
    types = (
        chunk[CONTENT_TYPE_COLUMN].map(cell).str.lower().tolist()
        if CONTENT_TYPE_COLUMN in chunk
        else [""] * len(chunk)
    )
    columns = [c for c in feature_columns if c in chunk.columns]
    rows = []
    for i, ((subject, body), content_type) in enumerate(zip(parts, types, strict=True)):
        row = BulkRow(before + i + 1, subject, body, content_type)
        raw = "\n".join(p for p in (subject, body) if p)
        limit = max_chars * (MARKUP_FACTOR if content_type not in ("", "text/plain") else 1)
        row.error = text_problem(raw, limit) if raw else "empty text"
        row.fields = {c: value for c in columns if (value := cell(chunk[c].iat[i]))}
        rows.append(row)
    return rows


class RowWriter:
    """Output rows as CSV (one column per head's label, confidence and auto_route) or JSON
    Lines ({"row", head: {label, confidence, auto_route}, "error"})."""

    def __init__(self, out: IO[str], fmt: str, heads: Sequence[str], header: bool = True) -> None:
        self.out, self.fmt, self.heads = out, fmt, list(heads)
        if fmt == "csv":
            columns = ["row"]
            for head in heads:
                columns += [head, f"{head}_confidence", f"{head}_auto_route"]
            self.csv = csv.DictWriter(out, [*columns, "error"])
            if header:
                self.csv.writeheader()

    def write(self, row: BulkRow) -> None:
        if self.fmt == "jsonl":
            record: dict[str, Any] = {"row": row.number}
            for head, answer in row.heads.items():
                record[head] = {k: answer[k] for k in ANSWER_KEYS if k in answer}
            if row.error is not None:
                record["error"] = row.error
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        flat: dict[str, Any] = {"row": row.number, "error": row.error or ""}
        for head, answer in row.heads.items():
            flat[head] = answer["label"]
            flat[f"{head}_confidence"] = answer["confidence"]
            flat[f"{head}_auto_route"] = answer.get("auto_route", "")
        self.csv.writerow(flat)
