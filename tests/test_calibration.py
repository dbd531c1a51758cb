"""Temperature scaling and the auto-routing gate, on numbers whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibration import (
    clears_gate,
    fit_temperature,
    gate_report,
    precision_curve,
    threshold_for,
)
from training.evaluate import expected_calibration_error
from training.model import probabilities


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


def test_precision_curve_and_lowest_threshold_reaching_the_target() -> None:
    confidence = np.array([0.95, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 0])
    curve = precision_curve(confidence, correct)
    assert [c[0] for c in curve] == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    as_dict = {t: (p, c) for t, p, c in curve}
    assert as_dict[0.9] == (1.0, 0.375)  # both 0.9 tickets count at threshold 0.9
    assert as_dict[0.6] == (pytest.approx(5 / 6), 0.75)
    assert threshold_for(curve, 1.0) == 0.8
    assert threshold_for(curve, 0.8) == 0.6
    assert threshold_for(curve, 0.5) == 0.4
    assert threshold_for([], 0.9) is None
    assert threshold_for(precision_curve(np.array([0.9]), np.array([0])), 0.9) is None


def test_gate_report_counts_what_clears_the_threshold() -> None:
    confidence = np.array([0.95, 0.9, 0.7, 0.5])
    correct = np.array([1, 0, 1, 1])
    report = gate_report(confidence, correct, 0.9, 0.9)
    assert report["coverage"] == 0.5 and report["precision"] == 0.5 and report["routed"] == 2
    nothing = gate_report(confidence, correct, None, 0.9)
    assert nothing["coverage"] == 0.0 and nothing["precision"] is None
    assert clears_gate(0.9, 0.9) and not clears_gate(0.89, 0.9) and not clears_gate(1.0, None)
