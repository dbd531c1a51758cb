"""`/api/v1/connectors/...`: help desks calling in (docs/connectors.md).

Zammad's trigger webhook: the signature is checked on the raw body before anything is parsed;
the ticket is classified through the same path as `/api/v1/classify` (cleaning, gate,
prediction id, predictions log), and the write-back waits in the outbox (shim/desks/outbox.py),
committed before the answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from connectors.base import DeskError, DeskTicket
from connectors.zammad import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    PayloadError,
    change_from_payload,
    signature_valid,
    ticket_from_payload,
)
from shim.api.deps import Services, ServicesDep
from shim.api.desk_events import record_change, route_ticket
from shim.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from shim.schemas import ConnectorDeliveryPublic, ErrorPublic

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/connectors", tags=["connectors"])
ZAMMAD = "zammad"
ZAMMAD_WEBHOOK_PATH = f"/connectors/{ZAMMAD}/webhook"
MAX_DELIVERY_ID_CHARS = 200

ERRORS = {
    401: {"model": ErrorPublic, "description": "no X-Hub-Signature header"},
    403: {"model": ErrorPublic, "description": "the signature does not match the body"},
    404: {"model": ErrorPublic, "description": "the Zammad connector is off"},
    422: {"model": ErrorPublic, "description": "not a Zammad ticket payload"},
    503: {"model": ErrorPublic, "description": "no model, or TorchServe down: Zammad retries"},
}


@router.post(
    f"/{ZAMMAD}/webhook",
    status_code=202,
    response_model=ConnectorDeliveryPublic,
    responses=ERRORS,
    summary="Zammad trigger webhook",
    # The body is Zammad's payload, read raw: the signature covers its exact bytes.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def zammad_webhook(
    request: Request,
    response: Response,
    services: ServicesDep,
    x_hub_signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, max_length=200)] = None,
    x_zammad_delivery: Annotated[
        str | None, Header(alias=DELIVERY_HEADER, max_length=MAX_DELIVERY_ID_CHARS)
    ] = None,
) -> ConnectorDeliveryPublic:
    """Classify the ticket of a Zammad trigger (its first customer article) and queue the
    write-back: an internal note (suggest), and group/priority where the gate allows (route)."""
    connector = services.connectors.get(ZAMMAD)
    if connector is None or connector.webhook_secret is None:
        raise NotFound("the Zammad connector is off", code="connector_off")
    raw = await request.body()  # capped by shim/api/guard.py
    metrics = services.metrics.connector_deliveries
    if not x_hub_signature:
        metrics.labels(ZAMMAD, "rejected").inc()
        raise Unauthorized(f"no {SIGNATURE_HEADER} header", code="signature_missing")
    if not signature_valid(raw, x_hub_signature, connector.webhook_secret):
        metrics.labels(ZAMMAD, "rejected").inc()
        raise Forbidden(f"{SIGNATURE_HEADER} does not match the body", code="signature_wrong")
    # Zammad keeps a delivery's id on its retries; without one, the body is the delivery.
    delivery = x_zammad_delivery or "sha256:" + hashlib.sha256(raw).hexdigest()
    outbox = services.outbox
    if await run_in_threadpool(outbox.seen, ZAMMAD, delivery):
        metrics.labels(ZAMMAD, "duplicate").inc()
        response.status_code = 200
        return ConnectorDeliveryPublic(status="duplicate", delivery=delivery)
    payload = _payload(raw)
    ticket = _ticket(payload)
    if ticket is None or await run_in_threadpool(outbox.prediction_for, ZAMMAD, ticket.ticket_id):
        # Nothing to write: an agent's update (a correction, when the ticket is ours), our own
        # update, or a customer's follow-up on a ticket routed before.
        recorded = None
        if ticket is None:
            recorded = await run_in_threadpool(_agent_change, services, payload)
        await run_in_threadpool(outbox.record_delivery, ZAMMAD, delivery)
        status = "feedback" if recorded else "ignored"
        metrics.labels(ZAMMAD, status).inc()
        response.status_code = 200
        ticket_id, prediction_id = recorded or (None, None)
        return ConnectorDeliveryPublic(
            status=status, delivery=delivery, ticket_id=ticket_id, prediction_id=prediction_id
        )
    accepted, prediction_id = await route_ticket(services, ZAMMAD, delivery, ticket, connector.mode)
    metrics.labels(ZAMMAD, "accepted" if accepted else "duplicate").inc()
    if not accepted:
        response.status_code = 200
    return ConnectorDeliveryPublic(
        status="accepted" if accepted else "duplicate",
        delivery=delivery,
        ticket_id=ticket.ticket_id,
        prediction_id=prediction_id,
    )


def _payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Unprocessable(f"the body is not JSON: {exc}"[:300], code="invalid_payload") from exc


def _ticket(payload: Any) -> DeskTicket | None:
    try:
        return ticket_from_payload(payload)
    except PayloadError as exc:
        raise Unprocessable(str(exc), code="invalid_payload") from exc


def _agent_change(services: Services, payload: Any) -> tuple[str, str] | None:
    """Record an agent's queue and priority of a ticket we classified as a correction of its
    prediction; (ticket id, prediction id) when recorded. Blocking."""
    desk = services.connectors[ZAMMAD].desk
    try:
        change = change_from_payload(payload, desk.own_login())
    except DeskError as exc:  # who "we" are is unknown while Zammad is down: decide nothing
        logger.warning("Zammad update not read as a correction: %s", exc)
        return None
    if change is None:
        return None
    names = {"queue": change.queue, "priority": change.priority}
    prediction_id = record_change(services, ZAMMAD, change.ticket_id, names)
    return None if prediction_id is None else (change.ticket_id, prediction_id)
