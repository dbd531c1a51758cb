"""`/api/v1/monitoring`: live quality per model version (feedback agreement, auto-routing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from shim.api.deps import MonitoringDep, ServicesDep
from shim.quality.monitoring import MAX_DAYS
from shim.schemas import MAX_VERSION, ConnectorStatsPublic, ErrorPublic, MonitoringPublic

router = APIRouter(prefix="/monitoring", tags=["monitoring"])


@router.get(
    "",
    response_model=MonitoringPublic,
    responses={422: {"model": ErrorPublic, "description": "days or version out of bounds"}},
    summary="Live quality per model version",
)
async def get_monitoring(
    monitoring: MonitoringDep,
    services: ServicesDep,
    days: Annotated[
        int, Query(ge=1, le=MAX_DAYS, description="days in the trend, today included")
    ] = 7,
    version: Annotated[
        int | None,
        Query(ge=1, le=MAX_VERSION, description="one model version (default: every stored one)"),
    ] = None,
) -> MonitoringPublic:
    """Feedback agreement (overall, per head, per head and predicted label) and the share of
    answers that cleared each head's auto-routing gate, over the retained predictions log, and
    the same per UTC day for the last `days` days; each help-desk connector's outbox."""
    report = await run_in_threadpool(monitoring.report, days, version)
    for name, connector in services.connectors.items():
        stats = await run_in_threadpool(services.outbox.stats, name)
        last = stats.last_delivery_ms
        report.connectors[name] = ConnectorStatsPublic(
            mode=connector.mode,
            problem=services.outbox.problems.get(name),
            last_delivery=datetime.fromtimestamp(last / 1000, UTC) if last else None,
            pending=stats.pending,
            done=stats.done,
            failed=stats.failed,
            last_error=stats.last_error,
        )
    return report
