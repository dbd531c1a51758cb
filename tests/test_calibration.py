"""Temperature scaling and the auto-routing gate, on numbers whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.fit.calibration import (
    clears_gate,
    fit_temperature,
    gate_promise,
    gate_report,
    point_estimate_threshold,
    precision_curve,
    precision_interval,
    precision_lower_bound,
    threshold_for,
)
from training.fit.evaluate import expected_calibration_error
from training.inference.model import probabilities


def test_temperature_undoes_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    probs = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(5, p=p) for p in probs])
    temperature = fit_temperature(true_logits * 4, targets)  # four times too confident
    assert temperature == pytest.approx(4.0, rel=0.1)
    raw = probabilities({"h": true_logits * 4})["h"]
    fixed = probabilities({"h": true_logits * 4}, {"h": temperature})["h"]
    ece = [
        expected_calibration_error(p.max(axis=1), p.argmax(axis=1) == targets) for p in (raw, fixed)
    ]
    assert ece[1] < 0.03 < ece[0]
    assert (raw.argmax(axis=1) == fixed.argmax(axis=1)).all()  # labels never change


def test_precision_curve_counts_each_threshold_and_its_lower_bound() -> None:
    confidence = np.array([0.95, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 0])
    curve = precision_curve(confidence, correct, 0.95)
    assert [c[0] for c in curve] == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    as_dict = {t: (p, c, b) for t, p, c, b in curve}
    assert as_dict[0.9][:2] == (1.0, 0.375)  # both 0.9 tickets count at threshold 0.9
    assert as_dict[0.6][:2] == (pytest.approx(5 / 6), 0.75)
    # Clopper-Pearson: 3 of 3 right -> the precision is at least 0.05 ** (1 / 3) at 95 %.
    assert as_dict[0.9][2] == pytest.approx(0.05 ** (1 / 3), abs=1e-6)
    assert as_dict[0.6][2] == pytest.approx(precision_lower_bound(5, 6, 0.95), abs=1e-6)
    assert threshold_for([], 0.9) is None
    assert threshold_for(precision_curve(np.array([0.9]), np.array([0]), 0.95), 0.9) is None


def test_a_lucky_handful_does_not_open_the_gate() -> None:
    """20 tickets at 0.99, all right: the point estimate clears 0.90, its lower bound does not
    (0.05 ** (1/20) = 0.861), so the gate stays closed where the old rule opened it."""
    rng = np.random.default_rng(0)
    confidence = np.r_[np.full(20, 0.99), rng.uniform(0.3, 0.8, 200)]
    correct = np.r_[np.ones(20, bool), np.zeros(200, bool)]
    curve = precision_curve(confidence, correct, 0.95)
    assert point_estimate_threshold(curve, 0.9) is not None  # the old rule opened it
    assert threshold_for(curve, 0.9) is None
    promise = gate_promise(curve, 0.9, 0.95)
    assert promise["status"] == "closed" and promise["threshold"] is None
    best = promise["best_reachable"]
    assert best["threshold"] == 0.99 and best["precision"] == 1.0
    assert best["precision_lower_bound"] == pytest.approx(0.05 ** (1 / 20), abs=1e-6)
    assert best["coverage"] == pytest.approx(20 / 220, abs=1e-6)


def test_the_gate_opens_where_the_lower_bound_reaches_the_target() -> None:
    """400 tickets at 0.95 with 390 right (bound 0.955), 100 at 0.85 with 80 right: together
    0.94 right, bound 0.92. The gate opens at 0.85, the lowest threshold whose bound reaches
    0.90; at 0.92 only 0.95 does."""
    confidence = np.r_[np.full(400, 0.95), np.full(100, 0.85), np.full(300, 0.5)]
    correct = np.r_[np.arange(400) < 390, np.arange(100) < 80, np.arange(300) < 100]
    curve = precision_curve(confidence, correct, 0.95)
    assert threshold_for(curve, 0.9) == 0.85
    assert threshold_for(curve, 0.93) == 0.95
    promise = gate_promise(curve, 0.9, 0.95)
    assert promise["status"] == "open" and promise["threshold"] == 0.85
    assert promise["expected_coverage"] == pytest.approx(500 / 800)
    assert promise["precision"] == pytest.approx(470 / 500)
    assert promise["precision_lower_bound"] == pytest.approx(
        precision_lower_bound(470, 500, 0.95), abs=1e-6
    )
    assert 0.9 <= promise["precision_lower_bound"] < promise["precision"]


def test_precision_interval_brackets_the_share() -> None:
    low, high = precision_interval(45, 50, 0.95)
    assert low < 0.9 < high < 0.98
    assert precision_interval(0, 10, 0.95)[0] == 0.0 and precision_interval(10, 10, 0.95)[1] == 1.0
    assert precision_interval(0, 0, 0.95) == (0.0, 1.0)


def test_gate_report_counts_what_clears_the_threshold() -> None:
    confidence = np.array([0.95, 0.9, 0.7, 0.5])
    correct = np.array([1, 0, 1, 1])
    report = gate_report(confidence, correct, 0.9, 0.9)
    assert report["coverage"] == 0.5 and report["precision"] == 0.5 and report["routed"] == 2
    nothing = gate_report(confidence, correct, None, 0.9)
    assert nothing["coverage"] == 0.0 and nothing["precision"] is None
    assert clears_gate(0.9, 0.9) and not clears_gate(0.89, 0.9) and not clears_gate(1.0, None)
