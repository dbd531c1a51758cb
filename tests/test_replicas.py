"""Two real replicas (`ticketserve serve` each, each with its own TorchServe and data directory)
on one real PostgreSQL and one shared directory: what one stores the other sees, one training job
runs at a time whichever replica started it, a new default version reaches both, a replica
killed during training frees the job for the other, and a history import runs on one replica
and is resumed by the other when that one stops."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_service import Service, tickets_csv
from postgres_server import PostgresServer
from test_api_restart import SLOW_TRAINING, training_processes, wait_gone
from test_import import API_KEY, history, imported_labels, start, wait_import, zammad_env
from zammad_standin import ZammadStandIn

from shim.store.job_record import REPLICA_GONE
from training.text import sample_data

pytestmark = pytest.mark.slow  # two services, two TorchServes, trainings


@pytest.fixture
def replicas(tmp_path: Path, postgres: PostgresServer) -> Iterator[tuple[Service, Service]]:
    env = {
        "TICKETSERVE_DATABASE_URL": postgres.database(),
        "TICKETSERVE_SHARED_DIR": str(tmp_path / "shared"),
        "TICKETSERVE_REPLICA_SYNC_S": "1",
    }
    a, b = Service(tmp_path / "a", env=env), Service(tmp_path / "b", env=env)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.cleanup()
        b.cleanup()


def classify(service: Service) -> requests.Response:
    return service.post("/api/v1/classify", json={"ticket_data": "My laptop does not start"})


def served_version(service: Service, timeout: float = 120.0) -> tuple[int, float]:
    """The version the replica's classify answers with once it answers; and after how long."""
    start = time.monotonic()
    while True:
        answer = classify(service)
        if answer.status_code == 200:
            return answer.json()["model_version"], time.monotonic() - start
        assert time.monotonic() - start < timeout, answer.text
        time.sleep(0.5)


def test_two_replicas_share_data_jobs_and_versions(replicas: tuple[Service, Service]) -> None:
    a, b = replicas
    uploaded = a.upload_csv(tickets_csv(200, seed=1))
    assert uploaded.status_code == 201, uploaded.text
    stored = b.get("/api/v1/train-data").json()
    assert stored["rows"] == uploaded.json()["rows_accepted"]

    started = b.post("/api/v1/train", json={})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    refused = a.post("/api/v1/train", json={})  # the job runs on b: 409 on a too
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "job_running"
    assert refused.json()["error"]["details"]["job_id"] == job_id
    done = b.wait_job(job_id)
    assert done["status"] == "succeeded" and done["model_version"] == 1
    assert a.get(f"/api/v1/train/{job_id}").json()["status"] == "succeeded"
    assert served_version(b) == (1, pytest.approx(0, abs=60))
    version, after_s = served_version(a)
    assert version == 1, "a serves the version b trained"
    print(f"replica a served version 1 {after_s:.1f} s after b's job ended")

    # b killed during a training: a fails its job and frees the lease, then trains itself.
    started = b.post("/api/v1/train", json=SLOW_TRAINING)
    assert started.status_code == 202, started.text
    killed_job = started.json()["job_id"]
    b.wait_job(killed_job, until=("progress",))
    children = training_processes(killed_job)
    b.stop(signal.SIGKILL)
    wait_gone(children)
    deadline = time.monotonic() + 60
    while (job := a.get(f"/api/v1/train/{killed_job}").json())["status"] == "running":
        assert time.monotonic() < deadline, "the killed replica's job is still running after 60 s"
        time.sleep(1)
    assert job["status"] == "failed" and job["error"] == REPLICA_GONE
    started = a.post("/api/v1/train", json={})
    assert started.status_code == 202, started.text
    done = a.wait_job(started.json()["job_id"])
    assert done["status"] == "succeeded" and done["model_version"] == 2
    if done["is_default"]:
        assert served_version(a)[0] == 2


def test_a_history_import_runs_on_one_replica_and_another_resumes_it(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Replica a imports, b answers 409; a stops during a page, b goes on at the cursor by
    itself (its replica watch), and every ticket is stored once."""
    zammad = ZammadStandIn(groups=list(sample_data.QUEUES)).start()
    env = {
        "TICKETSERVE_DATABASE_URL": postgres.database(),
        "TICKETSERVE_SHARED_DIR": str(tmp_path / "shared"),
        "TICKETSERVE_REPLICA_SYNC_S": "1",
        **zammad_env(zammad, tmp_path),
    }
    a = Service(tmp_path / "a", env=env, api_key=API_KEY)
    b = Service(tmp_path / "b", env=env, api_key=API_KEY)
    since = "2024-03-04"
    tickets, expected = history(5001, 10, seed=55)
    zammad.tickets = tickets
    try:
        a.start()
        b.start()
        zammad.release.clear()
        zammad.held.clear()
        zammad.hold_searches = {zammad.search_calls + 2}  # a's second page waits
        try:
            start(a, since, page_size=4)
            assert zammad.held.wait(30), a.log()
            busy = b.post("/api/v1/connectors/zammad/import", json={"since": since})
            assert busy.status_code == 409, busy.text
            assert "another replica" in busy.json()["error"]["message"]
            assert a.stop() == 0, a.log()  # page 2 is cut short by the stop
        finally:
            zammad.hold_searches = set()
            zammad.release.set()
        done = wait_import(b)
        assert done["status"] == "done" and done["resumed"] is True, done
        assert (done["imported"], done["duplicates"]) == (10, 0)
        assert imported_labels(b, since) == (10, expected)
    finally:
        a.cleanup()
        b.cleanup()
        zammad.stop()
