"""`POST /api/v1/connectors/znuny/invoke`: Znuny's Ticket::Generic invokers calling in
(docs/connectors.md; the web service is deploy/znuny/ticketserve-router.yml).

The invokers' secret (a BasicAuth password or `X-TicketServe-Secret`) is compared in constant
time before the body is read. A new ticket is classified through the same path as
`/api/v1/classify` (cleaning, gate, prediction id, predictions log) and answered at once: Znuny's
invoker applies the answer itself, so no outbox write is queued; only the ticket's prediction is
kept, for agents' later changes. A ticket classified before gets its prediction again (Znuny
repeats an invocation whose answer it never got). An agent's queue or priority change of a ticket
we classified is feedback on its prediction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from connectors.base import DESK_HEADS, DeskError, HelpDesk
from connectors.writeback import plan_write
from connectors.znuny import (
    CONFIDENCE_FIELD,
    CREATE_EVENT,
    SECRET_HEADER,
    Invocation,
    PayloadError,
    ZnunyClient,
    given_secret,
    invocation_from_payload,
    invoker_answer,
    is_ours,
    secret_valid,
)
from shim.api.deps import Services, ServicesDep
from shim.api.desk_events import classify_ticket, record_change
from shim.desks.helpdesks import Connector
from shim.errors import ApiError, Forbidden, NotFound, Unauthorized, Unprocessable
from shim.schemas import ConnectorDeliveryPublic, ErrorPublic

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/connectors", tags=["connectors"])
ZNUNY = "znuny"
INVOKE_PATH = f"/connectors/{ZNUNY}/invoke"
MAX_CREDENTIAL_CHARS = 1000
Status = Literal["accepted", "duplicate", "ignored", "feedback"]

ERRORS = {
    401: {"model": ErrorPublic, "description": f"neither BasicAuth nor {SECRET_HEADER}"},
    403: {"model": ErrorPublic, "description": "the secret is wrong"},
    404: {"model": ErrorPublic, "description": "the Znuny connector is off"},
    422: {"model": ErrorPublic, "description": "not a Ticket::Generic request"},
    503: {"model": ErrorPublic, "description": "no model, or TorchServe down"},
}


class ZnunyNotePublic(BaseModel):
    """The internal note the invoker adds (ArticleCreate's fields)."""

    subject: str = Field(alias="Subject")
    body: str = Field(alias="Body")
    history_type: str = Field(alias="HistoryType")
    history_comment: str = Field(alias="HistoryComment")


class ZnunyAnswerPublic(BaseModel):
    """What Znuny's Ticket::Generic invoker applies to the ticket, each key only when set."""

    model_config = ConfigDict(populate_by_name=True)

    note: ZnunyNotePublic | None = Field(
        None, alias="OTRS_TicketArticleAdd", description="an internal note with the answer"
    )
    confidence: str | None = Field(
        None,
        alias=f"OTRS_TicketDynamicFieldSet_{CONFIDENCE_FIELD}",
        description="each head's label and confidence, for the dynamic field",
    )
    queue: str | None = Field(
        None, alias="OTRS_TicketQueueSet", description="route mode, the queue's gate cleared"
    )
    priority: str | None = Field(
        None, alias="OTRS_TicketPrioritySet", description="route mode, the priority's gate cleared"
    )
    delivery: ConnectorDeliveryPublic = Field(
        alias="TicketServe", description="what became of the invocation (Znuny ignores it)"
    )


@router.post(
    f"/{ZNUNY}/invoke",
    response_model=ZnunyAnswerPublic,
    response_model_exclude_none=True,
    responses=ERRORS,
    summary="Znuny invoker (Ticket::Generic)",
    # The body is the invoker's data, read only once the secret is checked.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def znuny_invoke(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header(max_length=MAX_CREDENTIAL_CHARS)] = None,
    x_ticketserve_secret: Annotated[str | None, Header(max_length=MAX_CREDENTIAL_CHARS)] = None,
) -> ZnunyAnswerPublic:
    """Classify a new Znuny ticket (TicketCreate) and answer what the invoker sets: a note and
    the confidence field (suggest), and queue and priority where the gate allows (route); or
    record an agent's queue or priority change (TicketQueueUpdate, TicketPriorityUpdate)."""
    connector = services.connectors.get(ZNUNY)
    if connector is None or connector.webhook_secret is None:
        raise NotFound("the Znuny connector is off", code="connector_off")
    rejected = services.metrics.connector_deliveries.labels(ZNUNY, "rejected")
    given = given_secret(authorization, x_ticketserve_secret)
    if given is None:
        rejected.inc()
        raise Unauthorized(
            f"no secret: send BasicAuth or {SECRET_HEADER}",
            code="secret_missing",
            headers={"WWW-Authenticate": 'Basic realm="ticketserve"'},
        )
    if not secret_valid(given, connector.webhook_secret):
        rejected.inc()
        raise Forbidden("the secret is wrong", code="secret_wrong")
    raw = await request.body()  # capped by shim/api/guard.py
    invocation = _invocation(raw)
    if invocation.is_new_ticket:
        return await _new_ticket(services, connector, invocation)
    if invocation.is_change:
        return await _change(services, connector.desk, invocation, raw)
    return _answer(services, "ignored", f"{invocation.event}:{invocation.ticket_id}", invocation)


def _invocation(raw: bytes) -> Invocation:
    try:
        return invocation_from_payload(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Unprocessable(f"the body is not JSON: {exc}"[:300], code="invalid_payload") from exc
    except PayloadError as exc:
        raise Unprocessable(str(exc), code="invalid_payload") from exc


async def _new_ticket(
    services: Services, connector: Connector, invocation: Invocation
) -> ZnunyAnswerPublic:
    """Classify the ticket once; the same prediction for a ticket classified before."""
    delivery = f"{CREATE_EVENT}:{invocation.ticket_id}"
    ticket, outbox = invocation.ticket, services.outbox
    if ticket is None:  # no customer article: nothing to route
        return _answer(services, "ignored", delivery, invocation)
    prediction_id = await run_in_threadpool(outbox.prediction_for, ZNUNY, ticket.ticket_id)
    answer: dict[str, Any] | None = None
    status: Status = "duplicate"
    if prediction_id is None:
        answer = await classify_ticket(services, ticket)
        prediction_id = str(answer["prediction_id"])
        if await run_in_threadpool(outbox.link, ZNUNY, delivery, ticket.ticket_id, prediction_id):
            status = "accepted"
        else:  # a concurrent invocation linked the ticket first: answer its prediction
            prediction_id = await run_in_threadpool(outbox.prediction_for, ZNUNY, ticket.ticket_id)
            answer = None
    if answer is None and prediction_id is not None:
        answer = await run_in_threadpool(_logged_answer, services, prediction_id)
    if answer is None:  # past the predictions log's retention: nothing to answer again
        return _answer(services, status, delivery, invocation, prediction_id)
    action = plan_write(
        ticket.ticket_id, answer, connector.mode, outbox.label_map, connector.desk.names()
    )
    if status == "accepted":
        for unmapped in action.unmapped:
            services.metrics.connector_unmapped.labels(ZNUNY, unmapped.split("=")[0]).inc()
    fields = invoker_answer(action, answer)
    return _answer(services, status, delivery, invocation, prediction_id, fields)


def _logged_answer(services: Services, prediction_id: str) -> dict[str, Any] | None:
    """The answer a prediction id stands for, from the predictions log (its labels,
    confidences and gate decisions; the top 3 are not logged). Blocking."""
    try:
        record = services.classifier.predictions.get(prediction_id)
    except ApiError:  # past the log's retention
        return None
    answer: dict[str, Any] = {"prediction_id": record.id, "model_version": record.version}
    for head in DESK_HEADS:
        logged = record.labels.get(head)
        if logged is not None:
            answer[head] = {
                "model_label": logged["label"],
                "confidence": logged["confidence"],
                "auto_route": bool(logged.get("auto_route")),
                "top_k": [],
            }
    return answer


async def _change(
    services: Services, desk: HelpDesk, invocation: Invocation, raw: bytes
) -> ZnunyAnswerPublic:
    """Record an agent's change once per request body (Znuny retries a failed invocation)."""
    delivery = "sha256:" + hashlib.sha256(raw).hexdigest()
    outbox = services.outbox
    if await run_in_threadpool(outbox.seen, ZNUNY, delivery):
        return _answer(services, "duplicate", delivery, invocation)
    prediction_id = await run_in_threadpool(_agent_change, services, desk, invocation)
    await run_in_threadpool(outbox.record_delivery, ZNUNY, delivery)
    status: Status = "feedback" if prediction_id else "ignored"
    return _answer(services, status, delivery, invocation, prediction_id)


def _agent_change(services: Services, desk: HelpDesk, invocation: Invocation) -> str | None:
    """The prediction id a change by anyone but us was recorded on. Blocking."""
    if not isinstance(desk, ZnunyClient):
        return None
    try:
        own_user_id = desk.own_user_id()
    except DeskError as exc:  # who "we" are is unknown while Znuny is down: decide nothing
        logger.warning("Znuny update not read as a correction: %s", exc)
        return None
    if is_ours(invocation, own_user_id):
        return None
    return record_change(services, ZNUNY, invocation.ticket_id, invocation.names())


def _answer(
    services: Services,
    status: Status,
    delivery: str,
    invocation: Invocation,
    prediction_id: str | None = None,
    fields: dict[str, Any] | None = None,
) -> ZnunyAnswerPublic:
    services.metrics.connector_deliveries.labels(ZNUNY, status).inc()
    outcome = ConnectorDeliveryPublic(
        status=status,
        delivery=delivery,
        ticket_id=invocation.ticket_id,
        prediction_id=prediction_id,
    )
    return ZnunyAnswerPublic.model_validate({**(fields or {}), "TicketServe": outcome})
