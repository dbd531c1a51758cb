"""The /api/v1 service over real HTTP: `ticketserve serve` with a real TorchServe and real training.

Most tests share one service, started on a copy of the shared trained data directory (version 1
trained); they only add rows or leave the versions as they found them, and read what they compare
against (stored rows, versions) from the service itself, so they pass alone and in any order.
The tutorial's first steps and the promotion rule need a service of their own: no model yet, or
versions trained on data built to be better or worse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from api_service import Background, Service, running, running_copy, tickets_csv
from conftest import SERVICE_ROWS

from training.fit.calibration import clears_gate, threshold_for
from training.text import sample_data
from training.text.sample_data import generate_tickets

pytestmark = pytest.mark.slow  # the real service and TorchServe

QUEUE_THRESHOLD = 0.99  # a raw threshold for the queue
PRIORITY_PRECISION = 0.6  # a gate for priority, from each version's validation curve
MAX_UPLOAD = 300_000
QUEUES = set(sample_data.QUEUES)
ENV = {
    "TICKETSERVE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    "TICKETSERVE_CONFIDENCE_THRESHOLDS": f"queue={QUEUE_THRESHOLD}",
    "TICKETSERVE_TARGET_PRECISION": f"priority={PRIORITY_PRECISION}",
    "TICKETSERVE_MAX_TICKET_CHARS": "20000",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path) -> Iterator[Service]:
    with running_copy(trained_data_dir, tmp_path_factory.mktemp("api") / "var", env=ENV) as service:
        yield service


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """No data and no model; its tests only read."""
    with running(tmp_path_factory.mktemp("empty") / "var", env=ENV) as service:
        yield service


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Service]:
    """A new, empty service for one test that builds its own versions."""
    with running(tmp_path / "var", env=ENV) as service:
        yield service


def stored_rows(service: Service) -> int:
    return service.get("/api/v1/train-data").json()["rows"]


def assert_error(answer: requests.Response, status: int, code: str | None = None) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


# -- before any model ----------------------------------------------------------------------------


def test_health_docs_and_not_ready_without_a_model(empty: Service) -> None:
    service = empty
    assert requests.get(f"{service.base}/healthz").json()["status"] == "ok"
    assert requests.get(f"{service.base}/docs").status_code == 200
    paths = requests.get(f"{service.base}/openapi.json").json()["paths"]
    assert {"/api/v1/train-data", "/api/v1/train/{job_id}", "/api/v1/classify"} <= set(paths)
    ready = requests.get(f"{service.base}/readyz")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert ready.json()["torchserve"] is True


def test_classify_without_a_model_is_503_with_retry_after(empty: Service) -> None:
    service = empty
    answer = service.post("/api/v1/classify", json={"ticket_data": "My printer is broken"})
    assert_error(answer, 503, "no_model")
    assert int(answer.headers["retry-after"]) > 0


def test_train_without_data_is_400(empty: Service) -> None:
    service = empty
    assert_error(service.post("/api/v1/train"), 400, "no_training_data")


# -- the tutorial's three calls ------------------------------------------------------------------


def test_tutorial_upload_csv(service: Service, tmp_path: Path) -> None:
    before = stored_rows(service)
    path = tmp_path / "tickets.csv"
    path.write_bytes(tickets_csv(120, seed=11))
    with open(path, "rb") as body:
        r = requests.post(
            f"{service.base}/api/v1/train-data", data=body, headers={"Content-Type": "text/csv"}
        )
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["rows_read"] == 120 and report["rows_accepted"] == 120
    assert report["rows_rejected"] == 0 and report["rejected"] == []
    assert set(report["label_counts"]) == {"queue", "priority"}
    assert report["stored_rows"] == before + 120 == stored_rows(service)


def test_upload_json_and_ndjson_append_with_row_errors(service: Service) -> None:
    before = stored_rows(service)
    datasets = len(service.get("/api/v1/train-data").json()["datasets"])
    records = generate_tickets(40, seed=12).to_dict("records")
    records[3]["body"] = records[3]["subject"] = ""  # no text: rejected as row 4
    records[7]["priority"] = ""  # no label: rejected as row 8
    r = service.post("/api/v1/train-data", json=records)
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["rows_read"] == 40 and report["rows_rejected"] == 2
    assert [(x["row"], x["reason"]) for x in report["rejected"]] == [
        (4, "empty text"),
        (8, "missing label in column 'priority'"),
    ]
    accepted = report["rows_accepted"]

    # Labels spelled differently are accepted; training unifies them with the stored ones.
    lines = [
        json.dumps({"text": f"VPN ticket {i}", "queue": "technical support", "priority": "HIGH"})
        for i in range(6)
    ] + [json.dumps({"text": "Invoice wrong", "queue": "Billing and Payments", "priority": "low"})]
    r = service.post(
        "/api/v1/train-data",
        data="\n".join(lines).encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["rows_accepted"] == 7
    accepted += 7

    summary = service.get("/api/v1/train-data").json()
    assert summary["rows"] == before + accepted == r.json()["stored_rows"]
    assert len(summary["datasets"]) == datasets + 2
    assert summary["heads"] == ["queue", "priority"]
    assert sum(summary["label_counts"]["queue"].values()) == summary["rows"]


def test_tutorial_train_reports_progress_and_refuses_a_second_job(own: Service) -> None:
    service = own
    assert service.upload_csv(tickets_csv(120, seed=11)).status_code == 201
    r = requests.post(f"{service.base}/api/v1/train")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running")
    assert r.headers["location"] == f"/api/v1/train/{job['job_id']}"

    assert_error(service.post("/api/v1/train"), 409, "job_running")
    running = service.wait_job(job["job_id"], until=("progress",))
    progress = running["progress"]
    # Fast mode has no loss; a stage's steps count up to its total (texts embedded, or head
    # fitting work), and the time so far is measured.
    assert progress["stage"] in ("embedding", "fitting heads") and progress["loss"] is None
    assert progress["total_steps"] > 0 and progress["step"] <= progress["total_steps"]
    assert progress["elapsed_s"] > 0
    # No GPU here: auto mode runs fast, and says how long it expects to take once measured.
    assert running["mode"] == "fast" and running["expected_duration_s"] > 0
    assert running["eta_s"] is not None

    done = service.wait_job(job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["model_version"] == 1 and done["is_default"] is True
    assert done["data_rows"] == stored_rows(service)
    # The generated tickets are learnable: a model that learned nothing scores far lower.
    assert done["metrics"]["validation_macro_f1"] > 0.5, done["metrics"]
    assert service.get("/api/v1/train").json()["job_id"] == job["job_id"]
    assert service.wait_ready()["model_version"] == 1


def test_tutorial_classify(service: Service) -> None:
    r = requests.post(
        f"{service.base}/api/v1/classify", json={"ticket_data": "My printer is broken"}
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    predicted_label, confidence = answer["predicted_label"], answer["confidence"]
    # A calibrated probability: the queue's best of its top-k, which sum to at most 1.
    top = answer["queue"]["top_k"]
    assert confidence == top[0][1] and sum(p for _, p in top) <= 1 + 1e-6
    assert predicted_label in (top[0][0], "Unclassified")
    assert answer["model_version"] == 1
    queue = answer["queue"]
    assert queue["model_label"] in QUEUES
    assert queue["confidence"] == confidence
    # Below the queue threshold the answer is the fallback; the model's guess stays visible.
    assert queue["low_confidence"] is (confidence < QUEUE_THRESHOLD)
    assert queue["auto_route"] is (confidence >= QUEUE_THRESHOLD) is answer["auto_route"]
    assert predicted_label == ("Unclassified" if queue["low_confidence"] else queue["model_label"])
    # Priority's gate: the lowest confidence reaching 60 % precision on version 1's validation.
    priority = answer["priority"]
    [version] = service.get("/api/v1/models").json()["versions"]
    curve = version["metrics"]["calibration"]["priority"]["validation_curve"]
    threshold = threshold_for(curve, PRIORITY_PRECISION)
    assert priority["auto_route"] is clears_gate(priority["confidence"], threshold)
    # The versions API states each gate as the service applies it: both set by the service.
    gates = version["gates"]
    assert gates["queue"]["status"] == "configured" and gates["queue"]["source"] == "service"
    assert gates["queue"]["threshold"] == QUEUE_THRESHOLD
    assert gates["priority"]["source"] == "service"
    assert gates["priority"]["target_precision"] == PRIORITY_PRECISION
    assert gates["priority"]["threshold"] == threshold
    assert gates["priority"]["status"] == ("open" if threshold is not None else "closed")
    assert priority["low_confidence"] is (not priority["auto_route"])
    assert priority["label"] == priority["model_label"]  # no fallback label for priority
    assert answer["priority"]["label"] in {"high", "medium", "low"}
    assert len(queue["top_k"]) == 3 and queue["top_k"][0][0] == queue["model_label"]


def test_classify_subject_body_and_batches(service: Service) -> None:
    r = service.post("/api/v1/classify", json={"subject": "Rechnung", "body": "doppelt belastet"})
    assert r.status_code == 200 and r.json()["model_version"] == 1
    tickets = [
        {"ticket_data": "VPN keeps dropping"},
        {"subject": "Drucker", "body": "Mein Drucker druckt nicht"},
        {"body": "Please send a quote for 20 licences"},
    ]
    r = service.post("/api/v1/classify", json={"tickets": tickets})
    assert r.status_code == 200, r.text
    batch = r.json()
    assert len(batch["predictions"]) == 3 and batch["model_version"] == 1
    assert all(p["queue"]["model_label"] in QUEUES for p in batch["predictions"])


def test_similar_tickets_through_the_api(service: Service) -> None:
    """An uploaded ticket's own text finds it first among version 1's stored tickets, with its
    row id and labels; classify lists the same under `similar` when asked, and not otherwise."""
    row = generate_tickets(SERVICE_ROWS, seed=5).iloc[11]
    ticket = {"subject": row["subject"], "body": row["body"]}
    r = service.post("/api/v1/similar", json={**ticket, "k": 4})
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["model_version"] == 1 and len(found["similar"]) == 4
    best = found["similar"][0]
    assert best["similarity"] == pytest.approx(1, abs=2e-3)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+:[0-9]+", best["id"]), best
    assert best["labels"] == {"queue": row["queue"], "priority": row["priority"]}
    assert row["body"].split()[0] in best["text"]
    similarities = [hit["similarity"] for hit in found["similar"]]
    assert similarities == sorted(similarities, reverse=True)

    r = service.post("/api/v1/classify", json={**ticket, "similar": 2})
    assert r.status_code == 200, r.text
    assert r.json()["similar"] == found["similar"][:2]
    r = service.post("/api/v1/classify", json={"tickets": [ticket, ticket], "similar": 1})
    assert [p["similar"] for p in r.json()["predictions"]] == [found["similar"][:1]] * 2
    assert service.post("/api/v1/classify", json=ticket).json()["similar"] is None
    for bad in ({**ticket, "k": 21}, {**ticket, "k": 0}, {"k": 3}):
        assert_error(service.post("/api/v1/similar", json=bad), 422)
    assert_error(service.post("/api/v1/classify", json={**ticket, "similar": 21}), 422)


# -- versions ------------------------------------------------------------------------------------


def test_versions_train_activate_roll_back_and_delete_while_classify_answers(
    service: Service,
) -> None:
    """One life cycle, ending as it began (version 1 alone, the default)."""
    r = service.post("/api/v1/train", json={"learning_rate": 0.0002, "seed": 2})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["params"]["learning_rate"] == 0.0002
    service.wait_job(job_id, until=("progress",))
    during = service.post("/api/v1/classify", json={"ticket_data": "Password reset please"})
    assert during.status_code == 200 and during.json()["model_version"] == 1

    done = service.wait_job(job_id)
    assert done["status"] == "succeeded", done
    assert done["model_version"] == 2 and done["note"]
    listing = service.get("/api/v1/models").json()
    versions = {v["version"]: v for v in listing["versions"]}
    assert set(versions) == {1, 2}
    assert listing["default_version"] == (2 if done["is_default"] else 1)
    assert versions[2]["data_rows"] == stored_rows(service) and versions[2]["loaded"] is True
    # each version's headline score is the mean of its heads' validation macro-F1
    heads = versions[1]["metrics"]["validation"]
    mean = (heads["queue"]["macro_f1"] + heads["priority"]["macro_f1"]) / 2
    assert versions[1]["validation_macro_f1"] == pytest.approx(mean, abs=1e-3)

    def classify(_: int) -> requests.Response:
        return service.post("/api/v1/classify", json={"ticket_data": "Laptop screen broken"})

    with Background(classify) as traffic:
        for version in (2, 1, 2):
            r = service.post(f"/api/v1/models/{version}/activate")
            assert r.status_code == 200, r.text
            assert r.json()["is_default"] is True
            answer = service.post("/api/v1/classify", json={"ticket_data": "Refund my order"})
            assert answer.json()["model_version"] == version
            traffic.wait_for(traffic.calls() + 1)  # one more background call with this default
    traffic.check(minimum=3)

    # Roll back to 1; an explicit version still reaches 2.
    assert service.post("/api/v1/models/1/activate").status_code == 200
    assert service.get("/api/v1/models").json()["default_version"] == 1
    r = service.post("/api/v1/classify", params={"version": 2}, json={"ticket_data": "Invoice"})
    assert r.status_code == 200 and r.json()["model_version"] == 2
    assert service.wait_ready()["model_version"] == 1

    # The default cannot be deleted; another version can, once.
    assert_error(service.delete("/api/v1/models/1"), 409, "version_is_default")
    r = service.delete("/api/v1/models/2")
    assert r.status_code == 200
    assert r.json() == {"version": 2, "deleted": True, "default_version": 1}
    assert [v["version"] for v in service.get("/api/v1/models").json()["versions"]] == [1]
    assert_error(service.delete("/api/v1/models/2"), 404, "version_not_found")


def shuffled_labels_csv(rows: int, seed: int) -> bytes:
    """Generated tickets whose labels were dealt at random: nothing in the text predicts them."""
    frame = generate_tickets(rows, seed=seed)
    rng = np.random.default_rng(seed)
    for head in ("queue", "priority"):
        frame[head] = rng.permutation(frame[head].to_numpy())
    return frame.to_csv(index=False).encode("utf-8")


def train_on(service: Service, data: bytes) -> dict:
    assert service.upload_csv(data, replace="true").status_code == 201
    job = service.post("/api/v1/train", json={"mode": "fast", "max_length": 64})
    assert job.status_code == 202, job.text
    done = service.wait_job(job.json()["job_id"])
    assert done["status"] == "succeeded", done
    return done


def test_a_better_version_is_promoted_and_a_worse_one_is_not(own: Service) -> None:
    """The service's default policy (not_worse), both ways, on data built for each outcome:
    labels dealt at random (version 1), then learnable labels (2: better), then random again
    (3: worse)."""
    service = own
    first = train_on(service, shuffled_labels_csv(150, seed=31))
    assert first["is_default"] is True  # the first version always is
    better = train_on(service, tickets_csv(150, seed=32))
    worse = train_on(service, shuffled_labels_csv(150, seed=33))
    scores = {
        v["version"]: v["validation_macro_f1"]
        for v in service.get("/api/v1/models").json()["versions"]
    }
    # The data did what it was built for (else the test proves nothing).
    assert scores[2] > scores[1] + 0.2 and scores[3] < scores[2] - 0.2, scores
    assert better["is_default"] is True and "made default" in better["note"]
    assert worse["is_default"] is False and "activate version 3" in worse["note"]
    assert service.get("/api/v1/models").json()["default_version"] == 2
    answer = service.post("/api/v1/classify", json={"ticket_data": "Printer jams"})
    assert answer.json()["model_version"] == 2


# -- bad input -----------------------------------------------------------------------------------

CSV = "text/csv"
JSON = "application/json"
GOOD_CSV = tickets_csv(30, seed=13)

BAD_INPUTS = [
    # (name, method, path, request kwargs, status, error code)
    ("wrong content type", "post", "/api/v1/train-data",
     {"data": b"text,queue\na,b\n", "headers": {"Content-Type": "text/plain"}}, 415,
     "unsupported_media_type"),
    ("no content type", "post", "/api/v1/train-data", {"data": GOOD_CSV}, 415,
     "unsupported_media_type"),
    ("empty body", "post", "/api/v1/train-data", {"data": b"", "headers": {"Content-Type": CSV}},
     400, "unreadable_body"),
    ("header only", "post", "/api/v1/train-data",
     {"data": b"subject,body,queue,priority\n", "headers": {"Content-Type": CSV}}, 400,
     "unreadable_body"),
    ("missing label column", "post", "/api/v1/train-data",
     {"data": b"subject,body\nPrinter,broken\n", "headers": {"Content-Type": CSV}}, 422,
     "invalid_data"),
    ("missing text column", "post", "/api/v1/train-data",
     {"data": b"title,queue\nPrinter,Hardware\n", "headers": {"Content-Type": CSV}}, 422,
     "invalid_data"),
    ("non-UTF-8 bytes", "post", "/api/v1/train-data",
     {"data": "text,queue\nDrucker kaputt \u2013 gro\u00dfe Not,Hardware\n".encode("cp1252"),
      "headers": {"Content-Type": CSV}}, 400, "unreadable_body"),
    ("oversize body", "post", "/api/v1/train-data",
     {"data": GOOD_CSV * (MAX_UPLOAD // len(GOOD_CSV) + 1), "headers": {"Content-Type": CSV}},
     413, "payload_too_large"),
    ("invalid JSON upload", "post", "/api/v1/train-data",
     {"data": b'[{"text": "a", ', "headers": {"Content-Type": JSON}}, 400, "unreadable_body"),
    ("JSON object, not array", "post", "/api/v1/train-data",
     {"data": b'{"text": "a", "queue": "b"}', "headers": {"Content-Type": JSON}}, 400,
     "unreadable_body"),
    ("bad NDJSON line", "post", "/api/v1/train-data",
     {"data": b'{"text": "a", "queue": "b"}\nnot json\n',
      "headers": {"Content-Type": "application/x-ndjson"}}, 400, "unreadable_body"),
    ("no usable rows", "post", "/api/v1/train-data",
     {"data": b"text,queue,priority\n,Hardware,high\n ,Billing,low\n",
      "headers": {"Content-Type": CSV}}, 422, "invalid_data"),
    ("other label columns than stored", "post", "/api/v1/train-data",
     {"data": b"text,queue\n" + b"".join(b"t%d,%s\n" % (i, b"ab"[i % 2:i % 2 + 1])
                                         for i in range(12)),
      "headers": {"Content-Type": CSV}}, 409, "heads_mismatch"),
    # bounds are in the body's schema: refused before any job is made
    ("invalid hyper-parameter", "post", "/api/v1/train", {"json": {"epochs": 0}}, 422,
     "validation_error"),
    ("unknown hyper-parameter", "post", "/api/v1/train", {"json": {"epochz": 2}}, 422,
     "validation_error"),
    ("hyper-parameter of the wrong type", "post", "/api/v1/train", {"json": {"epochs": "2"}},
     422, "validation_error"),
    ("unknown training mode", "post", "/api/v1/train", {"json": {"mode": "warp"}}, 422,
     "validation_error"),
    ("lexical setting out of range", "post", "/api/v1/train", {"json": {"lexical_min_df": 0}},
     422, "validation_error"),
    ("encoder the service does not have", "post", "/api/v1/train",
     {"json": {"base_model": "/etc"}}, 422, "invalid_parameters"),
    ("invalid JSON to train", "post", "/api/v1/train",
     {"data": b"{epochs: 2}", "headers": {"Content-Type": JSON}}, 400, "invalid_json"),
    ("unknown job", "get", "/api/v1/train/nosuchjob", {}, 404, "job_not_found"),
    ("classify empty text", "post", "/api/v1/classify", {"json": {"ticket_data": "   "}}, 422,
     "validation_error"),
    ("classify very long text", "post", "/api/v1/classify",
     {"json": {"ticket_data": "printer " * 5000}}, 422, "ticket_too_long"),
    ("classify without ticket", "post", "/api/v1/classify", {"json": {"text": "hello"}}, 422,
     "validation_error"),
    ("classify two forms at once", "post", "/api/v1/classify",
     {"json": {"ticket_data": "a", "tickets": [{"ticket_data": "b"}]}}, 422, "validation_error"),
    ("classify empty ticket list", "post", "/api/v1/classify", {"json": {"tickets": []}}, 422,
     "validation_error"),
    ("classify too many tickets", "post", "/api/v1/classify",
     {"json": {"tickets": [{"ticket_data": "x"}] * 65}}, 422, "too_many_tickets"),
    ("classify a number", "post", "/api/v1/classify", {"json": {"ticket_data": 5}}, 422,
     "validation_error"),
    ("classify invalid JSON", "post", "/api/v1/classify",
     {"data": b'{"ticket_data": ', "headers": {"Content-Type": JSON}}, 400, "invalid_json"),
    ("classify empty body", "post", "/api/v1/classify",
     {"data": b"", "headers": {"Content-Type": JSON}}, 422, "validation_error"),
    ("classify unknown version", "post", "/api/v1/classify?version=99",
     {"json": {"ticket_data": "x"}}, 404, "version_not_found"),
    ("classify version 0", "post", "/api/v1/classify?version=0",
     {"json": {"ticket_data": "x"}}, 422, "validation_error"),
    ("activate unknown version", "post", "/api/v1/models/42/activate", {}, 404,
     "version_not_found"),
    ("version that is not a number", "post", "/api/v1/models/latest/activate", {}, 422,
     "validation_error"),
    ("unknown route", "get", "/api/v1/nothing", {}, 404, "not_found"),
    ("wrong method", "put", "/api/v1/classify", {"json": {}}, 405, "method_not_allowed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_a_json_error(
    service: Service, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    before = stored_rows(service)
    answer = requests.request(method, service.base + path, timeout=120, **kwargs)
    assert_error(answer, status, code)
    assert stored_rows(service) == before  # nothing of a refused request was stored


@pytest.mark.parametrize(
    ("body", "field"),
    [({"mode": "warp"}, "mode"), ({"lexical_max_features": 0}, "lexical_max_features")],
)
def test_bad_training_settings_name_the_field(service: Service, body: dict, field: str) -> None:
    answer = service.post("/api/v1/train", json=body)
    assert answer.status_code == 422, answer.text
    assert field in json.dumps(answer.json()["error"])


def test_a_long_ticket_is_truncated_and_answered(service: Service) -> None:
    long_but_fine = "My laptop does not start. " * 700  # 18,200 characters: truncated, answered
    r = service.post("/api/v1/classify", json={"ticket_data": long_but_fine})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == 1
    assert requests.get(f"{service.base}/readyz").status_code == 200


def test_metrics_count_requests_per_route(service: Service) -> None:
    assert service.post("/api/v1/classify", json={"ticket_data": "VPN drops"}).status_code == 200
    assert service.get("/api/v1/train/nosuchjob").status_code == 404
    text = requests.get(f"{service.base}/metrics").text
    counter = 'ticketserve_http_requests_total{method="POST",route="/api/v1/classify",status="200"}'
    assert counter in text
    assert 'route="/api/v1/train/{job_id}"' in text  # templates, not raw paths
    assert "ticketserve_http_request_duration_seconds_bucket" in text
    assert "ticketserve_tickets_classified_total" in text
    assert 'ticketserve_low_confidence_total{head="queue"}' in text
