"""Classify a whole file with a trained model: streamed in chunks (memory stays flat however long
the file), with a progress bar, every row answered (training/text/ticket_files.py says how the
file is read and answered; a row that cannot be classified is never a reason to stop). The
output (CSV or JSON Lines, by its suffix) is written to a temporary file beside the target and
renamed at the end, so a file that is there is whole.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from training.errors import UserError
from training.export.predict import Predictor
from training.inference.model import format_predictions, predict_proba
from training.text.data import DELIMITERS, DataError
from training.text.ticket_files import (
    FORMATS,
    BulkRow,
    RowWriter,
    bulk_rows,
    count_rows,
    read_chunks,
)

CHUNK_ROWS = 1000  # rows read, cleaned and classified at a time


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
    total = count_rows(source, reading, delimiter)
    report = BulkReport()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    where = f"--input {source}"
    try:
        with (
            os.fdopen(handle, "w", encoding="utf-8", newline="") as out,
            tqdm(total=total, unit="ticket", disable=not progress_bar) as bar,
        ):
            writer = RowWriter(out, writing, list(predictor.labels))
            for chunk in read_chunks(source, reading, delimiter, chunk_rows, where):
                for row in _classify_chunk(predictor, chunk, report.rows, batch_size, where):
                    writer.write(row)
                    report.errors += row.error is not None
                report.rows += len(chunk)
                bar.update(len(chunk))
        report.classified = report.rows - report.errors
        os.replace(temporary, target)
    except DataError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise UserError(str(exc)) from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return report


def _classify_chunk(
    predictor: Predictor, chunk: pd.DataFrame, before: int, batch_size: int, where: str
) -> list[BulkRow]:
    """`chunk`'s rows, cleaned as the model cleans and answered."""
    rows = bulk_rows(chunk, before, where, predictor.feature_columns)
    waiting, texts = [], []
    for row in rows:
        if row.error is not None:
            continue
        try:
            text = predictor.cleaning.ticket(
                row.subject or None, row.body, row.content_type or None
            )
        except ValueError as exc:  # an unknown content_type
            row.error = str(exc)
            continue
        if not text:
            row.error = "nothing is left after cleaning (only a quote or a signature)"
            continue
        texts.append(text)
        waiting.append(row)
    if texts:
        model = predictor.model
        fields = [row.fields for row in waiting]
        probs = predict_proba(model, predictor.tokenizer, texts, batch_size, fields)
        answers = format_predictions(probs, model.labels, predictor.top_k, model.gate)
        for row, answer in zip(waiting, answers, strict=True):
            row.heads = answer
    return rows
