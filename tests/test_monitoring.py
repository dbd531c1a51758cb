"""Live quality over real HTTP: classify, give feedback, read `GET /api/v1/monitoring` and the
gauges on /metrics.

Each service runs on a copy of the shared trained data directory (real TorchServe, version 1
trained in fast mode). Tests that count answers or train have a service of their own, so they
pass alone and in any order; every expected number is computed from the answers that test
received.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
from api_service import Service, running_copy

from shim.metrics import ApiMetrics
from shim.quality.monitoring import Monitoring
from shim.settings import Settings
from shim.store.predictions import new_prediction_id
from shim.store.registry import FeedbackRecord, PredictionRecord, Store, VersionRecord, legacy
from training.fit.calibration import precision_interval
from training.text import sample_data

pytestmark = pytest.mark.slow  # the real service and TorchServe

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
def service(tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path) -> Iterator[Service]:
    """For the tests that read without changing anything."""
    target = tmp_path_factory.mktemp("monitoring") / "var"
    with running_copy(trained_data_dir, target, api_key=API_KEY) as service:
        yield service


@pytest.fixture
def fresh(tmp_path: Path, trained_data_dir: Path) -> Iterator[Service]:
    """A service of its own: version 1 only, never asked; every count in the test is its own."""
    with running_copy(trained_data_dir, tmp_path / "var", api_key=API_KEY) as service:
        yield service


def monitoring(service: Service, **params: int) -> dict:
    answer = service.get("/api/v1/monitoring", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def report_day_changed(trend: list[dict]) -> bool:
    """The report was made before UTC midnight and read after: its last day is yesterday."""
    return trend[-1]["day"] == (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def zero_agreement() -> dict:
    return {"total": 0, "agreed": 0, "share": None}


def zero_routes() -> dict:
    return {head: {"answers": 0, "cleared": 0, "unknown": 0, "share": None} for head in HEADS}


def test_answers_logged_without_the_gate_count_as_unknown(
    tmp_path: Path, database_url: str | None
) -> None:
    store = Store(tmp_path, database_url)
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
    store.predictions.add(records, keep_count=100, cutoff_ms=0)
    [quality] = Monitoring(Settings(data_dir=tmp_path), store, ApiMetrics()).report(1, 2).versions
    route = quality.auto_route["queue"]
    assert (route.answers, route.cleared, route.unknown, route.share) == (4, 2, 1, 2 / 3)
    if database_url is None:
        # The SQLite steps since the feedback tables are idempotent: they may meet a registry
        # that has their indexes and columns.
        with sqlite3.connect(store.db_path) as db:
            for _, step in legacy.MIGRATIONS[3:]:
                step(db, tmp_path)


def test_live_precision_of_auto_routed_answers_and_its_warning(
    tmp_path: Path, database_url: str | None, caplog
) -> None:
    """Feedback on answers that cleared the gate measures the gate's live precision; an interval
    whose upper end is below the target warns (report, gauge, one log line per crossing)."""
    store = Store(tmp_path, database_url)
    calibration = {"queue": {"target_precision": 0.9}, "priority": {"target_precision": 0.8}}
    store.versions.add(
        VersionRecord(
            3,
            None,
            datetime.now(UTC),
            tmp_path / "m",
            tmp_path / "a.mar",
            # a version's metrics name its heads (each with its validation scores)
            {"calibration": calibration, "validation": {"queue": {}, "priority": {}}},
            0.5,
            10,
        ),
        make_default=True,
    )
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    # 30 answers cleared the queue gate, 10 did not; priority never cleared it.
    records = [
        PredictionRecord(
            id=new_prediction_id(),
            created_ms=now_ms,
            version=3,
            text=None,
            text_sha256="0" * 64,
            labels={
                "queue": {"label": "Billing", "confidence": 0.9, "auto_route": i < 30},
                "priority": {"label": "low", "confidence": 0.5, "auto_route": False},
            },
        )
        for i in range(40)
    ]
    store.predictions.add(records, keep_count=100, cutoff_ms=0)
    # Feedback on every answer: auto-routed ones right 18 times in 30, the others never.
    for i, record in enumerate(records):
        queue = "Billing" if i < 18 else "Hardware"
        store.feedback.put(
            FeedbackRecord(
                f"f{i}",
                record.id,
                datetime.now(UTC),
                3,
                "t",
                {"queue": queue, "priority": "low"},
                {"queue": "Billing", "priority": "low"},
            )
        )
    monitoring = Monitoring(Settings(data_dir=tmp_path), store, ApiMetrics())
    with caplog.at_level("WARNING", logger="shim.quality.monitoring"):
        [quality] = monitoring.report(1, 3).versions
        monitoring.report(1, 3)  # the same state again: no second warning
    live = quality.auto_route_precision["queue"]
    assert (live.feedback, live.agreed, live.precision) == (30, 18, 0.6)
    assert (live.low, live.high) == pytest.approx(precision_interval(18, 30, 0.95))
    assert live.high < 0.9 and live.below_target and live.target_precision == 0.9
    assert "below the gate's target 0.90" in live.warning
    assert len([r for r in caplog.records if "below its promise" in r.message]) == 1
    idle = quality.auto_route_precision["priority"]
    assert (idle.feedback, idle.precision, idle.below_target, idle.warning) == (
        0,
        None,
        False,
        None,
    )
    # The service's own target replaces the model's; a raw threshold promises nothing.
    settings = Settings(data_dir=tmp_path, target_precision={"queue": 0.5})
    [quality] = Monitoring(settings, store, ApiMetrics()).report(1, 3).versions
    assert quality.auto_route_precision["queue"].below_target is False
    settings = Settings(data_dir=tmp_path, confidence_thresholds={"queue": 0.5})
    [quality] = Monitoring(settings, store, ApiMetrics()).report(1, 3).versions
    assert quality.auto_route_precision["queue"].target_precision is None
    # The gauges.
    metrics = ApiMetrics()
    Monitoring(Settings(data_dir=tmp_path), store, metrics).refresh_gauges()
    assert metrics.auto_route_precision.labels("3", "queue")._value.get() == 0.6
    assert metrics.auto_route_below_target.labels("3", "queue")._value.get() == 1


def test_a_version_without_predictions_has_zeros_and_nulls(fresh: Service) -> None:
    service = fresh
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


def test_agreement_and_auto_route_shares(fresh: Service) -> None:
    service = fresh
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

    # The trend: two days ending today; this module's answers and feedback fall on one of them
    # (both, if the test runs across UTC midnight), and the days add up to the totals.
    trend = quality["trend"]
    assert [date.fromisoformat(d["day"]) for d in trend] == [
        datetime.now(UTC).date() - timedelta(days=1),
        datetime.now(UTC).date(),
    ] or report_day_changed(trend)
    assert sum(d["feedback"]["total"] for d in trend) == 4
    assert sum(d["feedback"]["agreed"] for d in trend) == 2
    for head in HEADS:
        assert sum(d["heads"][head]["total"] for d in trend) == 4
        assert sum(d["heads"][head]["agreed"] for d in trend) == 3
        assert sum(d["auto_route"][head]["answers"] for d in trend) == len(answers)
        cleared = sum(d["auto_route"][head]["cleared"] for d in trend)
        assert cleared == routes[head]["cleared"]

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


def test_a_closed_gate_never_routes_and_says_so(fresh: Service) -> None:
    """A target no threshold's lower bound can reach on 150 tickets closes both gates: the
    versions API says so with the best reachable, and no answer of that version is routed."""
    service = fresh
    job = service.post("/api/v1/train", json={**FAST, "target_precision": 0.999})
    assert job.status_code == 202, job.text
    done = service.wait_job(job.json()["job_id"])
    assert done["status"] == "succeeded", done
    version = done["model_version"]
    listing = {v["version"]: v for v in service.get("/api/v1/models").json()["versions"]}
    for head in HEADS:
        gate = listing[version]["gates"][head]
        assert gate["status"] == "closed" and gate["source"] == "model", gate
        assert gate["threshold"] is None and gate["target_precision"] == 0.999
        best = gate["best_reachable"]
        assert 0 < best["precision_lower_bound"] < 0.999 and 0 < best["coverage"] <= 1
        # Version 1's gate, trained at 0.90, states its promise (open or closed).
        first = listing[1]["gates"][head]
        assert first["target_precision"] == 0.9 and first["status"] in ("open", "closed")
        if first["status"] == "open":
            assert first["precision_lower_bound"] >= 0.9 and 0 < first["expected_coverage"] <= 1
    answer = service.post(
        "/api/v1/classify",
        params={"version": version},
        json={"tickets": [{"ticket_data": text} for text in TEXTS]},
    )
    assert answer.status_code == 200, answer.text
    for prediction in answer.json()["predictions"]:
        assert prediction["model_version"] == version and prediction["auto_route"] is False
        for head in HEADS:
            assert prediction[head]["auto_route"] is False
            assert prediction[head]["low_confidence"] is True
