"""Zammad: its trigger webhook in, its REST API out (as Zammad's source and docs define them).

Webhook: Zammad POSTs `{"ticket": {...}, "article": {...}}` with `X-Zammad-Delivery` (one id per
delivery, kept on its retries) and, when the webhook has a signature token, `X-Hub-Signature:
sha1=<hex HMAC-SHA1 of the raw body>`. It retries a non-2xx answer four times.
Write-back: `PUT /api/v1/tickets/{id}` with `group` / `priority` by name (Zammad looks names up
exactly) and an internal note as its `article`; `Authorization: Token token=<token>`.
Agents' changes: a second trigger (on update) sends the ticket as it is now, with `updated_by`;
one not updated by the token's own user is an agent's.
History: `GET /api/v1/tickets/search?query=...&expand=true` (closed tickets, their group and
priority by name) and each ticket's articles by `GET /api/v1/ticket_articles/by_ticket/{id}`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import (
    DeskError,
    DeskTicket,
    HistoryPage,
    HistoryTicket,
    WriteBack,
    desk_fields,
)
from connectors.http import send

SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Zammad-Delivery"
SIGNATURE_PREFIX = "sha1="
# Sent by customers: an agent's or the system's article (our own note included) is no new
# ticket to route.
CUSTOMER_SENDER = "Customer"
# Zammad's search answers at most 200 tickets a page.
MAX_SEARCH_PAGE = 200
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
        # The ticket's own attributes (type, custom object attributes); nested objects
        # (group, priority, customer) are left out.
        fields=desk_fields(ticket.items()),
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

    def history(self, since: str, cursor: str | None, page_size: int) -> HistoryPage:
        """Closed tickets updated on or after `since`, by ascending id. The cursor is the last
        id seen and the next page asks for ids above it: a ticket closed or reopened meanwhile
        shifts no page, and no offset runs into the search index's result window (10,000)."""
        if not DAY.match(since):
            raise ValueError(f"since must be YYYY-MM-DD, got {since[:40]!r}")
        if cursor is not None and not cursor.isdigit():
            raise ValueError(f"not a Zammad history cursor: {cursor[:40]!r}")
        size = max(1, min(page_size, MAX_SEARCH_PAGE))
        query = f"state.name:closed AND updated_at:>={since}"
        if cursor is not None:
            query += f" AND id:>{cursor}"
        params = {"query": query, "sort_by": "id", "order_by": "asc", "page": 1,
                  "per_page": size, "expand": "true"}  # fmt: skip
        found = self._call("GET", "/api/v1/tickets/search", params=params)
        if not isinstance(found, list):
            raise DeskError("Zammad's ticket search answered no list of tickets", permanent=True)
        tickets, last = [], None
        for item in found:
            ticket_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(ticket_id, bool) or not isinstance(ticket_id, int):
                continue
            last = ticket_id if last is None else max(last, ticket_id)
            title = item.get("title")
            article = self._first_customer_article(ticket_id)
            body = article.get("body") if article else None
            tickets.append(
                HistoryTicket(
                    ticket_id=str(ticket_id),
                    subject=title if isinstance(title, str) else "",
                    body=body if isinstance(body, str) else "",
                    content_type="text/html"
                    if article and article.get("content_type") == "text/html"
                    else "text/plain",
                    queue=_name(item.get("group")),
                    priority=_name(item.get("priority")),
                )
            )
        more = len(found) >= size and last is not None
        return HistoryPage(tickets=tickets, cursor=str(last) if more else None)

    def _first_customer_article(self, ticket_id: int) -> dict[str, Any] | None:
        """The ticket's first article a customer wrote (what a router reads), if any."""
        articles = self._call(
            "GET", f"/api/v1/ticket_articles/by_ticket/{ticket_id}", params={"expand": "true"}
        )
        for article in articles if isinstance(articles, list) else []:
            if (
                isinstance(article, dict)
                and _name(article.get("sender")) == CUSTOMER_SENDER
                and article.get("internal") is not True
            ):
                return article
        return None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = send(self.http, f"Zammad {method} {path}", method, path, **kwargs)
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
