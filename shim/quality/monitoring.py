"""Live quality per model version, from the registry's predictions log and feedback.

Totals cover the predictions log's retained window (`prediction_retention_days`); the trend is
the same numbers per UTC day for the last `days` days. Feedback counts only when it names a
logged prediction (a ticket never classified here has nothing to agree with). A head's answer
cleared the auto-routing gate when the classifier logged `"auto_route": true`; answers logged
before it kept that are counted as unknown. The precision of the auto-routed answers is the
share of feedback on them that kept the label, with a 95 % Clopper-Pearson interval; when the
interval's upper end is below the gate's target, the gate is not keeping its promise, and the
report, a gauge and one WARNING per crossing say so.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shim.errors import NotFound
from shim.metrics import ApiMetrics
from shim.quality.drift import DriftWatch
from shim.schemas import (
    AgreementPublic,
    AutoRoutePublic,
    FeedbackAgreementPublic,
    HeadAgreementPublic,
    MonitoringPublic,
    QualityDayPublic,
    RoutedPrecisionPublic,
    VersionQualityPublic,
)
from shim.settings import Settings
from shim.store.registry import Store, utcnow
from training.fit.calibration import precision_interval

logger = logging.getLogger(__name__)

MAX_DAYS = 90
LIVE_PRECISION_LEVEL = 0.95  # two-sided level of the live precision's interval


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _agreement(total: int, agreed: int) -> AgreementPublic:
    return AgreementPublic(total=total, agreed=agreed, share=_share(agreed, total))


def _auto_route(answers: int, cleared: int, unknown: int) -> AutoRoutePublic:
    return AutoRoutePublic(
        answers=answers, cleared=cleared, unknown=unknown, share=_share(cleared, answers - unknown)
    )


class _Counts:
    """One version's counts over some days, from the store's rows."""

    def __init__(self) -> None:
        self.feedback = [0, 0]
        self.labels: dict[str, dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0, 0])
        )
        self.routes: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])

    def heads(self, names: list[str]) -> dict[str, list[int]]:
        """[total, agreed] per head: `names` (zeros when none came), then any other counted."""
        totals: dict[str, list[int]] = {head: [0, 0] for head in names}
        for head, labels in self.labels.items():
            totals[head] = [sum(c[0] for c in labels.values()), sum(c[1] for c in labels.values())]
        return totals

    def auto_route(self, names: list[str]) -> dict[str, AutoRoutePublic]:
        routes = {head: [0, 0, 0] for head in names} | dict(self.routes)
        return {head: _auto_route(*counts) for head, counts in routes.items()}


class Monitoring:
    """The monitoring use case: the report for `GET /api/v1/monitoring`, and the gauges."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: ApiMetrics,
        drift: DriftWatch | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.drift = drift or DriftWatch(settings, store, metrics)
        self._below_target: set[tuple[int, str]] = set()  # (version, head) warned about

    def report(self, days: int, version: int | None = None) -> MonitoringPublic:
        """Totals and trend of `version`, or of every stored version (blocking)."""
        versions = [version] if version is not None else self._versions()
        since = self._since()
        totals = self._counts(versions, since, by_day=False)
        today = utcnow().date()
        first = today - timedelta(days=days - 1)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        daily = self._counts(versions, start, by_day=True)
        routed = self._routed_precision(versions, since)
        return MonitoringPublic(
            since=since,
            days=days,
            versions=[
                self._version(v, totals.get((v, None), _Counts()), daily, first, days, routed[v])
                for v in versions
            ],
        )

    def refresh_gauges(self) -> None:
        """Set the quality gauges from the retained window, for the stored versions only (a
        deleted version's series go away)."""
        versions = self._versions()
        totals = self._counts(versions, self._since(), by_day=False)
        self.metrics.feedback_agreement.clear()
        self.metrics.auto_route_share.clear()
        for v in versions:
            counts = totals.get((v, None), _Counts())
            heads = self._heads(v)
            for head, (total, agreed) in counts.heads(heads).items():
                if total:
                    self.metrics.feedback_agreement.labels(str(v), head).set(agreed / total)
            for head, route in counts.auto_route(heads).items():
                if route.share is not None:
                    self.metrics.auto_route_share.labels(str(v), head).set(route.share)
        self.metrics.auto_route_precision.clear()
        self.metrics.auto_route_below_target.clear()
        for v, heads in self._routed_precision(versions, self._since()).items():
            for head, live in heads.items():
                if live.precision is not None:
                    self.metrics.auto_route_precision.labels(str(v), head).set(live.precision)
                self.metrics.auto_route_below_target.labels(str(v), head).set(live.below_target)
        self.drift.refresh_gauges(versions)

    def _routed_precision(
        self, versions: list[int], since: datetime
    ) -> dict[int, dict[str, RoutedPrecisionPublic]]:
        """Per version and head, the live precision of the auto-routed answers."""
        counts = {
            (v, head): (total, agreed)
            for v, head, total, agreed in self.store.quality.routed_agreement(versions, since)
        }
        out: dict[int, dict[str, RoutedPrecisionPublic]] = {}
        for v in versions:
            targets = self._targets(v)
            out[v] = {}
            for head in self._heads(v):
                total, agreed = counts.get((v, head), (0, 0))
                out[v][head] = self._live(v, head, total, int(agreed or 0), targets.get(head))
        return out

    def _live(
        self, version: int, head: str, total: int, agreed: int, target: float | None
    ) -> RoutedPrecisionPublic:
        low, high = (
            precision_interval(agreed, total, LIVE_PRECISION_LEVEL) if total else (None, None)
        )
        below = target is not None and high is not None and high < target
        warning = (
            f"version {version} head {head}: auto-routed answers are right {agreed} times in "
            f"{total} by agents' feedback; precision at most {high:.3f} ({LIVE_PRECISION_LEVEL:.0%}"
            f" interval), below the gate's target {target:.2f}"
            if below and high is not None and target is not None
            else None
        )
        key = (version, head)
        if warning and key not in self._below_target:
            logger.warning("auto-routing gate below its promise: %s", warning)
            self._below_target.add(key)
        elif not warning and key in self._below_target:
            logger.info(
                "auto-routing gate of version %d head %s back within its promise", version, head
            )
            self._below_target.discard(key)
        return RoutedPrecisionPublic(
            feedback=total,
            agreed=agreed,
            precision=agreed / total if total else None,
            low=low,
            high=high,
            target_precision=target,
            below_target=below,
            warning=warning,
        )

    def _targets(self, version: int) -> dict[str, float]:
        """Per head, the precision the version's gate promises: the service's configured
        target_precision, else the one the model was trained with (none for a head with a
        configured raw threshold)."""
        try:
            calibration = self.store.versions.get(version).metrics.get("calibration") or {}
        except NotFound:
            calibration = {}
        targets = {
            head: float(c["target_precision"])
            for head, c in calibration.items()
            if isinstance(c, dict) and c.get("target_precision") is not None
        }
        targets.update(self.settings.target_precision)
        for head in self.settings.confidence_thresholds:
            targets.pop(head, None)
        return targets

    def _heads(self, version: int) -> list[str]:
        """The version's heads; for a version not stored, those of the stored training data."""
        try:
            return self.store.versions.get(version).heads
        except NotFound:
            datasets = self.store.datasets.all()
            return list(datasets[0].heads) if datasets else []

    def _versions(self) -> list[int]:
        return sorted(record.version for record in self.store.versions.all())

    def _since(self) -> datetime:
        return utcnow() - timedelta(days=self.settings.prediction_retention_days)

    def _counts(
        self, versions: list[int], since: datetime, by_day: bool
    ) -> dict[tuple[int, Any], _Counts]:
        """(version, day or None) -> counts, from the store's per-day rows."""
        counts: dict[tuple[int, Any], _Counts] = defaultdict(_Counts)
        overall, per_label = self.store.quality.agreement(versions, since)
        since_ms = int(since.timestamp() * 1000)
        routes = self.store.quality.auto_routing(versions, since_ms)
        for v, day, total, agreed in overall:
            c = counts[v, day if by_day else None]
            c.feedback[0] += total
            c.feedback[1] += agreed
        for v, day, head, label, total, agreed in per_label:
            cell = counts[v, day if by_day else None].labels[head][str(label)]
            cell[0] += total
            cell[1] += agreed
        for v, day, head, answers, cleared, unknown in routes:
            cell = counts[v, day if by_day else None].routes[head]
            cell[0] += answers
            cell[1] += cleared
            cell[2] += unknown
        return counts

    def _version(
        self,
        version: int,
        totals: _Counts,
        daily: dict[tuple[int, Any], _Counts],
        first: date,
        days: int,
        routed: dict[str, RoutedPrecisionPublic],
    ) -> VersionQualityPublic:
        names = self._heads(version)
        heads = {
            head: HeadAgreementPublic(
                **_agreement(*counts).model_dump(),
                labels={
                    label: _agreement(*cell)
                    for label, cell in sorted(totals.labels.get(head, {}).items())
                },
            )
            for head, counts in totals.heads(names).items()
        }
        trend = []
        for i in range(days):
            day = first + timedelta(days=i)
            c = daily.get((version, day.isoformat()), _Counts())
            trend.append(
                QualityDayPublic(
                    day=day,
                    feedback=_agreement(*c.feedback),
                    heads={head: _agreement(*n) for head, n in c.heads(names).items()},
                    auto_route=c.auto_route(names),
                )
            )
        return VersionQualityPublic(
            model_version=version,
            feedback=FeedbackAgreementPublic(
                **_agreement(*totals.feedback).model_dump(), heads=heads
            ),
            auto_route=totals.auto_route(names),
            auto_route_precision=routed,
            trend=trend,
            drift=self.drift.report(version),
        )
