"""Agents' feedback over real HTTP: classify -> correct -> the next job trains on the corrections.

Real TorchServe, fast-mode training of the bundled MiniLM. Tests that only read, or undo what
they store, share one module service on a copy of `trained_data_dir` (version 1 trained). A test
that needs a state the others must not see gets a service of its own: an empty data directory (no
feedback without training data, the first version), a fresh copy of the trained one (corrections
the next job learns: exact counts, a new default version; a head the stored data lacks: it
replaces the uploads), and one started with `TICKETSERVE_STORE_TEXTS=false` (only the hash is
kept; feedback must bring the text). Every service keeps only the newest RETENTION answers.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_service import Service, running, running_copy, tickets_csv
from sqlalchemy import select

from shim.errors import Conflict, Gone, NotFound
from shim.settings import Settings
from shim.store.predictions import DAY_MS, PredictionLog, new_prediction_id
from shim.store.registry import FeedbackRecord, PredictionRecord, Store, utcnow
from shim.store.registry.tables import predictions
from training.text import sample_data

RETENTION = 5
ENV = {"TICKETSERVE_PREDICTION_RETENTION_COUNT": str(RETENTION)}
FAST = {"mode": "fast", "max_length": 64}
# A ticket no upload resembles: what the model answers for it comes from the feedback only.
VARIANTS = [f"Zorblax qwertium frobnicator {word} hums again" for word in (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
)]  # fmt: skip
PREDICTION_ID = re.compile(r"[0-9a-f]{24}")


@pytest.fixture(scope="module")
def service(trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Shared by the tests that leave nothing behind that another test counts or relies on."""
    target = tmp_path_factory.mktemp("feedback") / "var"
    with running_copy(trained_data_dir, target, env=ENV) as service:
        yield service


@pytest.fixture
def own_service(trained_data_dir: Path, tmp_path: Path) -> Iterator[Service]:
    """Version 1 trained, no feedback, for this test alone."""
    with running_copy(trained_data_dir, tmp_path / "var", env=ENV) as service:
        yield service


@pytest.fixture
def empty_service(tmp_path: Path) -> Iterator[Service]:
    """No training data and no model yet."""
    with running(tmp_path / "var", env=ENV) as service:
        yield service


@pytest.fixture
def hash_only_service(trained_data_dir: Path, tmp_path: Path) -> Iterator[Service]:
    """Version 1 trained (its data stored with texts), started keeping only texts' hashes."""
    env = {**ENV, "TICKETSERVE_STORE_TEXTS": "false"}
    with running_copy(trained_data_dir, tmp_path / "var", env=env) as service:
        yield service


def assert_error(answer: requests.Response, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


def stored_feedback(service: Service) -> dict:
    answer = service.get("/api/v1/feedback", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return answer.json()


def classify(service: Service, texts: list[str], **params: int) -> list[dict]:
    body = {"tickets": [{"ticket_data": text} for text in texts]}
    answer = service.post("/api/v1/classify", json=body, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def train(service: Service) -> dict:
    answer = service.post("/api/v1/train", json=FAST)
    assert answer.status_code == 202, answer.text
    done = service.wait_job(answer.json()["job_id"])
    assert done["status"] == "succeeded", done
    return done


@pytest.mark.slow  # the real service
def test_feedback_needs_stored_training_data(empty_service: Service) -> None:
    body = {"ticket_data": "Printer broken", "queue": "Hardware", "priority": "low"}
    assert_error(empty_service.post("/api/v1/feedback", json=body), 422, "no_training_data")
    assert stored_feedback(empty_service)["total"] == 0


@pytest.mark.slow  # the real service
def test_the_first_version(empty_service: Service) -> None:
    assert empty_service.upload_csv(tickets_csv(100, seed=21)).status_code == 201
    job = train(empty_service)
    assert job["model_version"] == 1 and job["feedback_rows"] == 0
    empty_service.wait_ready()


@pytest.mark.slow  # the real service
def test_every_classify_answer_has_its_own_prediction_id(service: Service) -> None:
    single = service.post("/api/v1/classify", json={"subject": "VPN", "body": "drops hourly"})
    assert single.status_code == 200, single.text
    batch = classify(service, ["Printer jammed", "Invoice wrong", "Password reset"])
    ids = [single.json()["prediction_id"], *(p["prediction_id"] for p in batch)]
    assert all(PREDICTION_ID.fullmatch(i) for i in ids) and len(set(ids)) == 4
    # Ids carry their creation time: they sort by it.
    assert ids[0][:12] <= ids[1][:12]


@pytest.mark.slow  # the real service
def test_corrections_become_training_rows_the_next_job_learns(own_service: Service) -> None:
    before = classify(own_service, VARIANTS[:5])
    predicted = before[0]["queue"]["model_label"]
    target = next(q for q in sample_data.QUEUES if q != predicted)
    # Five by prediction id: three correct only the queue (the priority is accepted as given).
    saved = []
    for i, prediction in enumerate(before):
        body = {"prediction_id": prediction["prediction_id"], "queue": target}
        if i >= 3:
            body["priority"] = "low"
        answer = own_service.post("/api/v1/feedback", json=body)
        assert answer.status_code == 201, answer.text
        saved.append(answer.json())
        assert saved[-1]["replaced"] is False
        assert saved[-1]["text"] == VARIANTS[i] and saved[-1]["model_version"] == 1
        assert saved[-1]["labels"]["queue"] == target
        expected_priority = "low" if i >= 3 else prediction["priority"]["model_label"]
        assert saved[-1]["labels"]["priority"] == expected_priority
    assert "queue" in saved[0]["corrected"]
    # The same prediction corrected again replaces the first correction.
    again = own_service.post(
        "/api/v1/feedback",
        json={"prediction_id": before[0]["prediction_id"], "queue": target, "priority": "low"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["replaced"] is True
    assert again.json()["feedback_id"] == saved[0]["feedback_id"]
    # Five tickets never classified here, labels spelled as the agent likes.
    for text in VARIANTS[5:]:
        body = {"ticket_data": text, "queue": f" {target.upper()} ", "priority": "LOW"}
        answer = own_service.post("/api/v1/feedback", json=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["labels"] == {"queue": target, "priority": "low"}
        assert answer.json()["prediction_id"] is None and answer.json()["predicted"] is None

    listing = stored_feedback(own_service)
    assert listing["total"] == 10 and len(listing["feedback"]) == 10
    assert listing["label_counts"]["queue"] == {target: 10}
    assert listing["feedback"][0]["feedback_id"] == saved[0]["feedback_id"]  # oldest first
    page = own_service.get("/api/v1/feedback", params={"offset": 8, "limit": 5}).json()
    assert [f["text"] for f in page["feedback"]] == VARIANTS[8:] and page["total"] == 10

    uploaded = own_service.get("/api/v1/train-data").json()["rows"]
    job = train(own_service)
    assert job["feedback_rows"] == 10 and job["data_rows"] == uploaded + 10
    assert own_service.get(f"/api/v1/train/{job['job_id']}").json()["feedback_rows"] == 10
    [after] = classify(own_service, VARIANTS[:1], version=job["model_version"])
    assert after["model_version"] == job["model_version"]
    assert after["queue"]["model_label"] == target, after

    metrics = requests.get(f"{own_service.base}/metrics", timeout=30).text
    assert 'ticketserve_feedback_total{agreed="false",head="queue"}' in metrics


@pytest.mark.slow  # the real service
def test_retention_keeps_the_newest_answers(service: Service) -> None:
    [oldest] = classify(service, ["Monitor flickers"])
    newest = classify(service, [f"Keyboard key {i} stuck" for i in range(RETENTION)])
    count = stored_feedback(service)["total"]
    gone = service.post(
        "/api/v1/feedback", json={"prediction_id": oldest["prediction_id"], "queue": "Hardware"}
    )
    assert_error(gone, 410, "prediction_expired")
    never = newest[-1]["prediction_id"][:12] + "0" * 12  # issued now, but not by us
    for unknown in (never, "f" * 24, "not-an-id"):
        answer = service.post("/api/v1/feedback", json={"prediction_id": unknown})
        assert_error(answer, 404, "prediction_not_found")
    assert stored_feedback(service)["total"] == count
    kept = service.post("/api/v1/feedback", json={"prediction_id": newest[0]["prediction_id"]})
    assert kept.status_code == 201, kept.text
    assert kept.json()["corrected"] == []  # accepted as predicted
    assert service.delete(f"/api/v1/feedback/{kept.json()['feedback_id']}").status_code == 200


@pytest.fixture
def live_id(service: Service) -> str:
    """An answer classified just now: within retention whatever ran before."""
    return classify(service, ["Laptop battery swollen"])[0]["prediction_id"]


BAD_FEEDBACK = [
    # (name, body, status, error code)
    ("unknown label", {"queue": "Space Travel"}, 422, "unknown_label"),
    ("blank label", {"queue": "   "}, 422, "invalid_label"),
    ("label too long", {"queue": "x" * 201}, 422, "validation_error"),
    ("label not a string", {"queue": 5}, 422, "validation_error"),
    ("other text than classified", {"ticket_data": "Another ticket"}, 422, "text_mismatch"),
    ("a head the data lacks", {"urgency": "high"}, 422, "unknown_head"),  # other keys name heads
    ("new label like a formula", {"queue": "=cmd()", "allow_new_labels": True}, 422,
     "invalid_label"),
    ("id too long", {"prediction_id": "a" * 65}, 422, "validation_error"),
    ("no ticket at all", {"prediction_id": None, "queue": "Hardware"}, 422, "validation_error"),
    ("ticket without every head", {"prediction_id": None, "ticket_data": "Mouse dead",
                                   "queue": "Hardware"}, 422, "missing_label"),
    ("text too long", {"prediction_id": None, "ticket_data": "a" * 50_001, "queue": "Hardware",
                       "priority": "low"}, 422, "ticket_too_long"),
    ("invisible text", {"prediction_id": None, "ticket_data": "\u200b\u200b", "queue": "Hardware",
                        "priority": "low"}, 422, "validation_error"),
    ("text and subject", {"ticket_data": "a", "subject": "b"}, 422, "validation_error"),
]  # fmt: skip


@pytest.mark.slow  # the real service
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [case[1:] for case in BAD_FEEDBACK],
    ids=[case[0] for case in BAD_FEEDBACK],
)
def test_bad_feedback_is_refused_and_stores_nothing(
    service: Service, live_id: str, body: dict, status: int, code: str
) -> None:
    before = stored_feedback(service)
    answer = service.post("/api/v1/feedback", json={"prediction_id": live_id, **body})
    error = assert_error(answer, status, code)
    if code == "unknown_label":
        assert "Space Travel" in error["message"]
    assert stored_feedback(service) == before


@pytest.mark.slow  # the real service
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("get", "/api/v1/feedback?limit=0", {}, 422, "validation_error"),
        ("get", "/api/v1/feedback?limit=501", {}, 422, "validation_error"),
        ("get", "/api/v1/feedback?offset=-1", {}, 422, "validation_error"),
        ("delete", "/api/v1/feedback/nosuchfeedback", {}, 404, "feedback_not_found"),
        ("delete", "/api/v1/feedback/" + "a" * 65, {}, 422, "validation_error"),
        (
            "post",
            "/api/v1/feedback",
            {"data": b'{"queue": ', "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
    ],
)
def test_bad_requests_to_the_feedback_routes(
    service: Service, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    before = stored_feedback(service)
    answer = requests.request(method, service.base + path, timeout=60, **kwargs)
    assert_error(answer, status, code)
    assert stored_feedback(service) == before


@pytest.mark.slow  # the real service
def test_a_new_label_is_taken_when_allowed_and_a_correction_can_be_removed(
    service: Service, live_id: str
) -> None:
    before = stored_feedback(service)
    body = {"prediction_id": live_id, "queue": "Space Travel", "allow_new_labels": True}
    answer = service.post("/api/v1/feedback", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["labels"]["queue"] == "Space Travel"
    assert stored_feedback(service)["label_counts"]["queue"]["Space Travel"] == 1
    deleted = service.delete(f"/api/v1/feedback/{answer.json()['feedback_id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"feedback_id": answer.json()["feedback_id"], "deleted": True}
    assert stored_feedback(service) == before
    assert_error(
        service.delete(f"/api/v1/feedback/{answer.json()['feedback_id']}"),
        404,
        "feedback_not_found",
    )


@pytest.mark.slow  # the real service
def test_a_head_the_stored_data_lacks_is_refused(own_service: Service) -> None:
    live_id = classify(own_service, ["Laptop battery swollen"])[0]["prediction_id"]
    queue_only = b"text,queue\n" + b"".join(
        b"ticket number %d,%s\n" % (i, b"Hardware" if i % 2 else b"Billing and Payments")
        for i in range(12)
    )
    assert own_service.upload_csv(queue_only, replace="true").status_code == 201
    before = stored_feedback(own_service)
    answer = own_service.post(
        "/api/v1/feedback", json={"prediction_id": live_id, "priority": "low"}
    )
    assert_error(answer, 422, "unknown_head")
    assert stored_feedback(own_service) == before
    # The row has the data's heads only: the prediction's priority is left out.
    answer = own_service.post(
        "/api/v1/feedback", json={"prediction_id": live_id, "queue": "Hardware"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["labels"] == {"queue": "Hardware"}


@pytest.mark.slow  # the real service
def test_without_stored_texts_only_the_hash_is_kept(hash_only_service: Service) -> None:
    secret = "Kestrel-7734 payroll export leaks salaries"
    [prediction] = classify(hash_only_service, [secret])
    registry = b"".join(
        path.read_bytes()
        for path in hash_only_service.data_dir.glob("registry.sqlite3*")
        if path.is_file()
    )
    assert secret.encode() not in registry
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in registry

    pid = prediction["prediction_id"]
    before = stored_feedback(hash_only_service)
    needs = hash_only_service.post("/api/v1/feedback", json={"prediction_id": pid})
    assert_error(needs, 422, "text_required")
    other = hash_only_service.post(
        "/api/v1/feedback", json={"prediction_id": pid, "ticket_data": "no"}
    )
    assert_error(other, 422, "text_mismatch")
    assert stored_feedback(hash_only_service) == before
    body = {"prediction_id": pid, "ticket_data": secret, "queue": "Hardware"}
    answer = hash_only_service.post("/api/v1/feedback", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["text"] == secret  # a training row needs it


def test_the_log_prunes_by_age_and_count_as_it_writes(
    tmp_path: Path, database_url: str | None
) -> None:
    settings = Settings(data_dir=tmp_path, prediction_retention_count=3)
    store = Store(tmp_path, database_url)
    log = PredictionLog(settings, store)
    now = time.time_ns() // 1_000_000
    cutoff = now - settings.prediction_retention_days * DAY_MS

    def record(ms: int) -> PredictionRecord:
        return PredictionRecord(new_prediction_id(ms), ms, 1, "text", "sha", {})

    stale = record(cutoff - 1)
    store.predictions.add([stale], 3, cutoff)  # written and pruned in the same transaction
    fresh = [record(now + i) for i in range(5)]
    store.predictions.add(fresh, 3, cutoff)
    with store.reading() as conn:
        kept = list(conn.execute(select(predictions.c.id).order_by(predictions.c.seq)).scalars())
    assert kept == [r.id for r in fresh[2:]]
    assert log.get(fresh[-1].id) == fresh[-1]
    for gone in (stale.id, fresh[0].id, new_prediction_id(cutoff - DAY_MS)):
        with pytest.raises(Gone):
            log.get(gone)
    for never in (new_prediction_id(now + 60_000), "0" * 23, "g" * 24):
        with pytest.raises(NotFound):
            log.get(never)


def test_the_feedback_store_has_a_bound_and_replacing_still_works(
    tmp_path: Path, database_url: str | None
) -> None:
    store = Store(tmp_path, database_url)

    def correction(prediction_id: str | None, label: str) -> FeedbackRecord:
        return FeedbackRecord(
            uuid.uuid4().hex[:16], prediction_id, utcnow(), 1, "text", {"queue": label}, None
        )

    store.feedback.put(correction("a" * 24, "Hardware"), max_rows=2)
    store.feedback.put(correction(None, "Hardware"), max_rows=2)
    with pytest.raises(Conflict) as refused:
        store.feedback.put(correction("b" * 24, "Hardware"), max_rows=2)
    assert refused.value.code == "feedback_full" and "TICKETSERVE_MAX_FEEDBACK_ROWS" in str(
        refused.value
    )
    _, replaced = store.feedback.put(correction("a" * 24, "Billing"), max_rows=2)
    assert replaced
    assert [r.labels["queue"] for r in store.feedback.page()] == ["Billing", "Hardware"]
