"""Request parsing and answer formatting for the TorchServe handler: pure Python, no torch.

Packed into every .mar next to `ticket_handler.py`, so it imports only the standard library.

A request body is one of
  {"ticket_data": "..."}                  one ticket as one text
  {"subject": "...", "body": "..."}       one ticket in two parts (either may be missing)
      either form may add "content_type": "text/html" or "message/rfc822" (a whole mail), and
      "fields": {"type": "Incident", ...} (structured fields, for a model trained with them)
  {"tickets": [ticket, ...]}              several tickets, each of the forms above or a string
      a JSON object (either form) may add "similar": k (0 to MAX_SIMILAR): each ticket's answer
      then lists the k most similar stored tickets under `similar` (null: the model keeps none)
  [ticket, ...]                           the same as {"tickets": [...]}
  a text/plain body                       one ticket (text/html, message/rfc822: as such)
  form fields ticket_data= or subject=&body=   one ticket (an HTML form post)
A single ticket is answered with one object; a `tickets` request with {"predictions": [...]} in
the same order. Every ticket's object carries `queue` / `priority` ({label, confidence, top_k}),
`predicted_label` + `confidence` (the queue, or the only head), `model_version` and
`rare_token_share` (the share of its words the tokenizer split into rare pieces).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

MAX_TICKETS_PER_REQUEST = 256
# The text a request adds to the model's input; subject and body are joined as in
# training.text.data.
TEXT_KEYS = ("ticket_data", "subject", "body")
CONTENT_TYPE_KEY = "content_type"
PLAIN_TYPE = "text/plain"
# A ticket body's types: training/text/cleaning.py's CONTENT_TYPES (a test keeps them equal).
BODY_TYPES = (PLAIN_TYPE, "text/html", "application/xhtml+xml", "message/rfc822")
# TorchServe's names for a raw request body.
BODY_KEYS = ("body", "data")
FORM_TYPE = "application/x-www-form-urlencoded"
# predicted_label/confidence: this head when the model has it, else the first head.
PRIMARY_HEAD = "queue"
SIMILAR_KEY = "similar"
MAX_SIMILAR = 20  # training/inference/similar_index.py's MAX_K (a test keeps them equal)
FIELDS_KEY = "fields"
MAX_FIELDS = 64  # fields per ticket (a help desk's scalar attributes; the model reads its own)
MAX_FIELD_NAME_CHARS = 64
MAX_FIELD_CHARS = 200  # training/text/text_rules.py's (a test keeps them equal)


class BadRequest(ValueError):
    """The request cannot be classified; the message says why, for the client (HTTP 400)."""


class Ticket(NamedTuple):
    """One ticket as sent: subject (None for ticket_data), body, and the body's type."""

    subject: str | None
    body: str
    content_type: str = PLAIN_TYPE
    fields: dict[str, str] | None = None

    @property
    def text(self) -> str:
        """Subject and body joined, as training.text.data joins them (no cleaning)."""
        return "\n".join(p for p in (self.subject, self.body) if p)


# (subject, body, content type) -> the text a model reads; the handler's is the archive's
# copy of training/text/cleaning.py (ticket_cleaning.clean_ticket) with the model's settings.
Cleaner = Callable[[str | None, str, str], str]
EMPTY_AFTER_CLEANING = (
    "nothing is left after cleaning: the mail is only a quoted message, a signature or a disclaimer"
)


@dataclass(frozen=True)
class ParsedRequest:
    """The tickets of one request and whether the client sent a list."""

    tickets: list[Ticket]
    is_list: bool
    similar: int = 0  # similar stored tickets to list per ticket

    @property
    def texts(self) -> list[str]:
        return [ticket.text for ticket in self.tickets]


def parse_row(row: dict[str, Any], content_type: str | None = None) -> ParsedRequest:
    """Parse one request as TorchServe hands it over: its body under `body` (or `data`), or
    HTML form fields (`ticket_data=...`, `subject=...&body=...`) under their own names.

    `content_type` is the body's, else the request's Content-Type header."""
    for key in BODY_KEYS:
        if row.get(key) is not None and not (key == "body" and "subject" in row):
            return parse_request(row[key], content_type)
    fields = {k: _form_value(v) for k, v in row.items() if k in TEXT_KEYS}
    if fields:
        return parse_request(fields)
    if _media_type(content_type) == FORM_TYPE:
        raise BadRequest(
            "form data needs a 'ticket_data' (or 'subject'/'body') field; to send JSON, set "
            "'Content-Type: application/json' (curl -d alone sends form data)"
        )
    return parse_request(None)


def parse_request(payload: Any, content_type: str | None = None) -> ParsedRequest:
    """Turn one request body into ticket texts, or raise `BadRequest` naming what is wrong.

    TorchServe has already decoded `application/json` (into dict/list/str) and `text/*` (into str)
    bodies; anything else arrives as bytes and is decoded here.
    """
    if isinstance(payload, bytes | bytearray):
        payload = _decode_bytes(bytes(payload), content_type)
    if isinstance(payload, str):
        media = _media_type(content_type)
        body_type = media if media in BODY_TYPES else PLAIN_TYPE
        return ParsedRequest([Ticket(None, _text(payload, "the request body"), body_type)], False)
    if isinstance(payload, list):
        return ParsedRequest(_tickets(payload, "the request body"), is_list=True)
    if isinstance(payload, dict):
        similar = _similar(payload.get(SIMILAR_KEY, 0))
        payload = {k: v for k, v in payload.items() if k != SIMILAR_KEY}
        if "tickets" in payload:
            extra = sorted(set(payload) - {"tickets"})
            if extra:
                raise BadRequest(f"'tickets' cannot be combined with {', '.join(extra)}")
            return ParsedRequest(_tickets(payload["tickets"], "'tickets'"), True, similar)
        return ParsedRequest([parse_ticket(payload, "the request")], False, similar)
    if payload is None:
        raise BadRequest('empty request body; send JSON like {"ticket_data": "..."}')
    raise BadRequest(
        f"request body must be a JSON object, a list of tickets or plain text, "
        f"not {type(payload).__name__}"
    )


def parse_ticket(ticket: Any, where: str) -> Ticket:
    """One ticket object: `ticket_data`, or `subject` and `body`; with its `content_type`."""
    if isinstance(ticket, str):
        return Ticket(None, _text(ticket, where))
    if not isinstance(ticket, dict):
        raise BadRequest(f"{where} must be an object or a string, not {type(ticket).__name__}")
    content_type = _body_type(ticket.get(CONTENT_TYPE_KEY, PLAIN_TYPE), where)
    fields = _fields(ticket.get(FIELDS_KEY), where)
    if "ticket_data" in ticket:
        if "subject" in ticket or "body" in ticket:
            raise BadRequest(f"{where}: send 'ticket_data' or 'subject'/'body', not both")
        text = _text(ticket["ticket_data"], f"{where}: 'ticket_data'")
        return Ticket(None, text, content_type, fields)
    if "subject" in ticket or "body" in ticket:
        subject, body = (_optional_text(ticket.get(k), f"{where}: {k!r}") for k in TEXT_KEYS[1:])
        if not subject and not body:
            raise BadRequest(f"{where}: 'subject' and 'body' are both empty")
        return Ticket(subject or None, body, content_type, fields)
    found = ", ".join(repr(k) for k in ticket) or "no fields"
    raise BadRequest(f"{where} needs 'ticket_data' or 'subject'/'body' (or 'tickets'); got {found}")


def _similar(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIMILAR:
        raise BadRequest(
            f"'{SIMILAR_KEY}' must be a whole number from 0 to {MAX_SIMILAR}, got {value!r:.60}"
        )
    return value


def _fields(value: Any, where: str) -> dict[str, str] | None:
    """A ticket's structured fields: an object of at most MAX_FIELDS names to text (numbers
    and booleans are read as text; null: unknown)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: 'fields' must be an object, not {type(value).__name__}")
    if len(value) > MAX_FIELDS:
        raise BadRequest(f"{where}: 'fields' holds {len(value)} fields; at most {MAX_FIELDS}")
    fields = {}
    for name, item in value.items():
        if len(name) > MAX_FIELD_NAME_CHARS:
            raise BadRequest(
                f"{where}: field name {name[:40]!r}... is longer than {MAX_FIELD_NAME_CHARS}"
            )
        if item is None:
            continue
        if isinstance(item, bool):
            item = str(item).lower()
        if not isinstance(item, str | int | float):
            raise BadRequest(
                f"{where}: field {name[:40]!r} must be text, a number or null, "
                f"not {type(item).__name__}"
            )
        text = str(item)
        if len(text) > MAX_FIELD_CHARS:
            raise BadRequest(
                f"{where}: field {name[:40]!r} has {len(text)} characters; "
                f"at most {MAX_FIELD_CHARS}"
            )
        fields[name] = text
    return fields


def _body_type(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in BODY_TYPES:
        raise BadRequest(
            f"{where}: 'content_type' must be one of {', '.join(BODY_TYPES)}, got {value!r:.60}"
        )
    return value.lower()


@dataclass(frozen=True)
class BatchPlan:
    """The requests of one TorchServe batch: what each asked for, and all tickets in one list."""

    requests: list[ParsedRequest | BadRequest]
    texts: list[str]  # the tickets of every good request, in request order
    similar: list[int]  # per text: similar stored tickets its request asked for
    fields: list[dict[str, str] | None]  # per text: its structured fields

    @property
    def bad(self) -> int:
        return sum(isinstance(r, BadRequest) for r in self.requests)


def plan_batch(
    rows: list[tuple[dict[str, Any], str | None]], clean: Cleaner | None = None
) -> BatchPlan:
    """Parse every (request row, content type) of a batch and clean its tickets with `clean`
    (a model without cleaning reads plain text as it comes); a bad request is kept as its
    error, as is one whose ticket is empty once cleaned."""
    requests: list[ParsedRequest | BadRequest] = []
    texts: list[str] = []
    similar: list[int] = []
    fields: list[dict[str, str] | None] = []
    for row, content_type in rows:
        try:
            parsed = parse_row(row, content_type)
            own = [_model_text(t, i, clean, parsed.is_list) for i, t in enumerate(parsed.tickets)]
        except BadRequest as exc:
            requests.append(exc)
            continue
        requests.append(parsed)
        texts.extend(own)
        similar.extend([parsed.similar] * len(own))
        fields.extend(ticket.fields for ticket in parsed.tickets)
    return BatchPlan(requests, texts, similar, fields)


def _model_text(ticket: Ticket, index: int, clean: Cleaner | None, is_list: bool) -> str:
    where = f"tickets[{index}]" if is_list else "the ticket"
    if clean is None:
        if ticket.content_type != PLAIN_TYPE:
            raise BadRequest(
                f"{where}: this model reads plain text only (it was trained before mail "
                f"cleaning); send {ticket.content_type} as text"
            )
        return ticket.text
    text = clean(ticket.subject, ticket.body, ticket.content_type)
    if not text:
        raise BadRequest(f"{where}: {EMPTY_AFTER_CLEANING}")
    return text


class Inference(NamedTuple):
    """What the model made of a batch's texts: class probabilities per head (arrays, one row per
    text), and per text the similar stored tickets its request asked for (None: not asked, or
    the model keeps none). The handler's own type; it lives here because TorchServe takes the
    handler module's only class for the handler."""

    probs: dict[str, Any]
    similar: list[list[dict[str, Any]] | None]


def batch_answers(
    plan: BatchPlan, predictions: list[dict[str, Any]], model_version: str | None
) -> list[tuple[int, dict[str, Any]]]:
    """(HTTP status, JSON answer) per request, from the predictions of `plan.texts`."""
    if len(predictions) != len(plan.texts):
        raise ValueError(f"{len(predictions)} predictions for {len(plan.texts)} tickets")
    answers: list[tuple[int, dict[str, Any]]] = []
    start = 0
    for request in plan.requests:
        if isinstance(request, BadRequest):
            answers.append((400, error_answer(str(request))))
            continue
        own = predictions[start : start + len(request.tickets)]
        start += len(request.tickets)
        answers.append((200, format_answer(own, request.is_list, model_version)))
    return answers


def format_answer(
    predictions: list[dict[str, Any]], is_list: bool, model_version: str | None
) -> dict[str, Any]:
    """The JSON answer of one request from its tickets' per-head predictions."""
    tickets = [format_ticket(p, model_version) for p in predictions]
    return {"predictions": tickets} if is_list else tickets[0]


def format_ticket(prediction: dict[str, Any], model_version: str | None) -> dict[str, Any]:
    """One ticket: every head's answer (and any per-ticket value, such as rare_token_share),
    plus the primary head as predicted_label/confidence."""
    primary = prediction.get(PRIMARY_HEAD) or next(
        value for value in prediction.values() if isinstance(value, dict)
    )
    return {
        **prediction,
        "predicted_label": primary["label"],
        "confidence": primary["confidence"],
        "model_version": model_version,
    }


def error_answer(message: str, status: int = 400) -> dict[str, Any]:
    """An error body shaped like TorchServe's own errors, so clients read both the same way."""
    kind = "BadRequest" if status == 400 else "InternalServerError"
    return {"code": status, "type": kind, "message": message}


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _decode_bytes(raw: bytes, content_type: str | None) -> Any:
    media_type = _media_type(content_type)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"request body is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(
                f"request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
            ) from exc
    return text


def _form_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"form field is not UTF-8 ({exc.reason})") from exc
    return value


def _tickets(value: Any, where: str) -> list[Ticket]:
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be a list of tickets, not {type(value).__name__}")
    if not value:
        raise BadRequest(f"{where} is an empty list")
    if len(value) > MAX_TICKETS_PER_REQUEST:
        raise BadRequest(
            f"{where} holds {len(value)} tickets; at most {MAX_TICKETS_PER_REQUEST} per request"
        )
    return [parse_ticket(t, f"tickets[{i}]") for i, t in enumerate(value)]


def _text(value: Any, where: str) -> str:
    text = _optional_text(value, where)
    if not text:
        raise BadRequest(f"{where} is empty")
    return text


def _optional_text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string, not {type(value).__name__}")
    return value.strip()
