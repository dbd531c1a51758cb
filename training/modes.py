"""Which training mode runs, and how long it is expected to take.

`auto` resolves to `full` only on a GPU, and only when the fine-tune projected from a measured
training step fits in `auto_full_budget_s`; everywhere else to `fast`. Why: on the 2-core CPU we
measured 0.53 s per ticket and epoch for fine-tuning multilingual-e5-small (about 3.8 hours for
3,200 tickets and 8 epochs), against about 6 minutes for `fast` on the same tickets, which also
scored higher there (README, "Accuracy and speed"); on an H200 the same fine-tune took 85 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from training.config import TrainConfig

if TYPE_CHECKING:  # the API process reads Plan and must not load torch
    import torch


@dataclass(frozen=True)
class Plan:
    """The mode that runs, why, and the measured projection of the fine-tune (when made)."""

    mode: str
    requested: str
    reason: str
    projected_full_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_mode(
    config: TrainConfig, device: torch.device, project_full: Callable[[], float]
) -> Plan:
    """Resolve `config.mode`; `project_full` measures a step and returns the projected seconds
    of the whole fine-tune (called only where the choice depends on it)."""
    if config.mode == "fast":
        return Plan("fast", "fast", "fast was asked for")
    if config.mode == "full":
        return Plan("full", "full", "full was asked for", project_full())
    if device.type != "cuda":
        return Plan("fast", "auto", "no GPU: fine-tuning on a CPU takes hours (fast takes minutes)")
    projected = project_full()
    if projected <= config.auto_full_budget_s:
        reason = f"GPU: the fine-tune is projected at {projected:.0f} s (budget "
        return Plan("full", "auto", reason + f"{config.auto_full_budget_s} s)", projected)
    reason = f"GPU, but the fine-tune is projected at {projected:.0f} s, over the budget of "
    return Plan("fast", "auto", reason + f"{config.auto_full_budget_s} s", projected)
