"""Live quality per model version, from the registry's predictions log and feedback.

Totals cover the predictions log's retained window (`prediction_retention_days`); the trend is
the same numbers per UTC day for the last `days` days. Feedback counts only when it names a
logged prediction (a ticket never classified here has nothing to agree with). A head's answer
cleared the auto-routing gate when the classifier logged `"auto_route": true`; answers logged
before it kept that are counted as unknown.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shim.classifier import HEADS
from shim.drift import DriftWatch
from shim.metrics import ApiMetrics
from shim.schemas import (
    AgreementPublic,
    AutoRoutePublic,
    FeedbackAgreementPublic,
    HeadAgreementPublic,
    MonitoringPublic,
    QualityDayPublic,
    VersionQualityPublic,
)
from shim.settings import Settings
from shim.store import Store, utcnow

MAX_DAYS = 90


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

    def heads(self) -> dict[str, list[int]]:
        totals: dict[str, list[int]] = {head: [0, 0] for head in HEADS}
        for head, labels in self.labels.items():
            totals[head] = [sum(c[0] for c in labels.values()), sum(c[1] for c in labels.values())]
        return totals

    def auto_route(self) -> dict[str, AutoRoutePublic]:
        routes = {head: [0, 0, 0] for head in HEADS} | dict(self.routes)
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

    def report(self, days: int, version: int | None = None) -> MonitoringPublic:
        """Totals and trend of `version`, or of every stored version (blocking)."""
        versions = [version] if version is not None else self._versions()
        since = self._since()
        totals = self._counts(versions, since, by_day=False)
        today = utcnow().date()
        first = today - timedelta(days=days - 1)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        daily = self._counts(versions, start, by_day=True)
        return MonitoringPublic(
            since=since,
            days=days,
            versions=[
                self._version(v, totals.get((v, None), _Counts()), daily, first, days)
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
            for head, (total, agreed) in counts.heads().items():
                if total:
                    self.metrics.feedback_agreement.labels(str(v), head).set(agreed / total)
            for head, route in counts.auto_route().items():
                if route.share is not None:
                    self.metrics.auto_route_share.labels(str(v), head).set(route.share)
        self.drift.refresh_gauges(versions)

    def _versions(self) -> list[int]:
        return sorted(record.version for record in self.store.versions())

    def _since(self) -> datetime:
        return utcnow() - timedelta(days=self.settings.prediction_retention_days)

    def _counts(
        self, versions: list[int], since: datetime, by_day: bool
    ) -> dict[tuple[int, Any], _Counts]:
        """(version, day or None) -> counts, from the store's per-day rows."""
        counts: dict[tuple[int, Any], _Counts] = defaultdict(_Counts)
        overall, per_label = self.store.agreement(versions, since)
        since_ms = int(since.timestamp() * 1000)
        routes = self.store.auto_routing(versions, since_ms)
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
    ) -> VersionQualityPublic:
        heads = {
            head: HeadAgreementPublic(
                **_agreement(*counts).model_dump(),
                labels={
                    label: _agreement(*cell)
                    for label, cell in sorted(totals.labels.get(head, {}).items())
                },
            )
            for head, counts in totals.heads().items()
        }
        trend = []
        for i in range(days):
            day = first + timedelta(days=i)
            c = daily.get((version, day.isoformat()), _Counts())
            trend.append(
                QualityDayPublic(
                    day=day,
                    feedback=_agreement(*c.feedback),
                    heads={head: _agreement(*n) for head, n in c.heads().items()},
                    auto_route=c.auto_route(),
                )
            )
        return VersionQualityPublic(
            model_version=version,
            feedback=FeedbackAgreementPublic(
                **_agreement(*totals.feedback).model_dump(), heads=heads
            ),
            auto_route=totals.auto_route(),
            trend=trend,
            drift=self.drift.report(version),
        )
