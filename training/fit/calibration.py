"""Calibrated confidences and the auto-routing gate.

- `fit_temperature`: one temperature per head, the scalar that minimises the negative
  log-likelihood of softmax(logits / T) on held-out scores (Guo et al., 2017): it changes
  confidences, never the predicted label.
- `precision_curve` / `threshold_for`: per confidence threshold, the precision of the tickets at
  or above it, and a one-sided Clopper-Pearson lower bound of that precision. The gate is the
  lowest threshold whose *lower bound* reaches the target precision, so a threshold reached by a
  lucky handful of tickets does not open it; when none does, the gate stays closed. The curve is
  kept in the model's metrics, so the service can find the threshold for another target later.
- `class_curves` / `class_gate`: the same rule per predicted class (the `gate: class` setting):
  each class's curve is over the tickets predicted as it, so a class the model confuses gets a
  higher threshold (or none: it never routes) and a class it knows gets a lower one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Temperatures outside this range mean the validation split says nothing useful.
TEMPERATURE_RANGE = (0.01, 100.0)


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the NLL of `targets` (class indices) under softmax(logits/T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

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


def precision_lower_bound(hits: int, count: int, level: float) -> float:
    """One-sided Clopper-Pearson lower bound of a precision of `hits` out of `count`: the true
    precision is at least this with probability `level`."""
    if count <= 0 or hits <= 0:
        return 0.0
    return float(_beta_ppf(1.0 - level, hits, count - hits + 1))


def precision_interval(hits: int, count: int, level: float) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of a precision of `hits` out of `count`."""
    if count <= 0:
        return 0.0, 1.0
    tail = (1.0 - level) / 2
    low = float(_beta_ppf(tail, hits, count - hits + 1)) if hits > 0 else 0.0
    high = float(_beta_ppf(1.0 - tail, hits + 1, count - hits)) if hits < count else 1.0
    return low, high


def precision_curve(confidence: np.ndarray, correct: np.ndarray, level: float) -> list[list[float]]:
    """[[threshold, precision, coverage, precision_lower_bound], ...] ascending, for every
    threshold on the 0.001 grid that some confidence reaches: precision, share and the
    precision's lower bound (at `level`) of the tickets whose confidence is at least that
    threshold."""
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
    hits, counts = hits[last].astype(np.int64), counts[last]
    # Clopper-Pearson for all points at once (precision_lower_bound, vectorised).
    bounds = np.where(hits > 0, _beta_ppf(1.0 - level, np.maximum(hits, 1), counts - hits + 1), 0.0)
    points = zip(sorted_conf[last], hits / counts, counts / len(order), bounds, strict=True)
    return [
        [float(t), round(float(p), 6), round(float(c), 6), round(float(b), 6)]
        for t, p, c, b in points
    ][::-1]


def _beta_ppf(q: Any, a: Any, b: Any) -> Any:
    """The beta distribution's quantile function. scipy is imported here: the API process reads
    gates through this module, and scipy.stats costs it most of a second to start."""
    from scipy.stats import beta

    return beta.ppf(q, a, b)


def threshold_for(curve: list[list[float]], target: float) -> float | None:
    """The lowest threshold of `curve` whose precision lower bound reaches `target`; None when
    none does (the gate is closed). A curve from before the bound was kept (three numbers per
    point) is read by its point precision."""
    reached = [point[0] for point in curve if _assured(point) >= target]
    return min(reached) if reached else None


def point_estimate_threshold(curve: list[list[float]], target: float) -> float | None:
    """The rule before the lower bound: the lowest threshold whose precision reaches `target`
    (kept for the benchmark that compares the two)."""
    reached = [point[0] for point in curve if point[1] >= target]
    return min(reached) if reached else None


def gate_promise(curve: list[list[float]], target: float, level: float) -> dict[str, Any]:
    """What a gate promises, read off its curve: open (threshold, expected coverage, precision
    and its lower bound there) or closed (and the best lower bound reachable, where)."""
    threshold = threshold_for(curve, target)
    promise: dict[str, Any] = {
        "target_precision": target,
        "confidence_level": level,
        "status": "open" if threshold is not None else "closed",
        "threshold": threshold,
    }
    if threshold is not None:
        point = next(p for p in curve if p[0] == threshold)
        promise.update(
            expected_coverage=point[2], precision=point[1], precision_lower_bound=_assured(point)
        )
    elif curve:
        # The threshold with the highest lower bound (the widest such, on ties).
        point = max(curve, key=lambda p: (_assured(p), p[2]))
        promise["best_reachable"] = {
            "threshold": point[0],
            "precision": point[1],
            "precision_lower_bound": _assured(point),
            "coverage": point[2],
        }
    return promise


def point_at(curve: list[list[float]], threshold: float) -> dict[str, Any]:
    """The curve's numbers at a fixed threshold (its first point at or above it): expected
    coverage, precision and its lower bound; empty when no point is."""
    point = next((p for p in curve if p[0] >= threshold), None)
    if point is None:
        return {}
    return {
        "expected_coverage": point[2],
        "precision": point[1],
        "precision_lower_bound": _assured(point),
    }


def _assured(point: list[float]) -> float:
    return point[3] if len(point) > 3 else point[1]


def clears_gate(confidence: float, threshold: float | None) -> bool:
    """Whether a confidence may be routed automatically; None: no threshold reached the target.

    training/inference/model.py applies the same rule inside archives, which cannot import this
    module.
    """
    return threshold is not None and confidence >= threshold


def class_curves(
    confidence: np.ndarray,
    predicted: np.ndarray,
    correct: np.ndarray,
    labels: list[str],
    level: float,
) -> dict[str, list[list[float]]]:
    """Per class, `precision_curve` over the tickets predicted as that class (its coverage is a
    share of those tickets); empty for a class never predicted."""
    predicted = np.asarray(predicted)
    return {
        name: precision_curve(
            np.asarray(confidence)[predicted == i], np.asarray(correct)[predicted == i], level
        )
        for i, name in enumerate(labels)
    }


def class_gate(
    curves: dict[str, list[list[float]]], predicted: dict[str, int], target: float, level: float
) -> dict[str, Any]:
    """A gate per predicted class (`gate_promise` on each class's curve, `predicted` tickets
    each), and what they promise together: the share of all tickets routed, their precision and
    its lower bound. Open while any class routes; the classes whose gate is closed never do."""
    classes: dict[str, Any] = {}
    routed = hits = 0
    for name, curve in curves.items():
        promise = gate_promise(curve, target, level)
        del promise["target_precision"], promise["confidence_level"]  # the head's, said once
        classes[name] = {**promise, "predicted": int(predicted.get(name, 0))}
        if promise["threshold"] is not None:
            count = round(promise["expected_coverage"] * classes[name]["predicted"])
            routed += count
            hits += round(promise["precision"] * count)
    total = sum(int(n) for n in predicted.values())
    out: dict[str, Any] = {
        "rule": "class",
        "target_precision": target,
        "confidence_level": level,
        "status": "open" if routed else "closed",
        "threshold": None,
        "classes": classes,
        "unreachable": [name for name, c in classes.items() if c["status"] == "closed"],
    }
    if routed:
        out.update(
            expected_coverage=round(routed / total, 6),
            precision=round(hits / routed, 6),
            precision_lower_bound=round(precision_lower_bound(hits, routed, level), 6),
        )
    return out


def gate_report(
    confidence: np.ndarray,
    correct: np.ndarray,
    threshold: float | np.ndarray | None,
    target: float,
) -> dict[str, Any]:
    """Coverage and precision of the tickets a threshold routes automatically; `threshold` may
    be one per ticket (NaN: that ticket never routes), as a per-class gate sets it."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if threshold is None:
        routed = np.zeros(len(confidence), bool)
    else:
        # NaN compares false: a ticket without a threshold is never routed.
        routed = confidence >= np.asarray(threshold, dtype=np.float64)
        threshold = None if np.ndim(threshold) else threshold
    count = int(routed.sum())
    return {
        "target_precision": target,
        "threshold": threshold,
        "coverage": round(count / len(confidence), 6) if len(confidence) else 0.0,
        "precision": round(float(np.asarray(correct)[routed].mean()), 6) if count else None,
        "routed": count,
        "examples": len(confidence),
    }


def class_report(
    confidence: np.ndarray,
    correct: np.ndarray,
    predicted: np.ndarray,
    labels: list[str],
    thresholds: list[float | None],
    target: float,
) -> dict[str, dict[str, Any]]:
    """Per class, `gate_report` of the tickets predicted as it at that class's threshold: its
    coverage is a share of those tickets."""
    confidence, correct = np.asarray(confidence), np.asarray(correct)
    predicted = np.asarray(predicted)
    return {
        name: gate_report(confidence[predicted == i], correct[predicted == i], threshold, target)
        for i, (name, threshold) in enumerate(zip(labels, thresholds, strict=True))
    }
