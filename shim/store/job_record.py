"""The training job record: its status, its named state changes, its JSON form.

A job is a record with a status (queued -> running -> succeeded | failed | cancelled); every
change is a named method that stamps its time. `shim.jobs.runner.JobRunner` applies them and
persists the record after each one, so the registry always holds the truth.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from shim.schemas import JobStatus, Trigger

INTERRUPTED = "interrupted: the service stopped during training"
REPLICA_GONE = (
    "interrupted: the replica that ran it stopped renewing its hold on the training job "
    "(stopped, crashed or cut off)"
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    """One training run, as stored in the registry and shown by the API."""

    id: str
    params: dict[str, Any]
    created_at: datetime = field(default_factory=_now)
    status: JobStatus = JobStatus.QUEUED
    phase: str = "queued"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pid: int | None = None
    data_rows: int | None = None
    feedback_rows: int | None = None  # agents' corrections among the training data
    progress: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    mode: str | None = None  # the mode that runs (fast/full), once the job has chosen it
    expected_duration_s: float | None = None
    model_version: int | None = None
    is_default: bool | None = None
    note: str | None = None
    error: str | None = None
    trigger: Trigger = "api"

    @classmethod
    def new(cls, params: dict[str, Any], trigger: Trigger = "api") -> Job:
        return cls(id=uuid.uuid4().hex[:12], params=params, trigger=trigger)

    def start(self, pid: int) -> None:
        """The child process started."""
        self.status, self.phase, self.pid, self.started_at = (
            JobStatus.RUNNING,
            "loading data",
            pid,
            _now(),
        )

    def data_loaded(self, rows: int) -> None:
        """The child validated the stored data; training begins."""
        self.data_rows, self.phase = rows, "training"

    def planned(self, mode: str | None, expected_s: float | None) -> None:
        """The child chose its mode and measured how long it will take."""
        self.mode, self.expected_duration_s = mode, expected_s

    def eta_s(self, now: datetime | None = None) -> float | None:
        """Seconds left: the latest progress report's, else what the expected duration leaves."""
        if self.status.is_terminal:
            return 0.0
        if self.progress and self.progress.get("eta_s") is not None:
            return float(self.progress["eta_s"])
        if self.expected_duration_s is None:
            return None
        elapsed = ((now or _now()) - self.started_at).total_seconds() if self.started_at else 0.0
        return round(max(0.0, self.expected_duration_s - elapsed), 1)

    def advance(self, progress: dict[str, Any]) -> None:
        """One optimisation step finished."""
        self.progress = progress
        done = progress.get("step") == progress.get("total_steps")
        self.phase = "evaluating" if done else "training"

    def trained(self, metrics: dict[str, Any]) -> None:
        """Training and evaluation finished; the model is being published."""
        self.metrics, self.phase = metrics, "publishing"

    def succeed(self, version: int, is_default: bool, note: str) -> None:
        """The new version is published (and maybe the default)."""
        self.status, self.phase, self.finished_at = JobStatus.SUCCEEDED, "done", _now()
        self.model_version, self.is_default, self.note = version, is_default, note

    def fail(self, error: str) -> None:
        """The job ended without a new version; `error` says why."""
        self.status, self.phase, self.finished_at, self.error = (
            JobStatus.FAILED,
            "done",
            _now(),
            error,
        )

    def cancel(self) -> None:
        """A client cancelled the job; its process is being stopped."""
        self.status, self.phase, self.finished_at = JobStatus.CANCELLED, "done", _now()
        self.error = "cancelled through the API"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] else None
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Job:
        values = dict(values)
        for key in ("created_at", "started_at", "finished_at"):
            values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
        values["status"] = JobStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True)
class PublishResult:
    """What became of a trained model: its version, whether it is the default, and why."""

    version: int
    is_default: bool
    note: str
