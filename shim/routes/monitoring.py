"""`/api/v1/monitoring`: live quality per model version (feedback agreement, auto-routing)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shim.deps import MonitoringDep
from shim.monitoring import MAX_DAYS
from shim.schemas import MAX_VERSION, ErrorPublic, MonitoringPublic

router = APIRouter(prefix="/monitoring", tags=["monitoring"])


@router.get(
    "",
    response_model=MonitoringPublic,
    responses={422: {"model": ErrorPublic, "description": "days or version out of bounds"}},
    summary="Live quality per model version",
)
def get_monitoring(
    monitoring: MonitoringDep,
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
    the same per UTC day for the last `days` days."""
    return monitoring.report(days, version)
