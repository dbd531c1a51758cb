"""The drift watch: do a version's live tickets still look like the data it was trained on?

Over the version's newest `drift_window` logged answers (within retention) it compares, with
the Jensen-Shannon distance (`training.fit.drift.distance`, 0 = the same, 1 = disjoint):
- per head, the predicted labels with the labels of the data the model learned from;
- per head, the confidence histogram with the model's own on validation;
- the per-ticket share of rare word pieces with the training texts' (one for both heads).
A head's drift score is the largest of its two distances and the rare-piece one, so one signal
going far is enough; it drifts above `drift_threshold`. A window smaller than
`drift_min_predictions` gets no score: a handful of tickets is all noise. `docs/operations.md`
says how the default threshold was chosen (bench/drift.py).

A version is assessed every `drift_check_every` answers it logs, and whenever monitoring or
/metrics asks; a head that crosses the threshold upwards logs a warning (once per crossing) and
calls `on_drift` (the retraining policy).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from shim.errors import NotFound
from shim.metrics import ApiMetrics
from shim.schemas import DriftPublic, DriftSignalPublic, HeadDriftPublic
from shim.settings import Settings
from shim.store.registry import PredictionRecord, Store, utcnow
from training.fit.drift import distance, histogram, label_vector

logger = logging.getLogger(__name__)

# (version, heads that started drifting) -> None
DriftListener = Callable[[int, list[str]], None]


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [round(n / total, 6) if total else 0.0 for n in counts]


def _ranges(edges: Sequence[float]) -> list[str]:
    return [f"{low:g}-{high:g}" for low, high in itertools.pairwise(edges)]


def signal(live: Sequence[int], reference: Sequence[int], bins: list[str]) -> DriftSignalPublic:
    """One comparison of live counts with reference counts over the same bins."""
    return DriftSignalPublic(
        distance=distance(live, reference),
        bins=bins,
        live=_shares(live),
        reference=_shares(reference),
    )


def _empty_signal() -> DriftSignalPublic:
    return DriftSignalPublic(distance=None, bins=[], live=[], reference=[])


def assess(
    reference: dict[str, Any] | None,
    window: list[tuple[dict[str, dict[str, Any]], float | None]],
    settings: Settings,
) -> DriftPublic:
    """The drift of one window of answers (labels per head, rare token share) against a
    model's `drift_reference` (None: a model trained before references were kept)."""
    shares = [share for _, share in window if share is not None]
    enough = len(window) >= settings.drift_min_predictions
    rare = _empty_signal()
    reference_share = None
    if reference is not None and reference.get("rare_tokens"):
        tokens = reference["rare_tokens"]
        reference_share = tokens.get("mean")
        rare = signal(
            histogram(shares, tokens["edges"]) if shares else [0] * len(tokens["counts"]),
            tokens["counts"],
            _ranges(tokens["edges"]),
        )
    heads: dict[str, HeadDriftPublic] = {}
    for head in reference["labels"] if reference is not None else ():
        answers = [labels[head] for labels, _ in window if head in labels]
        names = sorted(reference["labels"][head])
        said = Counter(str(a["label"]) for a in answers)
        names += sorted(set(said) - set(names))  # a label the reference never saw
        labels = signal(
            label_vector(said, names), label_vector(reference["labels"][head], names), names
        )
        confidence = _empty_signal()
        if head in reference.get("confidence", {}):
            hist = reference["confidence"][head]
            confidence = signal(
                histogram([float(a["confidence"]) for a in answers], hist["edges"]),
                hist["counts"],
                _ranges(hist["edges"]),
            )
        parts = [d for d in (labels.distance, confidence.distance, rare.distance) if d is not None]
        score = max(parts) if enough and parts else None
        heads[head] = HeadDriftPublic(
            score=score,
            drifting=score is not None and score > settings.drift_threshold,
            labels=labels,
            confidence=confidence,
        )
    if reference is None:
        status = "no_reference"
    elif not enough:
        status = "not_enough_data"
    else:
        status = "drifting" if any(h.drifting for h in heads.values()) else "ok"
    return DriftPublic(
        window=len(window),
        window_size=settings.drift_window,
        min_predictions=settings.drift_min_predictions,
        threshold=settings.drift_threshold,
        status=status,
        rare_tokens=rare,
        rare_token_share=round(sum(shares) / len(shares), 6) if shares else None,
        reference_rare_token_share=reference_share,
        heads=heads,
    )


class DriftWatch:
    """Assesses versions' drift, keeps the gauges, and tells when a head starts drifting."""

    def __init__(self, settings: Settings, store: Store, metrics: ApiMetrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.listeners: list[DriftListener] = []
        self._lock = threading.Lock()
        self._unchecked: Counter[int] = Counter()  # answers logged since a version's last check
        self._drifting: dict[tuple[int, str], bool] = {}
        self._references: dict[int, dict[str, Any] | None] = {}

    def observe(self, records: list[PredictionRecord]) -> None:
        """Count a request's logged answers; assess a version every `drift_check_every`."""
        due = []
        with self._lock:
            for version, n in Counter(r.version for r in records if r.version).items():
                self._unchecked[version] += n
                if self._unchecked[version] >= self.settings.drift_check_every:
                    self._unchecked[version] = 0
                    due.append(version)
        for version in due:
            self.report(version)

    def report(self, version: int) -> DriftPublic:
        """Assess `version` now (blocking); logs and tells the listeners of a new crossing."""
        since = utcnow() - timedelta(days=self.settings.prediction_retention_days)
        window = self.store.predictions.recent(
            version, int(since.timestamp() * 1000), self.settings.drift_window
        )
        drift = assess(self._reference(version), window, self.settings)
        started = []
        with self._lock:
            for head, result in drift.heads.items():
                was = self._drifting.get((version, head), False)
                self._drifting[version, head] = result.drifting
                if result.drifting and not was:
                    started.append(head)
                    logger.warning(
                        "drift: version %d head %s scores %.3f, above the threshold %.2f "
                        "(labels %s, confidence %s, rare tokens %s, over %d answers)",
                        version,
                        head,
                        result.score,
                        self.settings.drift_threshold,
                        _fmt(result.labels.distance),
                        _fmt(result.confidence.distance),
                        _fmt(drift.rare_tokens.distance),
                        drift.window,
                    )
                elif was and not result.drifting and result.score is not None:
                    logger.info(
                        "drift: version %d head %s is back under the threshold (%.3f)",
                        version,
                        head,
                        result.score,
                    )
        for listener in self.listeners if started else ():
            listener(version, started)
        return drift

    def refresh_gauges(self, versions: list[int]) -> None:
        """Set the drift gauges of the stored `versions` (a deleted one's series go away)."""
        reports = {v: self.report(v) for v in versions}
        for gauge in (self.metrics.drift_score, self.metrics.drift_distance):
            gauge.clear()
        self.metrics.rare_token_share.clear()
        for version, drift in reports.items():
            for head, result in drift.heads.items():
                if result.score is None:
                    continue
                self.metrics.drift_score.labels(str(version), head).set(result.score)
                signals = {
                    "labels": result.labels.distance,
                    "confidence": result.confidence.distance,
                    "rare_tokens": drift.rare_tokens.distance,
                }
                for name, value in signals.items():
                    if value is not None:
                        self.metrics.drift_distance.labels(str(version), head, name).set(value)
            if drift.rare_token_share is not None:
                self.metrics.rare_token_share.labels(str(version)).set(drift.rare_token_share)

    def _reference(self, version: int) -> dict[str, Any] | None:
        if version not in self._references:  # a version's metrics never change
            try:
                metrics = self.store.versions.get(version).metrics
            except NotFound:
                return None
            self._references[version] = metrics.get("drift_reference")
        return self._references[version]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
