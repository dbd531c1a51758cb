"""Classify jobs through the real service and TorchServe: a whole file classified in the
background as /classify answers each ticket, downloaded in the file's format; bounded and
refused like every input; cancelled; and resumed after a restart with every row answered
exactly once."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_service import Service, running_copy

from training.text.sample_data import generate_tickets

pytestmark = pytest.mark.slow  # the real service and TorchServe

MAX_ROWS = 9000
CSV = {"Content-Type": "text/csv"}
JSONL = {"Content-Type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def service(trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {"TICKETSERVE_MAX_CLASSIFY_JOB_ROWS": str(MAX_ROWS)}
    target = tmp_path_factory.mktemp("classify-jobs") / "var"
    with running_copy(trained_data_dir, target, env=env) as service:
        yield service


def tickets(rows: int, seed: int) -> list[dict[str, str]]:
    frame = generate_tickets(rows, seed=seed)[["subject", "body"]]
    return frame.to_dict("records")


def as_csv(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue().encode()


def submit(service: Service, body: bytes, headers: dict[str, str], **params: Any) -> dict:
    answer = service.post("/api/v1/classify-jobs", data=body, headers=headers, params=params)
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == f"/api/v1/classify-jobs/{answer.json()['job_id']}"
    return answer.json()


def job(service: Service, job_id: str) -> dict:
    return service.get(f"/api/v1/classify-jobs/{job_id}").json()


def wait(service: Service, job_id: str, until: Any, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while not until(current := job(service, job_id)):
        assert current["status"] not in ("failed", "cancelled"), current
        assert time.monotonic() < deadline, current
        time.sleep(0.2)
    return current


def ended(current: dict) -> bool:
    return current["status"] in ("succeeded", "failed", "cancelled")


def result(service: Service, job_id: str) -> str:
    answer = service.get(f"/api/v1/classify-jobs/{job_id}/result")
    assert answer.status_code == 200, answer.text
    return answer.text


def test_a_csv_file_is_answered_row_by_row_as_classify_answers(service: Service) -> None:
    records = tickets(150, seed=11)
    records[3] = {"subject": "", "body": ""}  # no text: an error row, not a failed job
    records[7] = {"subject": "", "body": "x" * 60_000}  # longer than a ticket may be
    records[9] = {"subject": "", "body": "> only a quote\n> of an earlier mail"}  # cleaned away
    started = submit(service, as_csv(records), CSV)
    assert started["status"] == "queued" and started["rows"] == 150
    done = wait(service, started["job_id"], ended)
    assert done["status"] == "succeeded", done
    assert done["rows_done"] == 150 and done["errors"] == 3 and done["model_version"] == 1
    assert done["heads"] == ["queue", "priority"]
    assert done["result_url"] == f"/api/v1/classify-jobs/{started['job_id']}/result"

    rows = list(csv.DictReader(io.StringIO(result(service, started["job_id"]))))
    assert [int(row["row"]) for row in rows] == list(range(1, 151))
    assert rows[3]["error"] == "empty text" and rows[3]["queue"] == ""
    assert "characters" in rows[7]["error"]
    assert "cleaning" in rows[9]["error"] and rows[9]["queue"] == ""
    single = service.post("/api/v1/classify", json={"tickets": records[:3]}).json()["predictions"]
    for row, answer in zip(rows[:3], single, strict=True):
        for head in ("queue", "priority"):
            assert row[head] == answer[head]["label"]
            assert float(row[f"{head}_confidence"]) == pytest.approx(answer[head]["confidence"])
            assert row[f"{head}_auto_route"] == str(answer[head]["auto_route"])
        assert row["error"] == ""
    listed = service.get("/api/v1/classify-jobs", params={"limit": 1}).json()
    assert [j["job_id"] for j in listed] == [started["job_id"]]


def test_json_lines_with_a_version_answer_in_json_lines(service: Service) -> None:
    lines = "\n".join(json.dumps({"text": r["body"]}) for r in tickets(20, seed=12)) + "\n"
    started = submit(service, lines.encode(), JSONL, version=1)
    assert wait(service, started["job_id"], ended)["status"] == "succeeded"
    answered = [json.loads(line) for line in result(service, started["job_id"]).splitlines()]
    assert [a["row"] for a in answered] == list(range(1, 21))
    assert set(answered[0]) == {"row", "queue", "priority"}
    assert set(answered[0]["queue"]) == {"label", "confidence", "auto_route"}
    # A result file removed behind the service's back is a 410, not a server error.
    (service.data_dir / "classify_jobs" / started["job_id"] / "output.jsonl").unlink()
    gone = service.get(f"/api/v1/classify-jobs/{started['job_id']}/result")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "result_gone"


@pytest.mark.parametrize(
    ("body", "headers", "params", "status", "code"),
    [
        (b'[{"text": "a"}]', {"Content-Type": "application/json"}, {}, 415, None),
        (b"text\nprinter\n", {"Content-Type": "text/csv; charset=latin-1"}, {}, 415, None),
        (b"text\nprinter\n", CSV, {"delimiter": "x"}, 422, None),
        (b"text\nprinter\n", CSV, {"version": 99}, 404, None),
        (b"text\nprinter\n", CSV, {"version": 0}, 422, "validation_error"),
        (b"", CSV, {}, 422, "empty_file"),
        (b"text\n", CSV, {}, 422, "empty_file"),
        (b"colour\nred\n", CSV, {}, 422, "invalid_file"),  # no text column
        (b'{"text": "a"}\nnot json\n', JSONL, {}, 422, "invalid_file"),
        (b"text\n" + b"printer\n" * (MAX_ROWS + 1), CSV, {}, 413, "too_many_tickets"),
    ],
)
def test_files_that_cannot_be_classified_are_refused_with_the_reason(
    service: Service, body: bytes, headers: dict, params: dict, status: int, code: str | None
) -> None:
    def stored() -> tuple[int, int]:
        listed = service.get("/api/v1/classify-jobs", params={"limit": 100}).json()
        return len(listed), len(list((service.data_dir / "classify_jobs").iterdir()))

    before = stored()
    answer = service.post("/api/v1/classify-jobs", data=body, headers=headers, params=params)
    assert answer.status_code == status, answer.text
    if code is not None:
        assert answer.json()["error"]["code"] == code, answer.text
    assert stored() == before  # no record, no file left behind


def test_unknown_jobs_are_404(service: Service) -> None:
    for answer in (
        service.get("/api/v1/classify-jobs/nothing"),
        service.get("/api/v1/classify-jobs/nothing/result"),
        service.post("/api/v1/classify-jobs/nothing/cancel"),
        service.delete("/api/v1/classify-jobs/nothing"),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "classify_job_not_found"


def test_a_running_job_is_cancelled_then_deleted(service: Service) -> None:
    started = submit(service, as_csv(tickets(4000, seed=13)), CSV)
    job_id = started["job_id"]
    assert service.delete(f"/api/v1/classify-jobs/{job_id}").status_code == 409  # unfinished
    wait(service, job_id, lambda current: current["rows_done"] > 0)
    cancelled = service.post(f"/api/v1/classify-jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(3)  # a chunk under way ends; none starts
    after = job(service, job_id)
    assert after["status"] == "cancelled" and 0 < after["rows_done"] < 4000
    assert service.post(f"/api/v1/classify-jobs/{job_id}/cancel").status_code == 409
    refused = service.get(f"/api/v1/classify-jobs/{job_id}/result")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "result_not_ready"
    assert service.delete(f"/api/v1/classify-jobs/{job_id}").status_code == 204
    assert service.get(f"/api/v1/classify-jobs/{job_id}").status_code == 404
    assert not (service.data_dir / "classify_jobs" / job_id).exists()


def test_a_job_interrupted_by_a_restart_resumes_and_answers_every_row_once(
    service: Service,
) -> None:
    rows = 1200
    started = submit(service, as_csv(tickets(rows, seed=14)), CSV)
    job_id = started["job_id"]
    wait(service, job_id, lambda current: current["rows_done"] >= 128)
    assert service.stop() == 0
    service.start()
    service.wait_ready()
    interrupted = job(service, job_id)
    assert interrupted["rows_done"] < rows, "the job ended before the restart: a larger file"
    done = wait(service, job_id, ended, timeout=600)
    assert done["status"] == "succeeded" and done["rows_done"] == rows, done
    numbers = [int(row["row"]) for row in csv.DictReader(io.StringIO(result(service, job_id)))]
    assert numbers == list(range(1, rows + 1))
