"""What the registry hands out: one frozen record per stored row, and how paths are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.text.data import Format


def utcnow() -> datetime:
    return datetime.now(UTC)


def stored_path(root: Path, path: Path) -> str:
    """How a path is kept in the registry: relative to the data directory when inside it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    file: Path
    format: Format  # how it was uploaded
    bytes: int
    rows: int
    heads: list[str]
    label_counts: dict[str, dict[str, int]]
    created_at: datetime


@dataclass(frozen=True)
class VersionRecord:
    version: int
    job_id: str | None
    created_at: datetime
    model_dir: Path
    archive: Path
    metrics: dict[str, Any]
    score: float  # validation macro-F1, mean over heads
    data_rows: int

    @property
    def heads(self) -> list[str]:
        """The heads the version was trained with, in its order."""
        return list(self.metrics.get("validation") or {})


@dataclass(frozen=True)
class PredictionRecord:
    id: str
    created_ms: int
    version: int | None
    text: str | None  # None when texts are not stored
    text_sha256: str
    # head -> {"label": the model's, "confidence", "auto_route" (absent in older rows)}
    labels: dict[str, dict[str, Any]]
    rare_token_share: float | None = None  # None: an older archive or row


@dataclass(frozen=True)
class FeedbackRecord:
    id: str
    prediction_id: str | None  # None for a ticket never classified here
    created_at: datetime
    model_version: int | None
    text: str
    labels: dict[str, str]  # the training row's label per head
    predicted: dict[str, str] | None  # the prediction's label per head
    row_id: str | None = None  # the stored training row it corrects (`<dataset id>:<line>`)
