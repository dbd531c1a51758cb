"""Request parsing and answer formatting for the TorchServe handler: pure Python, no torch.

Packed into every .mar next to `ticket_handler.py`, so it imports only the standard library.

A request body is one of
  {"ticket_data": "..."}                  one ticket as one text
  {"subject": "...", "body": "..."}       one ticket in two parts (either may be missing)
  {"tickets": [ticket, ...]}              several tickets, each of the forms above or a string
  [ticket, ...]                           the same as {"tickets": [...]}
  a text/plain body                       one ticket
  form fields ticket_data= or subject=&body=   one ticket (an HTML form post)
A single ticket is answered with one object; a `tickets` request with {"predictions": [...]} in
the same order. Every ticket's object carries `queue` / `priority` ({label, confidence, top_k}),
`predicted_label` + `confidence` (the queue, or the only head), `model_version` and
`rare_token_share` (the share of its words the tokenizer split into rare pieces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_TICKETS_PER_REQUEST = 256
# The text a request adds to the model's input; subject and body are joined as in training.data.
TEXT_KEYS = ("ticket_data", "subject", "body")
# TorchServe's names for a raw request body.
BODY_KEYS = ("body", "data")
FORM_TYPE = "application/x-www-form-urlencoded"
# predicted_label/confidence: this head when the model has it, else the first head.
PRIMARY_HEAD = "queue"


class BadRequest(ValueError):
    """The request cannot be classified; the message says why, for the client (HTTP 400)."""


@dataclass(frozen=True)
class ParsedRequest:
    """The ticket texts of one request and whether the client sent a list."""

    texts: list[str]
    is_list: bool


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
        return ParsedRequest([_text(payload, "the request body")], is_list=False)
    if isinstance(payload, list):
        return ParsedRequest(_tickets(payload, "the request body"), is_list=True)
    if isinstance(payload, dict):
        if "tickets" in payload:
            extra = sorted(set(payload) - {"tickets"})
            if extra:
                raise BadRequest(f"'tickets' cannot be combined with {', '.join(extra)}")
            return ParsedRequest(_tickets(payload["tickets"], "'tickets'"), is_list=True)
        return ParsedRequest([ticket_text(payload, "the request")], is_list=False)
    if payload is None:
        raise BadRequest('empty request body; send JSON like {"ticket_data": "..."}')
    raise BadRequest(
        f"request body must be a JSON object, a list of tickets or plain text, "
        f"not {type(payload).__name__}"
    )


def ticket_text(ticket: Any, where: str) -> str:
    """The model input of one ticket object: `ticket_data`, or `subject` + newline + `body`."""
    if isinstance(ticket, str):
        return _text(ticket, where)
    if not isinstance(ticket, dict):
        raise BadRequest(f"{where} must be an object or a string, not {type(ticket).__name__}")
    if "ticket_data" in ticket:
        if "subject" in ticket or "body" in ticket:
            raise BadRequest(f"{where}: send 'ticket_data' or 'subject'/'body', not both")
        return _text(ticket["ticket_data"], f"{where}: 'ticket_data'")
    if "subject" in ticket or "body" in ticket:
        parts = [_optional_text(ticket.get(k), f"{where}: {k!r}") for k in ("subject", "body")]
        text = "\n".join(p for p in parts if p)
        if not text:
            raise BadRequest(f"{where}: 'subject' and 'body' are both empty")
        return text
    found = ", ".join(repr(k) for k in ticket) or "no fields"
    raise BadRequest(f"{where} needs 'ticket_data' or 'subject'/'body' (or 'tickets'); got {found}")


@dataclass(frozen=True)
class BatchPlan:
    """The requests of one TorchServe batch: what each asked for, and all tickets in one list."""

    requests: list[ParsedRequest | BadRequest]
    texts: list[str]  # the tickets of every good request, in request order

    @property
    def bad(self) -> int:
        return sum(isinstance(r, BadRequest) for r in self.requests)


def plan_batch(rows: list[tuple[dict[str, Any], str | None]]) -> BatchPlan:
    """Parse every (request row, content type) of a batch; a bad one is kept as its error."""
    requests: list[ParsedRequest | BadRequest] = []
    for row, content_type in rows:
        try:
            requests.append(parse_row(row, content_type))
        except BadRequest as exc:
            requests.append(exc)
    texts = [t for r in requests if isinstance(r, ParsedRequest) for t in r.texts]
    return BatchPlan(requests, texts)


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
        own = predictions[start : start + len(request.texts)]
        start += len(request.texts)
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


def _tickets(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be a list of tickets, not {type(value).__name__}")
    if not value:
        raise BadRequest(f"{where} is an empty list")
    if len(value) > MAX_TICKETS_PER_REQUEST:
        raise BadRequest(
            f"{where} holds {len(value)} tickets; at most {MAX_TICKETS_PER_REQUEST} per request"
        )
    return [ticket_text(t, f"tickets[{i}]") for i, t in enumerate(value)]


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
