"""Zammad: its trigger webhook in, its REST API out (as Zammad's source and docs define them).

Webhook: Zammad POSTs `{"ticket": {...}, "article": {...}}` with `X-Zammad-Delivery` (one id per
delivery, kept on its retries) and, when the webhook has a signature token, `X-Hub-Signature:
sha1=<hex HMAC-SHA1 of the raw body>`. It retries a non-2xx answer four times.
Write-back: `PUT /api/v1/tickets/{id}` with `group` / `priority` by name (Zammad looks names up
exactly) and an internal note as its `article`; `Authorization: Token token=<token>`.
Agents' changes: a second trigger (on update) sends the ticket as it is now, with `updated_by`;
one not updated by the token's own user is an agent's.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import DeskError, DeskTicket, WriteBack

SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Zammad-Delivery"
SIGNATURE_PREFIX = "sha1="
# Sent by customers: an agent's or the system's article (our own note included) is no new
# ticket to route.
CUSTOMER_SENDER = "Customer"


def signature_valid(raw: bytes, header: str, secret: str) -> bool:
    """Whether `header` is `sha1=<hex HMAC-SHA1 of raw with secret>` (compared in constant
    time)."""
    expected = hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
    given = header.strip()
    if given.lower().startswith(SIGNATURE_PREFIX):
        given = given[len(SIGNATURE_PREFIX) :]
    return hmac.compare_digest(expected, given.lower())


class PayloadError(ValueError):
    """The webhook body is not a Zammad ticket payload; the message says what is missing."""


def ticket_from_payload(payload: Any) -> DeskTicket | None:
    """The ticket to route from a trigger payload; None when its article is not a customer's
    (an agent's reply, an internal note, no article)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("ticket"), dict):
        raise PayloadError("the body needs a 'ticket' object (Zammad's default payload)")
    ticket, article = payload["ticket"], payload.get("article") or {}
    ticket_id = ticket.get("id")
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, int | str) or not str(ticket_id):
        raise PayloadError("'ticket.id' must be the ticket's id")
    if not isinstance(article, dict):
        raise PayloadError("'article' must be an object")
    if article.get("sender") != CUSTOMER_SENDER or article.get("internal") is True:
        return None
    title, body = ticket.get("title"), article.get("body")
    subject = title if isinstance(title, str) else ""
    if not isinstance(body, str):
        body = ""
    content_type = article.get("content_type")
    return DeskTicket(
        ticket_id=str(ticket_id),
        subject=subject,
        body=body,
        content_type="text/html" if content_type == "text/html" else "text/plain",
    )


@dataclass(frozen=True)
class DeskChange:
    """A ticket's queue and priority after someone other than us changed it (by their names in
    the help desk)."""

    ticket_id: str
    queue: str | None
    priority: str | None


def change_from_payload(payload: Any, own_login: str | None) -> DeskChange | None:
    """The group and priority of a ticket an agent updated; None when the update is ours (the
    token's user), or its author is unknown."""
    ticket = payload.get("ticket") if isinstance(payload, dict) else None
    if not isinstance(ticket, dict) or ticket.get("id") is None:
        return None
    updater = ticket.get("updated_by")
    login = updater.get("login") if isinstance(updater, dict) else None
    if not isinstance(login, str) or own_login is None or login == own_login:
        return None
    return DeskChange(
        ticket_id=str(ticket["id"]),
        queue=_name(ticket.get("group")),
        priority=_name(ticket.get("priority")),
    )


def _name(value: Any) -> str | None:
    """An association as the default payload has it: an object with a name, or a name."""
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) and value else None


class ZammadClient:
    """The REST calls the connector makes; every call has a timeout, TLS is verified."""

    name = "zammad"

    def __init__(
        self, url: str, token: str, timeout_s: float = 10.0, verify: bool | str = True
    ) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Token token={token}"},
            timeout=timeout_s,
            verify=verify,
        )
        self._login: str | None = None

    def close(self) -> None:
        self.http.close()

    def write(self, action: WriteBack) -> None:
        body: dict[str, Any] = {}
        if action.queue is not None:
            body["group"] = action.queue
        if action.priority is not None:
            body["priority"] = action.priority
        if action.note:
            body["article"] = {
                "body": action.note,
                "content_type": "text/plain",
                "type": "note",
                "internal": True,
            }
        self._call("PUT", f"/api/v1/tickets/{action.ticket_id}", json=body)

    def names(self) -> dict[str, list[str]]:
        groups = self._call("GET", "/api/v1/groups")
        priorities = self._call("GET", "/api/v1/ticket_priorities")
        return {"queue": _active_names(groups), "priority": _active_names(priorities)}

    def check(self) -> str | None:
        try:
            self.own_login()
        except DeskError as exc:
            return str(exc)
        return None

    def own_login(self) -> str | None:
        """The login of the token's user (whose updates are ours), asked once."""
        if self._login is None:
            me = self._call("GET", "/api/v1/users/me")
            login = me.get("login") if isinstance(me, dict) else None
            self._login = login if isinstance(login, str) else None
        return self._login

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DeskError(f"Zammad {method} {path}: {type(exc).__name__}", False) from None
        if response.status_code >= 400:
            # 4xx: this write can never succeed (bad name, no permission); 5xx: later.
            raise DeskError(
                f"Zammad {method} {path}: HTTP {response.status_code} {response.text[:200]}",
                permanent=response.status_code < 500 and response.status_code != 429,
            )
        try:
            return response.json()
        except ValueError:
            return None


def _active_names(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return [
        str(item["name"])
        for item in items
        if isinstance(item, dict) and item.get("name") and item.get("active", True)
    ]
