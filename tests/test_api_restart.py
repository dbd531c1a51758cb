"""The service with an API key, killed during training and restarted on the same data directory.

After a SIGKILL nothing of the old service may linger (its training process and TorchServe are
stopped), the job is reported as failed/interrupted rather than stuck "running", and every
uploaded row is still there. A SIGTERM during training stops everything cleanly, too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from api_service import TICKETSERVE, Service, tickets_csv

from shim.store.job_record import INTERRUPTED
from shim.store.registry import Store

pytestmark = pytest.mark.slow  # the real service, killed and restarted

API_KEY = "test-key-0123456789"
# Slow enough to be caught mid-training: a few hundred steps on 2 CPU cores.
SLOW_TRAINING = {"mode": "full", "epochs": 20, "batch_size": 4, "max_length": 64}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """A service of its own per test: the tests kill and stop it."""
    service = Service(tmp_path / "var", api_key=API_KEY)
    try:
        service.start()
        yield service
    finally:
        service.cleanup()


def upload(service: Service, seeds: tuple[int, ...]) -> int:
    """Upload 100 generated tickets per seed; the rows accepted."""
    uploaded = 0
    for seed in seeds:
        r = service.upload_csv(tickets_csv(100, seed=seed))
        assert r.status_code == 201, r.text
        uploaded += r.json()["rows_accepted"]
    return uploaded


def training_processes(job_id: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "training.job" in cmdline and job_id in cmdline:
            found.append(process)
    return found


def wait_gone(processes: list[psutil.Process], timeout: float = 30.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive


def test_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TICKETSERVE_API_KEY"}
    result = subprocess.run(
        [TICKETSERVE, "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "var")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr


def test_api_key_is_required_on_every_api_route(service: Service) -> None:
    for method, path in [
        ("get", "/api/v1/train-data"),
        ("post", "/api/v1/train"),
        ("get", "/api/v1/train"),
        ("post", "/api/v1/classify"),
        ("get", "/api/v1/models"),
        ("delete", "/api/v1/models/1"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            answer = requests.request(method, service.base + path, headers=headers, timeout=30)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
    assert service.get("/api/v1/train-data").status_code == 200  # with the key
    assert requests.get(f"{service.base}/healthz", timeout=30).status_code == 200


def test_kill_during_training_then_restart_tells_the_truth(service: Service) -> None:
    uploaded = upload(service, (21, 22))
    r = service.post("/api/v1/train", json=SLOW_TRAINING)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    service.wait_job(job_id, until=("progress",))
    children = training_processes(job_id)
    assert children, "the training runs in its own process"
    old_torchserve = json.loads((service.data_dir / "torchserve/torchserve.pid.json").read_text())

    service.stop(signal.SIGKILL)
    # The orphaned training process notices its parent is gone and exits by itself.
    wait_gone(children)
    # Until the restart, the registry still says "running": nobody was left to record the end.
    assert Store(service.data_dir).jobs.get(job_id).status == "running"

    service.start()
    job = service.get(f"/api/v1/train/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"] == INTERRUPTED
    assert job["progress"]["step"] >= 1  # the last progress seen is kept
    assert service.get("/api/v1/train").json()["job_id"] == job_id
    summary = service.get("/api/v1/train-data").json()
    assert summary["rows"] == uploaded and len(summary["datasets"]) == 2
    assert not psutil.pid_exists(old_torchserve["pid"])  # the killed service's TorchServe
    assert requests.get(f"{service.base}/readyz", timeout=30).status_code == 503  # no model yet
    # The interrupted job does not block a new one.
    again = service.post("/api/v1/train", json=SLOW_TRAINING)
    assert again.status_code == 202, again.text
    cancelled = service.post(f"/api/v1/train/{again.json()['job_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text


def test_sigterm_during_training_stops_everything_cleanly(service: Service) -> None:
    upload(service, (23,))
    r = service.post("/api/v1/train", json=SLOW_TRAINING)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    service.wait_job(job_id, until=("progress",))
    children = training_processes(job_id)
    pid = json.loads((service.data_dir / "torchserve/torchserve.pid.json").read_text())["pid"]
    torchserve = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]

    started = time.monotonic()
    assert service.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 90
    wait_gone(children + torchserve, timeout=5)
    job = Store(service.data_dir).jobs.get(job_id)
    assert job.status == "failed" and job.error == INTERRUPTED
