"""Training jobs: the job record and the runner that trains in a child process.

A job is a record with a status (queued -> running -> succeeded | failed | cancelled); every
change is a
named method that stamps its time, and the runner persists the record after each one, so the
registry always holds the truth. The training itself runs as `python -m training.job SPEC.json`
in its own process (and session, so a Ctrl-C in the terminal reaches only the service, which
then stops it), and talks back through JSON events on stdout.

At start-up `recover()` fails every job a previous service left queued or running: its process
is gone (the child exits when its parent dies) or is stopped here, and nothing resumes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shim.errors import BadRequest, Conflict, Unprocessable
from shim.processes import child_environment, is_job_process, terminate
from training.base_models import BUNDLED_ALIASES, PREPARED_MODELS
from training.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from shim.settings import Settings
    from shim.store import Store

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the service stopped during training"
PROGRESS_SAVE_INTERVAL_S = 0.5
MAX_ERROR_CHARS = 400
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


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
    progress: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    mode: str | None = None  # the mode that runs (fast/full), once the job has chosen it
    expected_duration_s: float | None = None
    model_version: int | None = None
    is_default: bool | None = None
    note: str | None = None
    error: str | None = None

    @classmethod
    def new(cls, params: dict[str, Any]) -> Job:
        return cls(id=uuid.uuid4().hex[:12], params=params)

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


Publisher = Callable[[Job, Path, dict[str, Any]], PublishResult]


def build_config(defaults: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """TrainConfig from the service's defaults and a request's values; 422 when invalid.

    Unless given, `num_threads` is one less than the CPUs this process may use (at least 1).
    """
    values = {**defaults, **overrides}
    base_model = overrides.get("base_model")
    allowed = (*BUNDLED_ALIASES, *PREPARED_MODELS, defaults.get("base_model"))
    if base_model is not None and base_model not in allowed:
        # A client names an encoder the service has, never a path or a hub name: the first
        # would load any directory of this disk, the second fails without internet.
        raise Unprocessable(
            f"base_model must be one of {', '.join(repr(m) for m in allowed if m)}; "
            f"got {str(base_model)[:80]!r}",
            {"loc": ["body", "base_model"]},
            code="invalid_parameters",
        )
    if "num_threads" not in values:
        # Leave a core to TorchServe, so classification keeps answering during training; fewer
        # torch threads than busy cores also spares OpenMP's collapse under oversubscription.
        values["num_threads"] = max(1, len(os.sched_getaffinity(0)) - 1)
    try:
        return TrainConfig.from_dict(values)
    except (ConfigError, TypeError) as exc:
        raise Unprocessable(str(exc), code="invalid_parameters") from exc


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a training run: mean macro-F1 and per-head accuracy/F1."""
    from training.evaluate import mean_macro_f1

    out: dict[str, Any] = {
        key: metrics.get(key) for key in ("train_seconds", "best_epoch", "epochs_run", "splits")
    }
    out["mode"] = (metrics.get("mode") or {}).get("mode")
    for split in ("validation", "test"):
        heads = metrics.get(split) or {}
        out[f"{split}_macro_f1"] = round(mean_macro_f1(heads), 4) if heads else None
        out[split] = {head: _head_summary(m) for head, m in heads.items()}
    return out


def _head_summary(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "macro_f1", "weighted_f1", "ece", "ece_uncalibrated")
    summary: dict[str, Any] = {k: round(m[k], 4) for k in keys if k in m}
    if "gate" in m:
        summary["gate"] = {
            k: m["gate"][k] for k in ("target_precision", "threshold", "coverage", "precision")
        }
    return summary


def selection_score(metrics: dict[str, Any]) -> float:
    """Validation macro-F1 (mean over heads), or test when there was no validation split."""
    summary = summarize(metrics)
    score = summary["validation_macro_f1"]
    if score is None:
        score = summary["test_macro_f1"]
    return float(score or 0.0)


class JobRunner:
    """Starts at most one training process at a time and keeps its job record true."""

    def __init__(self, store: Store, settings: Settings, publish: Publisher) -> None:
        self.store = store
        self.settings = settings
        self.publish = publish
        self._lock = threading.RLock()
        self._active: Job | None = None
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- life cycle -------------------------------------------------------------------------

    def recover(self) -> list[Job]:
        """Fail the jobs a previous service left unfinished; stop their process if it lives."""
        recovered = []
        for job in self.store.unfinished_jobs():
            if job.pid is not None and is_job_process(job.pid, job.id):
                logger.warning("stopping orphaned training process %d of job %s", job.pid, job.id)
                terminate(job.pid)
            job.fail(INTERRUPTED)
            self.store.save_job(job)
            recovered.append(job)
        return recovered

    def shutdown(self, timeout_s: float = 15.0) -> None:
        """Stop a running training process and record its job as interrupted."""
        with self._lock:
            self._stopping = True
            job, process = self._active, self._process
            if job is not None and not job.status.is_terminal:
                job.fail(INTERRUPTED)
                self.store.save_job(job)
        if process is not None and process.poll() is None:
            terminate(process.pid, timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- jobs -------------------------------------------------------------------------------

    def submit(self, overrides: dict[str, Any]) -> Job:
        """Queue a training run on all stored data; 409 while one runs, 400 without data."""
        config = build_config(self.settings.train_defaults, overrides)
        with self._lock:
            if self._stopping:
                raise Conflict("the service is shutting down", code="shutting_down")
            if self._active is not None:
                raise Conflict(
                    f"training job {self._active.id} is {self._active.status.value}; "
                    "wait for it to finish",
                    {"job_id": self._active.id},
                    code="job_running",
                )
            # Under the upload lock, a concurrent `?replace=true` cannot delete a file between
            # listing the datasets and linking them into the job.
            with self.store.upload_lock:
                datasets = self.store.datasets()
                if not datasets:
                    raise BadRequest(
                        "no training data stored; upload tickets to POST /api/v1/train-data first",
                        code="no_training_data",
                    )
                job = Job.new(config.to_dict())
                job.expected_duration_s = self._expected_duration(sum(d.rows for d in datasets))
                spec = self._write_spec(job, [d.file for d in datasets])
            self.store.save_job(job)
            self._active = job
            self._thread = threading.Thread(
                target=self._run, args=(job, spec), name=f"train-{job.id}", daemon=True
            )
            self._thread.start()
            return Job.from_dict(job.to_dict())

    def _expected_duration(self, rows: int) -> float | None:
        """Until the new job measures itself: the last successful job's measured seconds per
        ticket on this machine, times the tickets stored now."""
        previous = self.store.latest_job(JobStatus.SUCCEEDED)
        if previous is None or not previous.metrics or not previous.data_rows:
            return None
        seconds = previous.metrics.get("train_seconds")
        if not seconds:
            return None
        return round(float(seconds) / previous.data_rows * rows, 1)

    def cancel(self, job_id: str) -> Job:
        """Stop a queued or training job: it ends `cancelled`, its process is gone on return."""
        job = self.store.get_job(job_id)  # 404 for an unknown id
        with self._lock:
            active, process, thread = self._active, self._process, self._thread
            if active is None or active.id != job_id or active.status.is_terminal:
                raise Conflict(
                    f"job {job_id} is {job.status.value}; only a queued or running job can be "
                    "cancelled",
                    {"status": job.status.value},
                    code="job_finished",
                )
            if active.phase == "publishing":
                raise Conflict(
                    f"job {job_id} has finished training and is publishing its model",
                    code="job_publishing",
                )
            active.cancel()
            self.store.save_job(active)
        if process is not None and process.poll() is None:
            terminate(process.pid)
        if thread is not None:
            thread.join(30)
        logger.info("job %s cancelled", job_id)
        return Job.from_dict(active.to_dict())

    def get(self, job_id: str) -> Job:
        return self.store.get_job(job_id)

    def latest(self) -> Job | None:
        return self.store.latest_job()

    def is_busy(self) -> bool:
        return self._active is not None

    def _write_spec(self, job: Job, files: list[Path]) -> Path:
        """The job's own directory: links to today's datasets, so a later replace is harmless."""
        from shim.store import write_atomic  # here: shim.store imports this module

        job_dir = self.store.jobs_dir / job.id
        data_dir = job_dir / "data"
        data_dir.mkdir(parents=True)
        linked = []
        for source in files:
            target = data_dir / source.name
            try:
                os.link(source, target)
            except OSError:
                target.write_bytes(source.read_bytes())
            linked.append(str(target))
        spec = {
            "data_files": linked,
            "config": job.params,
            "out_dir": str(job_dir / "model"),
            "nice": self.settings.train_nice,
        }
        path = job_dir / "spec.json"
        write_atomic(path, json.dumps(spec, indent=2).encode())
        return path

    def _run(self, job: Job, spec: Path) -> None:
        log_path = spec.parent / "train.log"
        try:
            outcome = self._train(job, spec, log_path)
            if outcome is not None:
                model_dir, metrics = outcome
                result = self.publish(job, model_dir, metrics)
                self._change(job, job.succeed, result.version, result.is_default, result.note)
                logger.info("job %s succeeded: version %d", job.id, result.version)
        except Exception as exc:  # publishing (archive, TorchServe) or an unexpected bug
            logger.exception("job %s failed", job.id)
            self._change(job, job.fail, one_line(f"{type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._active, self._process = None, None
            for link in (spec.parent / "data").glob("*"):
                link.unlink(missing_ok=True)

    def _train(self, job: Job, spec: Path, log_path: Path) -> tuple[Path, dict[str, Any]] | None:
        """Run the child to its end; returns (model dir, metrics), or None after a failure."""
        env = child_environment(TOKENIZERS_PARALLELISM="false")
        with open(log_path, "ab") as log:
            with self._lock:
                if self._stopping:
                    return None
                process = subprocess.Popen(
                    [sys.executable, "-m", "training.job", str(spec)],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    text=True,
                    encoding="utf-8",
                    start_new_session=True,
                )
                self._process = process
                self._change(job, job.start, process.pid)
            done, error = self._read_events(job, process)
            code = process.wait()
        if done is not None and code == 0:
            self._change(job, job.trained, summarize(done["metrics"]))
            return Path(done["model_dir"]), done["metrics"]
        message = error or f"training process exited with code {code}: {last_log_line(log_path)}"
        self._change(job, job.fail, message)
        return None

    def _read_events(
        self, job: Job, process: subprocess.Popen[str]
    ) -> tuple[dict[str, Any] | None, str | None]:
        done, error, saved_at = None, None, 0.0
        assert process.stdout is not None  # we asked for a pipe
        for line in process.stdout:
            try:
                event = json.loads(line)
                kind = event.pop("event")
            except (json.JSONDecodeError, AttributeError, KeyError):
                logger.info("job %s: %s", job.id, line.rstrip())
                continue
            if kind == "started":
                self._change(job, job.data_loaded, event.get("rows"))
            elif kind == "plan":
                self._change(job, job.planned, event.get("mode"), event.get("expected_s"))
            elif kind == "progress":
                last = event.get("step") == event.get("total_steps")
                if last or time.monotonic() - saved_at >= PROGRESS_SAVE_INTERVAL_S:
                    self._change(job, job.advance, event)
                    saved_at = time.monotonic()
                else:
                    job.progress = event  # the in-memory copy is enough between saves
            elif kind == "done":
                done = event
            elif kind == "error":
                error = one_line(event.get("message") or event.get("kind") or "training failed")
        return done, error

    def _change(self, job: Job, method: Callable[..., None], *args: Any) -> None:
        """Apply a state change and persist it, unless the job already ended (e.g. shutdown)."""
        with self._lock:
            if job.status.is_terminal:
                return
            method(*args)
            self.store.save_job(job)


def last_log_line(path: Path) -> str:
    """The last line the training process logged (progress bars redraw with CR: last state)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    return one_line(lines[-1]) if lines else "(empty log)"


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """A message as one line of at most `limit` characters (for job errors)."""
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
