"""The runner that trains one job at a time in a child process and keeps its record true.

The record (`shim.store.job_record.Job`) changes only through its named methods, and the runner
persists it after each one. The training itself runs as `python -m training.job SPEC.json`
in its own process (and session, so a Ctrl-C in the terminal reaches only the service, which
then stops it), and talks back through JSON events on stdout.

One job runs at a time across every replica on one registry: a replica takes the `training`
lease (shim/store/registry/leases.py) before it starts a job and renews it while the job runs. At
start-up `recover()`, and every `replica_sync_s` after, `reap()` fails each queued or running job
that no live lease covers: its replica stopped (the child exits when its parent dies, and a
process left on this host is stopped here), and nothing resumes it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shim.errors import BadRequest, Conflict, Unprocessable
from shim.serving.processes import child_environment, is_job_process, terminate
from shim.settings import Settings
from shim.store.feedback import FEEDBACK_FILE, superseded_rows, training_file, usable
from shim.store.job_record import INTERRUPTED, REPLICA_GONE, Job, JobStatus, PublishResult, Trigger
from shim.store.registry import Store
from shim.store.registry.leases import holder_gone, new_holder, now_ms
from training.config import TrainConfig
from training.encoders.base_models import BUNDLED_ALIASES, PREPARED_MODELS
from training.errors import ConfigError
from training.files import PRIVATE_FILE, write_atomic
from training.fit.evaluate import summarize

logger = logging.getLogger(__name__)

# Archives a trained model as a version (shim.serving.versions.ModelVersions.publish).
Publisher = Callable[[Job, Path, dict[str, Any]], PublishResult]
PROGRESS_SAVE_INTERVAL_S = 0.5
TRAINING = "training"  # the lease of the one training job
MAX_ERROR_CHARS = 400
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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
        # This replica, as its leases name it.
        self.replica = new_holder()
        self.lease_ms = settings.training_lease_s * 1000

    # -- life cycle -------------------------------------------------------------------------

    def recover(self) -> list[Job]:
        """At start: fail the jobs no replica runs any more; stop their process if it lives."""
        return self.reap(INTERRUPTED)

    def reap(self, reason: str = REPLICA_GONE) -> list[Job]:
        """Fail each unfinished job that neither this replica runs nor a live lease covers."""
        unfinished = self.store.jobs.unfinished()  # before the lease: a job is saved after it
        lease = self.store.leases.get(TRAINING)
        if lease is not None and (lease.expired(now_ms()) or holder_gone(lease.holder)):
            self.store.leases.free_expired(TRAINING, lease)
            lease = None
        failed = []
        for job in unfinished:
            with self._lock:
                if self._active is not None and self._active.id == job.id:
                    continue
            if lease is not None and lease.job_id == job.id:
                continue
            if self.store.jobs.get(job.id).status.is_terminal:  # it ended meanwhile
                continue
            if job.pid is not None and is_job_process(job.pid, job.id):
                logger.warning("stopping orphaned training process %d of job %s", job.pid, job.id)
                terminate(job.pid)
            job.fail(reason)
            self.store.jobs.save(job)
            failed.append(job)
        return failed

    def shutdown(self, timeout_s: float = 15.0) -> None:
        """Stop a running training process and record its job as interrupted."""
        with self._lock:
            self._stopping = True
            job, process = self._active, self._process
            if job is not None and not job.status.is_terminal:
                job.fail(INTERRUPTED)
                self.store.jobs.save(job)
        if process is not None and process.poll() is None:
            terminate(process.pid, timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- jobs -------------------------------------------------------------------------------

    def submit(self, overrides: dict[str, Any], trigger: Trigger = "api") -> Job:
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
                datasets = self.store.datasets.all()
                if not datasets:
                    raise BadRequest(
                        "no training data stored; upload tickets to POST /api/v1/train-data first",
                        code="no_training_data",
                    )
                heads = datasets[0].heads
                missing = [c for c in config.label_columns or [] if c not in heads]
                if missing:
                    raise Unprocessable(
                        f"label_columns: the stored training data has no {missing[0]!r} "
                        f"labels; its heads: {', '.join(heads)}",
                        {"loc": ["body", "label_columns"], "heads": heads},
                        code="invalid_parameters",
                    )
                # Agents' corrections join as one more file (none without uploads: alone
                # they are too few to train on).
                corrections = self.store.feedback.page()
                feedback, feedback_rows = training_file(corrections, heads)
                rows = {
                    "superseded": superseded_rows(corrections, [d.id for d in datasets]),
                    "feedback_ids": [r.id for r in usable(corrections, heads)],
                }
                job = Job.new(config.to_dict(), trigger)
                job.feedback_rows = feedback_rows
                job.expected_duration_s = self._expected_duration(
                    sum(d.rows for d in datasets) + feedback_rows
                )
                lease = self.store.leases.take(TRAINING, self.replica, job.id, self.lease_ms)
                if lease.holder != self.replica:
                    raise Conflict(
                        f"training job {lease.job_id} is running on another replica; wait for "
                        "it to finish",
                        {"job_id": lease.job_id},
                        code="job_running",
                    )
                try:
                    spec = self._write_spec(job, [d.file for d in datasets], feedback, rows)
                    self.store.jobs.save(job)
                except BaseException:
                    self.store.leases.give_back(TRAINING, self.replica)
                    raise
            self._active = job
            # In a copy of this request's context: the job's log lines carry its request id.
            self._thread = threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._run, job, spec),
                name=f"train-{job.id}",
                daemon=True,
            )
            self._thread.start()
            return Job.from_dict(job.to_dict())

    def _expected_duration(self, rows: int) -> float | None:
        """Until the new job measures itself: the last successful job's measured seconds per
        ticket on this machine, times the tickets stored now."""
        previous = self.store.jobs.latest(JobStatus.SUCCEEDED)
        if previous is None or not previous.metrics or not previous.data_rows:
            return None
        seconds = previous.metrics.get("train_seconds")
        if not seconds:
            return None
        return round(float(seconds) / previous.data_rows * rows, 1)

    def cancel(self, job_id: str) -> Job:
        """Stop a queued or training job: it ends `cancelled`, its process is gone on return."""
        job = self.store.jobs.get(job_id)  # 404 for an unknown id
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
            self.store.jobs.save(active)
        if process is not None and process.poll() is None:
            terminate(process.pid)
        if thread is not None:
            thread.join(30)
        logger.info("job %s cancelled", job_id)
        return Job.from_dict(active.to_dict())

    def get(self, job_id: str) -> Job:
        return self.store.jobs.get(job_id)

    def latest(self) -> Job | None:
        return self.store.jobs.latest()

    def is_busy(self) -> bool:
        return self._active is not None

    def _write_spec(
        self,
        job: Job,
        files: list[Path],
        feedback: bytes = b"",
        rows: dict[str, Any] | None = None,
    ) -> Path:
        """The job's own directory: links to today's datasets, so a later replace is harmless,
        and a copy of the feedback rows, so a later delete is too. `rows`: the lines
        corrections supersede, and the corrections' ids (training/job.py)."""
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
        if feedback:
            target = data_dir / FEEDBACK_FILE
            write_atomic(target, feedback, PRIVATE_FILE)
            linked.append(str(target))
        spec = {
            "data_files": linked,
            "config": job.params,
            "out_dir": str(job_dir / "model"),
            "nice": self.settings.train_nice,
            **(rows or {}),
        }
        path = job_dir / "spec.json"
        write_atomic(path, json.dumps(spec, indent=2).encode())
        return path

    def _run(self, job: Job, spec: Path) -> None:
        log_path = spec.parent / "train.log"
        done = threading.Event()
        threading.Thread(
            target=self._hold_lease, args=(job, done), name=f"lease-{job.id}", daemon=True
        ).start()
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
            # The links first: once the runner is free, the job is over in every respect.
            for link in (spec.parent / "data").glob("*"):
                link.unlink(missing_ok=True)
            with self._lock:
                self._active, self._process = None, None
            done.set()
            self.store.leases.give_back(TRAINING, self.replica)  # after the job's last save

    def _hold_lease(self, job: Job, done: threading.Event) -> None:
        """Renew the training lease until the job ends (every third of its length)."""
        while not done.wait(self.lease_ms / 3000):
            try:
                if not self.store.leases.renew(TRAINING, self.replica, self.lease_ms):
                    logger.error("job %s: this replica lost its hold on the training job", job.id)
                    return
            except Exception:  # the database out of reach: try again at the next beat
                logger.exception("job %s: cannot renew the training lease", job.id)

    def _train(self, job: Job, spec: Path, log_path: Path) -> tuple[Path, dict[str, Any]] | None:
        """Run the child to its end; returns (model dir, metrics), or None after a failure."""
        env = child_environment(TOKENIZERS_PARALLELISM="false")
        with open(log_path, "ab") as log:
            with self._lock:
                if self._stopping or job.status.is_terminal:  # shut down or cancelled while queued
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
            if not self._change(job, job.trained, summarize(done["metrics"])):
                return None  # cancelled as training ended: publish nothing
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

    def _change(self, job: Job, method: Callable[..., None], *args: Any) -> bool:
        """Apply a state change and persist it, unless the job already ended (e.g. cancelled or
        shut down); says whether it was applied."""
        with self._lock:
            if job.status.is_terminal:
                return False
            method(*args)
            self.store.jobs.save(job)
            return True


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
