"""Calibrated confidences and the auto-routing gate, both fitted on the validation split.

- `fit_temperature`: one temperature per head, the scalar that minimises the validation
  negative log-likelihood of softmax(logits / T) (Guo et al., 2017): it changes confidences, never
  the predicted label.
- `precision_curve` / `threshold_for`: the gate is the lowest confidence threshold whose tickets
  (confidence >= threshold) reach a target precision on validation. The curve is kept in the
  model's metrics, so the service can find the threshold for any other target later.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

DEFAULT_TARGET_PRECISION = 0.9
# Temperatures outside this range mean the validation split says nothing useful.
TEMPERATURE_RANGE = (0.01, 100.0)


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the NLL of `targets` (class indices) under softmax(logits/T)."""
    if len(targets) == 0:
        return 1.0
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(targets))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, targets].mean())

    low, high = np.log(TEMPERATURE_RANGE)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


CURVE_STEP = 1000  # thresholds on a 0.001 grid: at most 1,001 points, whatever the data size


def precision_curve(confidence: np.ndarray, correct: np.ndarray) -> list[list[float]]:
    """[[threshold, precision, coverage], ...] ascending, for every threshold on the 0.001 grid
    that some confidence reaches: precision and share of the tickets whose confidence is at
    least that threshold."""
    grid = np.floor(np.asarray(confidence, dtype=np.float64) * CURVE_STEP + 1e-9)
    confidence = grid / CURVE_STEP
    if len(confidence) == 0:
        return []
    order = np.argsort(-confidence, kind="stable")
    sorted_conf = confidence[order]
    hits = np.cumsum(np.asarray(correct, dtype=np.float64)[order])
    counts = np.arange(1, len(order) + 1)
    # The last position of each run of equal confidences closes that threshold's group.
    last = np.r_[sorted_conf[1:] != sorted_conf[:-1], True]
    points = zip(
        sorted_conf[last], hits[last] / counts[last], counts[last] / len(order), strict=True
    )
    return [[float(t), round(float(p), 6), round(float(c), 6)] for t, p, c in points][::-1]


def threshold_for(curve: list[list[float]], target: float) -> float | None:
    """The lowest threshold of `curve` reaching `target` precision; None when none does."""
    reached = [threshold for threshold, precision, _ in curve if precision >= target]
    return min(reached) if reached else None


def clears_gate(confidence: float, threshold: float | None) -> bool:
    """Whether a confidence may be routed automatically; None: no threshold reached the target.

    training/model.py applies the same rule inside archives, which cannot import this module.
    """
    return threshold is not None and confidence >= threshold


def gate_report(
    confidence: np.ndarray, correct: np.ndarray, threshold: float | None, target: float
) -> dict[str, Any]:
    """Coverage and precision of the tickets a threshold routes automatically."""
    confidence = np.asarray(confidence, dtype=np.float64)
    routed = confidence >= threshold if threshold is not None else np.zeros(len(confidence), bool)
    count = int(routed.sum())
    return {
        "target_precision": target,
        "threshold": threshold,
        "coverage": round(count / len(confidence), 6) if len(confidence) else 0.0,
        "precision": round(float(np.asarray(correct)[routed].mean()), 6) if count else None,
        "routed": count,
        "examples": len(confidence),
    }
