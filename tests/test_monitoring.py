"""Live quality over real HTTP: classify, give feedback, read `GET /api/v1/monitoring` and the
gauges on /metrics.

One service per module (real TorchServe, fast-mode training of the bundled MiniLM); the tests
run in file order. Every expected number is computed from the answers this module received.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from api_service import Service, tickets_csv

from shim.metrics import ApiMetrics
from shim.monitoring import Monitoring
from shim.predictions import new_prediction_id
from shim.settings import Settings
from shim.store import MIGRATIONS, PredictionRecord, Store
from training import sample_data

API_KEY = "monitoring-key-0123456789"
FAST = {"mode": "fast", "max_length": 64}
TEXTS = [
    "Printer on floor 3 jams on every page",
    "Invoice 4411 charged twice this month",
    "VPN drops every hour since the update",
    "Please reset my password, locked out",
    "Laptop fan is loud and the case is hot",
    "Refund for the cancelled subscription",
]
HEADS = ("queue", "priority")
GAUGE = re.compile(r'^(ticketserve_\w+)\{head="(\w+)",version="(\d+)"\} (\S+)$', re.MULTILINE)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("monitoring") / "var", api_key=API_KEY)
    service.start()
    try:
        assert service.upload_csv(tickets_csv(100, seed=41)).status_code == 201
        job = service.post("/api/v1/train", json=FAST)
        assert job.status_code == 202, job.text
        assert service.wait_job(job.json()["job_id"])["status"] == "succeeded"
        service.wait_ready()
        yield service
    finally:
        code = service.stop()
        service.cleanup()
    assert code == 0, service.log()


def monitoring(service: Service, **params: int) -> dict:
    answer = service.get("/api/v1/monitoring", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def zero_agreement() -> dict:
    return {"total": 0, "agreed": 0, "share": None}


def zero_routes() -> dict:
    return {head: {"answers": 0, "cleared": 0, "unknown": 0, "share": None} for head in HEADS}


def test_answers_logged_without_the_gate_count_as_unknown(tmp_path: Path) -> None:
    store = Store(tmp_path)
    head = {"label": "Billing", "confidence": 0.9}
    records = [
        PredictionRecord(
            id=new_prediction_id(),
            created_ms=int(datetime.now(UTC).timestamp() * 1000),
            version=2,
            text=None,
            text_sha256="0" * 64,
            labels={"queue": head if gate is None else {**head, "auto_route": gate}},
        )
        for gate in (None, True, False, True)
    ]
    store.add_predictions(records, keep_count=100, cutoff_ms=0)
    [quality] = Monitoring(Settings(data_dir=tmp_path), store, ApiMetrics()).report(1, 2).versions
    route = quality.auto_route["queue"]
    assert (route.answers, route.cleared, route.unknown, route.share) == (4, 2, 1, 2 / 3)
    # The steps since the feedback tables are idempotent: they may meet a registry that has
    # their indexes and columns.
    with sqlite3.connect(store.db_path) as db:
        for _, step in MIGRATIONS[3:]:
            step(db, tmp_path)


def test_a_version_without_predictions_has_zeros_and_nulls(service: Service) -> None:
    for version in (1, 77):  # the trained one, not asked yet; one never trained
        [quality] = monitoring(service, version=version, days=3)["versions"]
        assert quality["model_version"] == version
        feedback = quality["feedback"]
        assert {k: feedback[k] for k in ("total", "agreed", "share")} == zero_agreement()
        assert feedback["heads"] == {head: {**zero_agreement(), "labels": {}} for head in HEADS}
        assert quality["auto_route"] == zero_routes()
        assert len(quality["trend"]) == 3
        assert all(day["feedback"] == zero_agreement() for day in quality["trend"])
    # Without a version: every stored one, and only those.
    assert [v["model_version"] for v in monitoring(service)["versions"]] == [1]


def test_agreement_and_auto_route_shares(service: Service) -> None:
    body = {"tickets": [{"ticket_data": text} for text in TEXTS]}
    answer = service.post("/api/v1/classify", json=body)
    assert answer.status_code == 200, answer.text
    answers = answer.json()["predictions"]
    predicted = [{head: a[head]["model_label"] for head in HEADS} for a in answers]

    def other(head: str, label: str) -> str:
        choices = sample_data.QUEUES if head == "queue" else sample_data.PRIORITIES
        return next(c for c in choices if c.casefold() != label.casefold())

    # 0: accepted as predicted; 1: queue corrected; 2: priority corrected; 3: both sent as
    # predicted (in other case: still agreeing); 4, 5: no feedback.
    bodies = [
        {},
        {"queue": other("queue", predicted[1]["queue"])},
        {"priority": other("priority", predicted[2]["priority"])},
        {head: predicted[3][head].upper() for head in HEADS},
    ]
    for prediction, extra in zip(answers, bodies, strict=False):
        sent = service.post(
            "/api/v1/feedback", json={"prediction_id": prediction["prediction_id"], **extra}
        )
        assert sent.status_code == 201, sent.text
    # A ticket never classified here has nothing to agree with: not counted.
    never = {"ticket_data": "Monitor flickers", "queue": predicted[0]["queue"], "priority": "low"}
    assert service.post("/api/v1/feedback", json=never).status_code == 201

    # Expected: per head and predicted label [total, agreed] over tickets 0..3.
    expected_labels: dict[str, dict[str, list[int]]] = {head: {} for head in HEADS}
    for i, extra in enumerate(bodies):
        for head in HEADS:
            agreed = int(
                head not in extra or extra[head].casefold() == predicted[i][head].casefold()
            )
            cell = expected_labels[head].setdefault(predicted[i][head], [0, 0])
            cell[0] += 1
            cell[1] += agreed

    report = monitoring(service, days=2)
    assert report["days"] == 2
    [quality] = report["versions"]
    feedback = quality["feedback"]
    assert (feedback["total"], feedback["agreed"], feedback["share"]) == (4, 2, 0.5)
    for head in HEADS:
        got = feedback["heads"][head]
        assert (got["total"], got["agreed"], got["share"]) == (4, 3, 0.75)
        assert got["labels"] == {
            label: {"total": t, "agreed": a, "share": share(a, t)}
            for label, (t, a) in expected_labels[head].items()
        }
    routes = {
        head: {
            "answers": len(answers),
            "cleared": sum(a[head]["auto_route"] for a in answers),
            "unknown": 0,
            "share": sum(a[head]["auto_route"] for a in answers) / len(answers),
        }
        for head in HEADS
    }
    assert quality["auto_route"] == routes

    # The trend: yesterday empty, today the same numbers as the totals.
    yesterday, today = quality["trend"]
    assert today["day"] == datetime.now(UTC).date().isoformat()
    assert today["feedback"] == {"total": 4, "agreed": 2, "share": 0.5}
    assert today["heads"] == {head: {"total": 4, "agreed": 3, "share": 0.75} for head in HEADS}
    assert today["auto_route"] == routes
    assert yesterday["feedback"] == zero_agreement() and yesterday["auto_route"] == zero_routes()

    # The gauges say the same, for the stored version only.
    metrics = requests.get(f"{service.base}/metrics", timeout=30)
    assert metrics.status_code == 200
    gauges = {(m[0], m[2], m[1]): float(m[3]) for m in GAUGE.findall(metrics.text)}
    for head in HEADS:
        assert gauges["ticketserve_feedback_agreement", "1", head] == 0.75
        assert gauges["ticketserve_auto_route_share", "1", head] == routes[head]["share"]
    assert {key[1] for key in gauges} == {"1"}


@pytest.mark.parametrize(
    "params",
    [{"days": 0}, {"days": 91}, {"days": "week"}, {"version": 0}, {"version": 2**31}],
)
def test_bad_queries(service: Service, params: dict) -> None:
    answer = service.get("/api/v1/monitoring", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"


def test_needs_the_api_key(service: Service) -> None:
    answer = requests.get(f"{service.base}/api/v1/monitoring", timeout=30)
    assert answer.status_code == 401
