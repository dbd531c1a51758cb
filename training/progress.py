"""Training progress: the events the CLI's bar and the service's job record are fed from.

`Reporter` turns each stage's progress (embedding, fitting heads, fine-tuning) into `Progress`
events, at most every REPORT_INTERVAL_S, and tells the chosen mode with its measured expected
duration once, before the long work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tqdm.auto import tqdm

from training.modes import Plan

# Progress goes out at most this often (and for the first and last step).
REPORT_INTERVAL_S = 0.5


@dataclass
class Progress:
    """Training progress, as reported to the CLI's bar and to the service's job record.

    `stage` is "embedding" (fast and full: the frozen encoder embeds the texts not cached yet),
    "fitting heads" or "fine-tuning"; `loss` is only known while fine-tuning.
    """

    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float | None
    elapsed_s: float
    eta_s: float
    stage: str = "fine-tuning"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]
PlanCallback = Callable[[dict[str, Any]], None]


class Reporter:
    """Turns the stages' progress into `Progress` events and the CLI's bar."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        bar: bool,
        started: float,
        plan: Plan,
        on_plan: PlanCallback | None,
    ) -> None:
        self.callback = callback
        self.plan: Plan | None = plan
        self.on_plan = on_plan
        self.show_bar = bar
        self.started = started
        self.reported_at = -REPORT_INTERVAL_S
        self.bar: Any = None

    def emit(self, report: Progress, force: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        if not force and elapsed - self.reported_at < REPORT_INTERVAL_S:
            return
        self.reported_at = elapsed
        if self.bar is not None:
            self.bar.n = report.step
            if report.loss is not None:
                self.bar.set_postfix(epoch=report.epoch, loss=f"{report.loss:.3f}", refresh=False)
            self.bar.refresh()
        if self.callback:
            self.callback(report)

    def due(self) -> bool:
        return time.monotonic() - self.started - self.reported_at >= REPORT_INTERVAL_S

    def write(self, line: str) -> None:
        if self.bar is not None and self.show_bar:
            self.bar.write(line)

    def stage(self, name: str, total: int = 0) -> None:
        """Start a stage: a fresh bar of `total` steps (none for an unmeasured stage)."""
        if self.bar is not None:
            self.bar.close()
        self.bar = tqdm(total=total, desc=name, unit="step", disable=not self.show_bar or not total)
        if self.callback and not total:
            elapsed = round(time.monotonic() - self.started, 1)
            self.callback(Progress(1, 1, 0, 0, None, elapsed, 0.0, name))

    def send_plan(self, remaining_s: float) -> None:
        """Tell `on_plan` the mode and the expected duration, once: elapsed + `remaining_s`
        (+ the projected fine-tune in full mode)."""
        if self.plan is None:
            return
        expected = time.monotonic() - self.started + remaining_s
        if self.plan.mode == "full" and self.plan.projected_full_s is not None:
            expected += self.plan.projected_full_s
        if self.on_plan is not None:
            self.on_plan({**self.plan.to_dict(), "expected_s": round(expected, 1)})
        self.plan = None

    def embedding(
        self, later_texts: int = 0, later_s: float = 0.0
    ) -> Callable[[int, int, float], None]:
        """The progress callback of `embed_texts`. Its first batch measures the expected time:
        the embedding left, `later_texts` more to embed at the same pace (the test split, after
        training), and `later_s` of work measured by an earlier run (fitting the heads)."""
        self.stage("embedding", 1)
        began = time.monotonic()

        def report(done: int, total: int, eta: float) -> None:
            if self.bar is not None:
                self.bar.total = total
            per_text = (time.monotonic() - began + eta) / total
            self.send_plan(eta + per_text * later_texts + later_s)
            elapsed = round(time.monotonic() - self.started, 1)
            self.emit(
                Progress(1, 1, done, total, None, elapsed, round(eta, 1), "embedding"),
                force=done in (1, total),
            )

        return report

    def fitting(self) -> Callable[[int, int, float], None]:
        """The progress callback of `fit_linear_heads`: work units done, in all, seconds."""
        self.stage("fitting heads", 1)

        def report(done: int, total: int, seconds: float) -> None:
            eta = seconds / done * (total - done)
            elapsed = round(time.monotonic() - self.started, 1)
            self.emit(
                Progress(1, 1, done, total, None, elapsed, round(eta, 1), "fitting heads"),
                force=done == total,
            )

        return report

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
