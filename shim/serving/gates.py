"""What each head's auto-routing gate promises for a version, as the service applies it.

A head's gate is the model's own (fitted at training: the lowest confidence whose out-of-fold
precision has a lower bound at the target), unless the service configures another target
(`target_precision`, read off the same curve by the same rule) or a raw confidence threshold
(`confidence_thresholds`, which promises nothing: only the curve's numbers at it are shown).
A model trained with a gate per class (`gate: class`) keeps it under a service target: each
class's threshold is read off that class's curve; a raw threshold applies to every class alike.
"""

from __future__ import annotations

from typing import Any

from shim.settings import Settings
from training.fit.calibration import class_gate, gate_promise, point_at


def head_gates(metrics: dict[str, Any], settings: Settings) -> dict[str, dict[str, Any]]:
    """Per head of a version's metrics: its gate's status, threshold, expected coverage and
    precision lower bound (`training.fit.calibration.gate_promise`), and where it was set."""
    out = {}
    for head, calibration in (metrics.get("calibration") or {}).items():
        if not isinstance(calibration, dict):
            continue
        curve = calibration.get("validation_curve") or []
        level = calibration.get("confidence_level")
        if head in settings.confidence_thresholds:
            threshold = settings.confidence_thresholds[head]
            out[head] = {
                "status": "configured",
                "threshold": threshold,
                "source": "service",
                **point_at(curve, threshold),
            }
        elif head in settings.target_precision and level is not None:
            target = settings.target_precision[head]
            out[head] = {**gate_promise(curve, target, level), "source": "service"}
            if "class_curves" in calibration:  # a gate per class: re-read per class
                predicted = {n: c["predicted"] for n, c in calibration["classes"].items()}
                out[head] = {
                    **class_gate(calibration["class_curves"], predicted, target, level),
                    "source": "service",
                }
        elif "status" in calibration:
            out[head] = {k: v for k, v in calibration.items() if k not in _NOT_PROMISE}
            out[head]["source"] = "model"
        if out.get(head, {}).get("rule") != "class":
            # A gate per head: the per-class numbers only describe the classes' own curves.
            out.get(head, {}).pop("classes", None)
            out.get(head, {}).pop("unreachable", None)
    return out


# Fields of a head's calibration that describe the fit, not the gate.
_NOT_PROMISE = ("temperature", "validation_curve", "class_curves", "examples")
