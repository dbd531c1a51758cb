"""What each head's auto-routing gate promises for a version, as the service applies it.

A head's gate is the model's own (fitted at training: the lowest confidence whose out-of-fold
precision has a lower bound at the target), unless the service configures another target
(`target_precision`, read off the same curve by the same rule) or a raw confidence threshold
(`confidence_thresholds`, which promises nothing: only the curve's numbers at it are shown).
"""

from __future__ import annotations

from typing import Any

from shim.settings import Settings
from training.calibration import gate_promise, point_at


def head_gates(metrics: dict[str, Any], settings: Settings) -> dict[str, dict[str, Any]]:
    """Per head of a version's metrics: its gate's status, threshold, expected coverage and
    precision lower bound (`training.calibration.gate_promise`), and where it was set."""
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
            out[head] = {
                **gate_promise(curve, settings.target_precision[head], level),
                "source": "service",
            }
        elif "status" in calibration:
            out[head] = {k: v for k, v in calibration.items() if k not in _NOT_PROMISE}
            out[head]["source"] = "model"
    return out


# Fields of a head's calibration that describe the fit, not the gate.
_NOT_PROMISE = ("temperature", "validation_curve", "examples")
