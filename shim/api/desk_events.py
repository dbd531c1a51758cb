"""What a help desk's events do, whichever way they arrive (webhook, invoker, polling).

A new ticket is classified through the same path as `/api/v1/classify` (cleaning, gate,
prediction id, predictions log) and its write-back committed to the outbox. An agent's change
(a ticket we classified moved to another queue, its priority changed) is recorded as feedback on
the ticket's prediction id, like any correction.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from connectors.base import DeskTicket, Mode
from connectors.writeback import SIMILAR_LINES
from shim.api.deps import Services
from shim.errors import ApiError
from shim.schemas import ClassifyRequest, FeedbackRequest
from training.text.labels import label_key

logger = logging.getLogger(__name__)


async def classify_ticket(services: Services, ticket: DeskTicket) -> dict[str, Any]:
    """The classify answer for a help-desk ticket, as plain JSON data."""
    request = ClassifyRequest(
        subject=ticket.subject or None,
        body=ticket.body,
        content_type=ticket.content_type,
        fields=ticket.fields or None,
        similar=SIMILAR_LINES,
    )
    answer = await services.classifier.classify(request)
    plain: dict[str, Any] = json.loads(answer.model_dump_json())
    return plain


async def route_ticket(
    services: Services, connector: str, delivery: str, ticket: DeskTicket, mode: Mode
) -> tuple[bool, str]:
    """Classify a new ticket and commit its write-back; (accepted, prediction id), accepted
    False when this delivery was accepted before (nothing stored again)."""
    answer = await classify_ticket(services, ticket)
    accepted = await run_in_threadpool(
        services.outbox.accept, connector, delivery, ticket.ticket_id, mode, answer
    )
    return accepted, str(answer["prediction_id"])


def record_change(
    services: Services, connector: str, ticket_id: str, names: dict[str, str | None]
) -> str | None:
    """Record the help-desk `names` ({"queue": ..., "priority": ...}, the help desk's names as
    they are now) of ticket `ticket_id` as a correction of its prediction; the prediction id
    when recorded, None when the ticket is not ours or a name maps to no label. Blocking."""
    prediction_id = services.outbox.prediction_for(connector, ticket_id)
    if prediction_id is None:
        return None
    label_map = services.outbox.label_map
    known = services.feedback.known_labels()
    labels = {head: label_map.source(head, name) for head, name in names.items() if name}
    # Every head the help desk has must name a label we know: a head left out of feedback
    # would count as accepted, and a default inbox ("Users") is no queue of the model.
    if set(labels) != set(names) or any(
        label_key(label) not in known.get(head, {}) for head, label in labels.items()
    ):
        services.metrics.connector_unmapped.labels(connector, "correction").inc()
        return None
    try:
        services.feedback.submit(FeedbackRequest(prediction_id=prediction_id, **labels))
    except ApiError as exc:  # the prediction is past its retention, say
        logger.info("%s ticket %s: correction not recorded: %s", connector, ticket_id, exc)
        return None
    return prediction_id
