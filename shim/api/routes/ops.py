"""Operations: liveness, readiness and Prometheus metrics (outside /api/v1, no API key)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shim.api.deps import Services, ServicesDep
from shim.schemas import HealthPublic, ReadyPublic
from shim.serving.supervisor import Supervisor

router = APIRouter(tags=["operations"])


@router.api_route(
    "/healthz",
    methods=["GET", "HEAD"],
    response_model=HealthPublic,
    summary="The process answers",
)
def healthz(services: ServicesDep) -> HealthPublic:
    """Liveness: the process answers (200), and says `degraded` while TorchServe restarts."""
    supervisor = services.supervisor
    if supervisor is None:
        return HealthPublic(torchserve="not_started")
    if supervisor.healthy:
        return HealthPublic(restarts=supervisor.restarts)
    return HealthPublic(
        status="degraded",
        torchserve="restarting",
        restarts=supervisor.restarts,
        detail=_restart_detail(supervisor),
    )


@router.get(
    "/readyz",
    response_model=ReadyPublic,
    responses={503: {"model": ReadyPublic, "description": "not ready"}},
    summary="A model is loaded and answers",
)
async def readyz(services: ServicesDep, response: Response) -> ReadyPublic:
    """Readiness: the default model version classifies a probe ticket (else 503)."""
    answers, version, detail = await services.classifier.probe()
    if not answers:
        response.status_code = 503
        response.headers["Retry-After"] = str(services.settings.retry_after_s)
        if services.supervisor is not None and not services.supervisor.healthy:
            detail = _restart_detail(services.supervisor)
        elif services.versions.starting:
            detail = f"loading the default model; {detail}"
        elif services.versions.startup_error:
            detail = services.versions.startup_error
    return ReadyPublic(
        ready=answers,
        model_version=version,
        torchserve=answers or await _ping(services),
        training=services.runner.is_busy(),
        detail=detail,
        connectors={
            name: services.outbox.problems.get(name) or "ok"
            for name in services.connectors
            if name in services.outbox.problems
        },
    )


@router.get("/metrics", summary="Prometheus metrics of the API", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text format: request counts and latencies of this API, and live quality."""
    services.metrics.training_active.set(1 if services.runner.is_busy() else 0)
    services.metrics.default_version.set(services.store.versions.default() or 0)
    services.monitoring.refresh_gauges()
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _restart_detail(supervisor: Supervisor) -> str:
    since = time.monotonic() - (supervisor.down_since or time.monotonic())
    detail = f"TorchServe stopped {since:.0f}s ago and is being restarted"
    return f"{detail}; last attempt: {supervisor.last_error}" if supervisor.last_error else detail


async def _ping(services: Services) -> bool:
    client = services.classifier.client
    return client is not None and await client.ping()
