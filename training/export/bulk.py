"""Classify a whole file with a trained model: streamed in chunks (memory stays flat however long
the file), with a progress bar, every row answered.

The input is CSV or JSON Lines, its columns found as the loader finds them (a text, or subject
and body; a `content_type`; the model's feature columns as each row's fields). The output (CSV or
JSON Lines, by its suffix) has one row per input row, in order: its row number (records from 1,
header excluded), every head's label, confidence and auto_route, and an error for a row that
cannot be classified (no text, or nothing left after cleaning), which is never a reason to stop.
It is written to a temporary file beside the target and renamed at the end, so a file that is
there is whole.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
from tqdm.auto import tqdm

from training.errors import UserError
from training.export.predict import Predictor
from training.inference.model import format_predictions, predict_proba
from training.text.data import CONTENT_TYPE_COLUMN, DELIMITERS, Columns, DataError, cell, text_parts
from training.text.text_rules import MARKUP_FACTOR, MAX_TICKET_CHARS, text_problem

CHUNK_ROWS = 1000  # rows read, cleaned and classified at a time
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass
class BulkReport:
    rows: int = 0
    classified: int = 0
    errors: int = 0


def file_format(path: Path, what: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{what} {path}: use a .csv or .jsonl file, not {path.suffix or 'none'!r}")
    return fmt


def classify_file(
    predictor: Predictor,
    source: str | Path,
    target: str | Path,
    batch_size: int = 64,
    delimiter: str = ",",
    chunk_rows: int = CHUNK_ROWS,
    progress_bar: bool = True,
) -> BulkReport:
    """Classify every row of `source` into `target` (see the module docstring)."""
    source, target = Path(source), Path(target)
    reading, writing = file_format(source, "--input"), file_format(target, "--output")
    if delimiter not in DELIMITERS:
        raise UserError(f"--delimiter must be one of {', '.join(map(repr, DELIMITERS))}")
    if not source.is_file():
        raise UserError(f"--input {source}: no such file")
    if target.resolve() == source.resolve():
        raise UserError("--output must not be the --input file")
    total = _count_rows(source, reading, delimiter)
    report = BulkReport()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with (
            os.fdopen(handle, "w", encoding="utf-8", newline="") as out,
            tqdm(total=total, unit="ticket", disable=not progress_bar) as bar,
        ):
            writer = _Writer(out, writing, list(predictor.labels))
            for chunk in _chunks(source, reading, delimiter, chunk_rows):
                for row in _classify_chunk(predictor, chunk, report.rows, batch_size, source):
                    writer.write(row)
                    report.errors += "error" in row
                report.rows += len(chunk)
                bar.update(len(chunk))
        report.classified = report.rows - report.errors
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return report


def _classify_chunk(
    predictor: Predictor, chunk: pd.DataFrame, before: int, batch_size: int, source: Path
) -> list[dict[str, Any]]:
    """One output row per input row of `chunk`, whose first row is number `before + 1`."""
    try:
        parts = text_parts(chunk, str(source), Columns())
    except DataError as exc:
        raise UserError(str(exc)) from exc
    types = (
        chunk[CONTENT_TYPE_COLUMN].map(cell).str.lower().tolist()
        if CONTENT_TYPE_COLUMN in chunk
        else [""] * len(chunk)
    )
    columns = [c for c in predictor.feature_columns if c in chunk.columns]
    rows: list[dict[str, Any]] = []
    texts, fields, waiting = [], [], []
    for i, ((subject, body), content_type) in enumerate(zip(parts, types, strict=True)):
        row: dict[str, Any] = {"row": before + i + 1}
        rows.append(row)
        raw = "\n".join(p for p in (subject, body) if p)
        limit = MAX_TICKET_CHARS * (MARKUP_FACTOR if content_type not in ("", "text/plain") else 1)
        if problem := (text_problem(raw, limit) if raw else "empty text"):
            row["error"] = problem
            continue
        try:
            text = predictor.cleaning.ticket(subject or None, body, content_type or None)
        except ValueError as exc:  # an unknown content_type
            row["error"] = str(exc)
            continue
        if not text:
            row["error"] = "nothing is left after cleaning (only a quote or a signature)"
            continue
        texts.append(text)
        fields.append({c: value for c in columns if (value := cell(chunk[c].iat[i]))})
        waiting.append(row)
    if texts:
        model = predictor.model
        probs = predict_proba(model, predictor.tokenizer, texts, batch_size, fields)
        answers = format_predictions(probs, model.labels, predictor.top_k, model.gate)
        for row, answer in zip(waiting, answers, strict=True):
            row["heads"] = answer
    return rows


def _chunks(source: Path, fmt: str, delimiter: str, size: int) -> Iterator[pd.DataFrame]:
    if fmt == "csv":
        try:
            yield from pd.read_csv(
                source, sep=delimiter, dtype=str, keep_default_na=False, chunksize=size,
                skipinitialspace=True, encoding="utf-8-sig",
            )  # fmt: skip
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise UserError(f"--input {source}: cannot read it as CSV: {exc}") from exc
        return
    records: list[dict[str, Any]] = []
    with source.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"--input {source}: line {number}: invalid JSON: {exc.msg}"
                ) from exc
            if not isinstance(record, dict):
                raise UserError(f"--input {source}: line {number} is not a JSON object")
            records.append(record)
            if len(records) == size:
                yield pd.DataFrame.from_records(records)
                records = []
    if records:
        yield pd.DataFrame.from_records(records)


def _count_rows(source: Path, fmt: str, delimiter: str) -> int:
    """Rows to classify, read once ahead for the progress bar (streaming, nothing kept)."""
    with source.open(encoding="utf-8-sig", newline="") as stream:
        if fmt == "jsonl":
            return sum(1 for line in stream if line.strip())
        return max(0, sum(1 for _ in csv.reader(stream, delimiter=delimiter)) - 1)


class _Writer:
    """Output rows as CSV (one column per head's label, confidence and auto_route) or JSON
    Lines ({"row", head: {label, confidence, auto_route}, "error"})."""

    def __init__(self, out: IO[str], fmt: str, heads: list[str]) -> None:
        self.out, self.fmt, self.heads = out, fmt, heads
        if fmt == "csv":
            columns = ["row"]
            for head in heads:
                columns += [head, f"{head}_confidence", f"{head}_auto_route"]
            self.csv = csv.DictWriter(out, [*columns, "error"])
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        heads = row.get("heads", {})
        if self.fmt == "jsonl":
            record: dict[str, Any] = {"row": row["row"]}
            for head, answer in heads.items():
                record[head] = {k: answer[k] for k in ("label", "confidence", "auto_route")
                                if k in answer}  # fmt: skip
            if "error" in row:
                record["error"] = row["error"]
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        flat: dict[str, Any] = {"row": row["row"], "error": row.get("error", "")}
        for head, answer in heads.items():
            flat[head] = answer["label"]
            flat[f"{head}_confidence"] = answer["confidence"]
            flat[f"{head}_auto_route"] = answer.get("auto_route", "")
        self.csv.writerow(flat)
