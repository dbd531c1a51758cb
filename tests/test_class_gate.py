"""The per-class auto-routing gate (`gate: class`): thresholds chosen per predicted class on
synthetic out-of-fold scores, the rule that applies them, and the model card's section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.fit.calibration import (
    class_curves,
    class_gate,
    class_report,
    gate_promise,
    gate_report,
    precision_curve,
)
from training.fit.evaluate import head_metrics, reliability_bins, write_report
from training.inference.model import format_predictions, gate_threshold

LABELS = ["billing", "hardware", "sales"]


def scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, predicted, correct): "billing" 300 tickets at 0.6, 291 right (0.97);
    "hardware" 300 at 0.7, 150 right (0.5); "sales" never predicted. Over the head, precision
    is 0.5 at 0.7 and 0.735 at 0.6: no head threshold reaches 0.9."""
    confidence = np.r_[np.full(300, 0.6), np.full(300, 0.7)]
    predicted = np.r_[np.zeros(300, int), np.ones(300, int)]
    correct = np.r_[np.arange(300) < 291, np.arange(300) < 150]
    return confidence, predicted, correct


def test_a_class_reaches_the_target_on_its_own_where_the_head_cannot() -> None:
    confidence, predicted, correct = scores()
    head = gate_promise(precision_curve(confidence, correct, 0.95), 0.9, 0.95)
    assert head["status"] == "closed"
    curves = class_curves(confidence, predicted, correct, LABELS, 0.95)
    assert curves["sales"] == []  # never predicted: no curve
    assert curves["billing"] == [[0.6, 0.97, 1.0, pytest.approx(0.948, abs=1e-3)]]
    gate = class_gate(curves, {"billing": 300, "hardware": 300, "sales": 0}, 0.9, 0.95)
    billing, hardware, sales = (gate["classes"][name] for name in LABELS)
    assert billing["status"] == "open" and billing["threshold"] == 0.6
    assert billing["expected_coverage"] == 1.0 and billing["predicted"] == 300
    # Cannot reach the target at any threshold: closed, with how far it got.
    assert hardware["status"] == "closed" and hardware["threshold"] is None
    assert hardware["best_reachable"]["precision"] == 0.5
    assert sales["status"] == "closed" and sales["predicted"] == 0
    assert gate["unreachable"] == ["hardware", "sales"]
    # Together: half the tickets routed (all of billing's), at billing's precision.
    assert gate["rule"] == "class" and gate["status"] == "open" and gate["threshold"] is None
    assert gate["expected_coverage"] == 0.5 and gate["precision"] == 0.97
    assert gate["precision_lower_bound"] == pytest.approx(billing["precision_lower_bound"])


def test_coverage_per_class_is_the_share_of_that_class_s_tickets() -> None:
    """A class right only above 0.8: its gate opens there, covering the tickets above it."""
    confidence = np.r_[np.full(200, 0.9), np.full(200, 0.5)]
    correct = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    predicted = np.zeros(400, int)
    curves = class_curves(confidence, predicted, correct, ["a"], 0.95)
    gate = class_gate(curves, {"a": 400}, 0.9, 0.95)
    assert gate["classes"]["a"]["threshold"] == 0.9
    assert gate["classes"]["a"]["expected_coverage"] == 0.5
    assert gate["expected_coverage"] == 0.5 and gate["precision"] == 1.0
    assert gate["unreachable"] == []


def test_no_class_reaching_the_target_closes_the_gate() -> None:
    confidence, predicted, correct = scores()
    curves = class_curves(confidence, predicted, correct, LABELS, 0.95)
    gate = class_gate(curves, {"billing": 300, "hardware": 300, "sales": 0}, 0.99, 0.95)
    assert gate["status"] == "closed" and "expected_coverage" not in gate
    assert gate["unreachable"] == LABELS


def test_the_threshold_of_a_predicted_class() -> None:
    per_class = {"classes": {"billing": 0.6, "hardware": None}, "target_precision": 0.9}
    assert gate_threshold(per_class, "billing") == 0.6
    assert gate_threshold(per_class, "hardware") is None  # cannot reach the target
    assert gate_threshold(per_class, "sales") is None  # absent: never routed either
    assert gate_threshold({"threshold": 0.8, "target_precision": 0.9}, "sales") == 0.8
    probs = {"queue": np.array([[0.7, 0.2, 0.1], [0.2, 0.75, 0.05], [0.1, 0.1, 0.8]])}
    answers = format_predictions(probs, {"queue": LABELS}, 2, {"queue": per_class})
    assert [a["queue"]["auto_route"] for a in answers] == [True, False, False]
    head = format_predictions(probs, {"queue": LABELS}, 2, {"queue": {"threshold": 0.72}})
    assert [a["queue"]["auto_route"] for a in head] == [False, True, True]


def test_reports_route_each_ticket_at_its_class_s_threshold() -> None:
    confidence, predicted, correct = scores()
    thresholds = np.array([0.6, np.nan, np.nan])  # hardware and sales never route
    report = gate_report(confidence, correct, thresholds[predicted], 0.9)
    assert report["routed"] == 300 and report["coverage"] == 0.5
    assert report["precision"] == 0.97 and report["threshold"] is None
    per_class = class_report(confidence, correct, predicted, LABELS, [0.6, None, None], 0.9)
    assert per_class["billing"]["coverage"] == 1.0 and per_class["billing"]["threshold"] == 0.6
    assert per_class["hardware"]["routed"] == 0 and per_class["hardware"]["examples"] == 300
    assert per_class["sales"]["examples"] == 0 and per_class["sales"]["precision"] is None


def test_the_card_shows_each_class_s_threshold_coverage_precision_and_the_unreachable(
    tmp_path: Path,
) -> None:
    confidence, predicted, correct = scores()
    probs = np.full((600, 3), 0.0)
    probs[np.arange(600), predicted] = confidence
    probs[np.arange(600), 2] += 1 - confidence
    truth = np.where(correct, predicted, 2)
    test = head_metrics([LABELS[i] for i in truth], probs, LABELS)
    curves = class_curves(confidence, predicted, correct, LABELS, 0.95)
    gate = class_gate(curves, {"billing": 300, "hardware": 300, "sales": 0}, 0.9, 0.95)
    thresholds = [0.6, None, None]
    test.update(
        ece_uncalibrated=0.1,
        reliability=reliability_bins(confidence, correct),
        reliability_uncalibrated=reliability_bins(confidence, correct),
        gate={
            **gate_report(confidence, correct, np.array([0.6, np.nan, np.nan])[predicted], 0.9),
            "rule": "class",
            "classes": class_report(confidence, correct, predicted, LABELS, thresholds, 0.9),
        },
    )
    metrics = {
        "test": {"queue": test},
        "calibration": {"queue": {"temperature": 1.0, **gate, "examples": 600}},
    }
    write_report(tmp_path, metrics, "card")
    card = (tmp_path / "report.md").read_text()
    assert "one gate per predicted class (below): about 50% of tickets" in card
    assert "On the test split 50.0% of tickets cleared their class's threshold" in card
    assert "| predicted class | threshold | tickets | routed | coverage | precision |" in card
    assert "| billing | 0.600 | 300 | 300 | 100.0% | 0.970 |" in card
    assert "| hardware | never | 300 | 0 | 0.0% | n/a |" in card
    assert (
        "Cannot reach precision 0.90 at any threshold (out of fold), so never routed "
        "automatically: hardware, sales." in card
    )


def test_the_service_s_target_keeps_a_per_class_gate_and_a_raw_threshold_overrides_it(
    tmp_path: Path,
) -> None:
    """A version trained with a gate per class: TICKETSERVE_TARGET_PRECISION re-reads each
    class's own curve at the service's target (billing opens, hardware never routes);
    TICKETSERVE_CONFIDENCE_THRESHOLDS is one raw threshold for every class."""
    from datetime import UTC, datetime

    from shim.metrics import ApiMetrics
    from shim.serving.classifier import Classifier
    from shim.serving.gates import head_gates
    from shim.settings import Settings
    from shim.store.registry import Store, VersionRecord

    confidence, predicted, correct = scores()
    curves = class_curves(confidence, predicted, correct, LABELS, 0.95)
    counts = {"billing": 300, "hardware": 300, "sales": 0}
    calibration = {
        "temperature": 1.0,
        **class_gate(curves, counts, 0.99, 0.95),  # trained at 0.99: every class closed
        "validation_curve": precision_curve(confidence, correct, 0.95),
        "class_curves": curves,
        "examples": 600,
    }
    metrics = {"calibration": {"queue": calibration}, "validation": {"queue": {}}}
    store = Store(tmp_path)
    record = VersionRecord(
        2, None, datetime.now(UTC), tmp_path / "m", tmp_path / "a.mar", metrics, 0.5, 600
    )
    store.versions.add(record, make_default=True)

    def routed(settings: Settings, label: str) -> bool:
        raw = {"label": label, "confidence": 0.65, "top_k": [[label, 0.65]], "auto_route": False}
        classifier = Classifier(settings, store, None, None, ApiMetrics())  # type: ignore[arg-type]
        ticket = classifier.ticket({"queue": raw, "model_version": "2"})
        assert ticket.queue is not None
        return ticket.queue.auto_route

    service = Settings(data_dir=tmp_path, target_precision={"queue": 0.9})
    assert routed(service, "billing") and not routed(service, "hardware")
    assert not routed(service, "sales")  # never predicted out of fold: no curve, never routed
    gate = head_gates(metrics, service)["queue"]
    assert gate["source"] == "service" and gate["rule"] == "class"
    assert gate["classes"]["billing"]["threshold"] == 0.6
    assert gate["unreachable"] == ["hardware", "sales"]
    model = head_gates(metrics, Settings(data_dir=tmp_path))["queue"]
    assert model["source"] == "model" and model["status"] == "closed"
    assert "class_curves" not in model and "validation_curve" not in model
    raw_threshold = Settings(data_dir=tmp_path, confidence_thresholds={"queue": 0.6})
    assert routed(raw_threshold, "billing") and routed(raw_threshold, "hardware")


@pytest.mark.slow  # a training of its own (seconds)
def test_a_model_trained_with_a_gate_per_class_carries_and_reports_it(tmp_path: Path) -> None:
    import json

    from conftest import TINY_CONFIG, TINY_ROWS

    from training.config import TrainConfig
    from training.text.data import load_tickets
    from training.text.sample_data import write_sample_csv
    from training.train import train

    write_sample_csv(tmp_path / "tickets.csv", rows=TINY_ROWS, seed=1)
    config = TrainConfig.from_dict(TINY_CONFIG.to_dict() | {"gate": "class"})
    result = train(
        load_tickets(tmp_path / "tickets.csv"),
        config,
        tmp_path / "model",
        embedding_cache=tmp_path / "embeddings.sqlite",
    )
    settings = json.loads((result.model_dir / "ticket_model.json").read_text())
    for head, names in result.predictor.labels.items():
        calibration = result.metrics["calibration"][head]
        assert calibration["rule"] == "class" and set(calibration["class_curves"]) == set(names)
        thresholds = {n: c["threshold"] for n, c in calibration["classes"].items()}
        assert settings["gate"][head] == {"classes": thresholds, "target_precision": 0.9}
        assert calibration["unreachable"] == [n for n, t in thresholds.items() if t is None]
        test = result.metrics["test"][head]["gate"]
        assert test["rule"] == "class" and set(test["classes"]) == set(names)
        assert sum(c["routed"] for c in test["classes"].values()) == test["routed"]
    card = (result.model_dir / "report.md").read_text()
    assert card.count("| predicted class | threshold | tickets | routed | coverage |") == 2
