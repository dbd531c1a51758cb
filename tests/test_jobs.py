"""Training jobs: the record's states, start-up recovery, the runner's real child process."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shim.errors import BadRequest, Conflict, Unprocessable
from shim.jobs.runner import JobRunner, build_config, last_log_line, one_line
from shim.settings import Settings
from shim.store.datasets import UploadOptions, ingest
from shim.store.job_record import INTERRUPTED, Job, JobStatus, PublishResult
from shim.store.registry import Store
from training.fit.evaluate import selection_score, summarize
from training.text.sample_data import generate_tickets


def never_publish(job: Job, model_dir: Path, metrics: dict) -> PublishResult:
    raise AssertionError("these jobs never get as far as publishing")


def runner_on(tmp_path: Path, **settings: object) -> JobRunner:
    return JobRunner(Store(tmp_path), Settings(data_dir=tmp_path, **settings), never_publish)


def head(macro_f1: float) -> dict[str, float]:
    return {"accuracy": 0.5, "macro_f1": macro_f1, "weighted_f1": 0.5, "ece": 0.1}


def test_a_job_moves_through_named_states() -> None:
    job = Job.new({"epochs": 1})
    assert job.status == JobStatus.QUEUED and not job.status.is_terminal
    job.start(pid=42)
    assert job.status == JobStatus.RUNNING and job.started_at is not None
    job.data_loaded(120)
    job.advance({"step": 3, "total_steps": 6})
    assert job.phase == "training"
    job.advance({"step": 6, "total_steps": 6})
    assert job.phase == "evaluating"
    job.trained({"validation_macro_f1": 0.5})
    assert job.phase == "publishing"
    job.succeed(version=3, is_default=False, note="kept version 2")
    assert job.status.is_terminal and job.finished_at >= job.started_at
    assert Job.from_dict(job.to_dict()) == job


def test_config_merges_service_defaults_and_request_values() -> None:
    config = build_config({"epochs": 1, "max_length": 32}, {"epochs": 2})
    assert (config.epochs, config.max_length) == (2, 32)
    with pytest.raises(Unprocessable, match="learning_rate"):
        build_config({}, {"learning_rate": 5})
    with pytest.raises(Unprocessable, match="unknown training option"):
        build_config({}, {"epochz": 1})
    # A client picks one of the service's encoders, never a path or a hub name.
    assert build_config({}, {"base_model": "all-MiniLM-L6-v2"}).base_model == "all-MiniLM-L6-v2"
    for elsewhere in ("/etc", "../models/x", "someone/some-hub-model"):
        with pytest.raises(Unprocessable, match="base_model must be one of") as raised:
            build_config({}, {"base_model": elsewhere})
        assert raised.value.details == {"loc": ["body", "base_model"]}
    assert build_config({"base_model": "/srv/enc"}, {"base_model": "/srv/enc"}).base_model


def test_selection_score_is_the_mean_validation_macro_f1() -> None:
    metrics = {
        "validation": {"queue": head(0.8), "priority": head(0.6)},
        "test": {"queue": head(0.1), "priority": head(0.1)},
        "train_seconds": 3.0,
    }
    assert selection_score(metrics) == pytest.approx(0.7)
    assert summarize(metrics)["validation"]["queue"]["macro_f1"] == 0.8
    assert selection_score({"test": {"queue": head(0.4)}}) == pytest.approx(0.4)


def test_recover_fails_unfinished_jobs_and_stops_their_process(tmp_path: Path) -> None:
    store = Store(tmp_path)
    gone, alive, done = Job.new({}), Job.new({}), Job.new({})
    gone.start(pid=2**22 + 17)  # no such process
    # A process that looks like an orphaned training child of `alive`:
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "training.job", alive.id],
        start_new_session=True,
    )
    alive.start(pid=orphan.pid)
    done.fail("boom")
    for job in (gone, alive, done):
        store.jobs.save(job)

    recovered = runner_on(tmp_path).recover()
    assert {j.id for j in recovered} == {gone.id, alive.id}
    assert orphan.wait(timeout=30) != 0
    for job_id in (gone.id, alive.id):
        job = store.jobs.get(job_id)
        assert job.status == JobStatus.FAILED and job.error == INTERRUPTED
    assert store.jobs.get(done.id).error == "boom"
    assert store.jobs.unfinished() == []


def test_submit_needs_data(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="no training data"):
        runner_on(tmp_path).submit({})


def test_a_failing_child_is_reported_and_a_second_job_waits(tmp_path: Path) -> None:
    # The service's own default may name a directory; this one is missing.
    missing = {"base_model": str(tmp_path / "no-such-encoder")}
    runner = runner_on(tmp_path, train_nice=0, train_defaults=missing)
    body = generate_tickets(30, seed=5).to_csv(index=False).encode()
    ingest(runner.store, body, "text/csv", UploadOptions())

    job = runner.submit({"epochs": 1})
    with pytest.raises(Conflict, match=job.id):
        runner.submit({})
    deadline = time.monotonic() + 180
    while runner.is_busy() and time.monotonic() < deadline:
        time.sleep(0.2)
    failed = runner.get(job.id)
    assert failed.status == JobStatus.FAILED
    assert "no-such-encoder" in failed.error and "not a model directory" in failed.error
    assert failed.started_at is not None and failed.model_version is None
    # The job kept its spec and log; its links to the data are gone.
    job_dir = runner.store.jobs_dir / job.id
    assert (job_dir / "spec.json").is_file() and (job_dir / "train.log").is_file()
    assert list((job_dir / "data").iterdir()) == []


def test_eta_comes_from_the_plan_then_from_progress() -> None:
    job = Job.new({})
    assert job.eta_s() is None  # nothing measured yet
    job.start(pid=42)
    job.planned("fast", 100.0)
    assert job.mode == "fast" and job.expected_duration_s == 100.0
    assert job.eta_s(now=job.started_at + timedelta(seconds=30)) == pytest.approx(70.0)
    assert job.eta_s(now=job.started_at + timedelta(seconds=300)) == 0.0
    job.advance({"step": 3, "total_steps": 6, "eta_s": 12.5})
    assert job.eta_s() == 12.5
    job.fail("stopped")
    assert job.eta_s() == 0.0
    assert Job.from_dict(job.to_dict()) == job


def test_a_new_job_expects_the_last_jobs_seconds_per_ticket(tmp_path: Path) -> None:
    missing = {"base_model": str(tmp_path / "no-such-encoder")}
    runner = runner_on(tmp_path, train_nice=0, train_defaults=missing)
    earlier = Job.new({})
    earlier.start(pid=1)
    earlier.data_loaded(120)
    earlier.trained({"train_seconds": 60.0})
    earlier.succeed(version=1, is_default=True, note="first")
    runner.store.jobs.save(earlier)
    body = generate_tickets(30, seed=5).to_csv(index=False).encode()
    ingest(runner.store, body, "text/csv", UploadOptions())
    job = runner.submit({})
    rows = runner.store.datasets.all()[0].rows
    assert job.expected_duration_s == pytest.approx(60.0 / 120 * rows)
    deadline = time.monotonic() + 180
    while runner.is_busy() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runner.get(job.id).status == JobStatus.FAILED


def test_job_errors_are_one_line(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "Loading weights: 100%|##########| 199/199\n"
        "embedding:   1%|          | 32/3200 [00:04<08:00]\r"
        "embedding:   2%|2         | 64/3200 [00:05<04:27]\r\x1b[A"
        "embedding:   4%|4         | 128/3200 [00:06<02:27]\r"
    )
    assert last_log_line(log) == "embedding: 4%|4 | 128/3200 [00:06<02:27]"
    assert last_log_line(tmp_path / "missing.log") == "(no log)"
    assert one_line("Traceback\n  line 1\n\tValueError: x") == "Traceback line 1 ValueError: x"
    assert len(one_line("y" * 10_000)) == 400
