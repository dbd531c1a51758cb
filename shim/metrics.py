"""Prometheus metrics of the API itself, in a registry of its own (one per app instance)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    """Request counts and latencies per route, plus classification and training counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ticketserve_http_requests",
            "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "ticketserve_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ticketserve_http_requests_in_flight",
            "HTTP requests being answered",
            registry=self.registry,
        )
        self.connector_deliveries = Counter(
            "ticketserve_connector_deliveries",
            "Help-desk webhook deliveries, by connector and result (accepted, duplicate, "
            "ignored, rejected)",
            ("connector", "result"),
            registry=self.registry,
        )
        self.connector_writes = Counter(
            "ticketserve_connector_writes",
            "Write-backs to a help desk, by connector and result (done, retry, failed)",
            ("connector", "result"),
            registry=self.registry,
        )
        self.connector_unmapped = Counter(
            "ticketserve_connector_unmapped_labels",
            "Labels a write-back could not map to a help-desk name (noted, never written)",
            ("connector", "head"),
            registry=self.registry,
        )
        self.tickets_classified = Counter(
            "ticketserve_tickets_classified",
            "Tickets classified",
            registry=self.registry,
        )
        self.low_confidence = Counter(
            "ticketserve_low_confidence",
            "Head answers below the head's confidence threshold",
            ("head",),
            registry=self.registry,
        )
        self.feedback = Counter(
            "ticketserve_feedback",
            "Labels of agents' feedback, by head and whether they agree with the prediction "
            "(none: a ticket never classified here)",
            ("head", "agreed"),
            registry=self.registry,
        )
        # Live quality over the predictions log's retained window, set when /metrics is scraped;
        # only stored versions get series.
        self.feedback_agreement = Gauge(
            "ticketserve_feedback_agreement",
            "Share of feedback labels on logged predictions that kept the predicted label",
            ("version", "head"),
            registry=self.registry,
        )
        self.auto_route_share = Gauge(
            "ticketserve_auto_route_share",
            "Share of logged classify answers that cleared the head's auto-routing gate",
            ("version", "head"),
            registry=self.registry,
        )
        self.auto_route_precision = Gauge(
            "ticketserve_auto_route_precision",
            "Share of feedback labels on auto-routed answers that kept the predicted label",
            ("version", "head"),
            registry=self.registry,
        )
        self.auto_route_below_target = Gauge(
            "ticketserve_auto_route_below_target",
            "1 when the 95 % interval of the auto-routed answers' precision lies below the "
            "gate's target precision",
            ("version", "head"),
            registry=self.registry,
        )
        self.drift_score = Gauge(
            "ticketserve_drift_score",
            "Drift score of the version's newest answers against its training data (0..1; "
            "above drift_threshold the head drifts)",
            ("version", "head"),
            registry=self.registry,
        )
        self.drift_distance = Gauge(
            "ticketserve_drift_distance",
            "The parts of the drift score: Jensen-Shannon distance of the head's predicted "
            "labels, confidences, or the tickets' rare token shares, against the training data",
            ("version", "head", "signal"),
            registry=self.registry,
        )
        self.rare_token_share = Gauge(
            "ticketserve_rare_token_share",
            "Mean share of the words of the version's newest tickets split into rare pieces",
            ("version",),
            registry=self.registry,
        )
        self.training_active = Gauge(
            "ticketserve_training_active",
            "1 while a training job is queued or running",
            registry=self.registry,
        )
        self.default_version = Gauge(
            "ticketserve_default_model_version",
            "The default model version (0: none)",
            registry=self.registry,
        )

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Count and time every request under its route template, not its raw path."""
        started = time.perf_counter()
        self.in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            self.in_flight.dec()
            template = route_template(request.scope)
            self.requests.labels(request.method, template, str(status)).inc()
            self.latency.labels(request.method, template).observe(time.perf_counter() - started)


def route_template(scope: dict[str, Any]) -> str:
    """The matched route's full template, e.g. /api/v1/train/{job_id}; "unmatched" for none.

    An included router's route knows only its own part of the path, so the mount prefix is
    recovered from the request path, which ends with that part filled in.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not template:
        return "unmatched"
    params = scope.get("path_params") or {}
    filled = PATH_PARAM.sub(lambda m: str(params.get(m.group(1), m.group(0))), template)
    path = scope.get("path", "")
    return path[: len(path) - len(filled)] + template if path.endswith(filled) else template
