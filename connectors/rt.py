"""Request Tracker 5: its REST 2.0 API, polled (RT has no webhooks).

New tickets: `GET /REST/2.0/tickets?query=<TicketSQL>` for tickets in the watched queues with an
id above the last one seen, oldest first; a ticket's first message is the first text part of
its first transaction (`GET /ticket/{id}/attachments`). Write-back: `POST /ticket/{id}/comment`
(the note; a comment is internal in RT) and `PUT /ticket/{id}` with `Queue` by name and
`Priority` as a number. Agents' changes: `GET /transactions?query=<TransactionSQL>` for Queue and
Priority changes above the last transaction seen, made by anyone but the token's own user
(`__CurrentUser__`), so the connector never needs to know its login. Auth: `Authorization:
token <token>` (an RT auth token, Settings → Auth Tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

API = "/REST/2.0"
# RT 5's default %PriorityAsString; a site with other names sets them (rt_priorities).
DEFAULT_PRIORITIES = {"Low": 0, "Medium": 50, "High": 100}
TEXT_TYPES = ("text/plain", "text/html")
MAX_PAGE = 100  # RT's own cap on per_page
# Resolved is RT's closed state; rejected and deleted tickets carry no trustworthy queue.
CLOSED_STATUS = "resolved"


@dataclass(frozen=True)
class TicketChange:
    """An agent's Queue or Priority change of a ticket (transaction `transaction_id`)."""

    transaction_id: int
    ticket_id: str


class RTClient:
    """The REST 2.0 calls the connector makes; every call has a timeout, TLS is verified."""

    name = "rt"

    def __init__(
        self,
        url: str,
        token: str,
        queues: Sequence[str],
        priorities: Mapping[str, int] | None = None,
        timeout_s: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/") + API,
            headers={"Authorization": f"token {token}"},
            timeout=timeout_s,
            verify=verify,
        )
        self.queues = list(queues)
        self.priorities = dict(priorities or DEFAULT_PRIORITIES)

    def close(self) -> None:
        self.http.close()

    # -- HelpDesk -----------------------------------------------------------------------------

    def write(self, action: WriteBack) -> None:
        # The note first: after a move to a queue the token may not see, it could not be added.
        if action.note:
            self._call(
                "POST",
                f"/ticket/{action.ticket_id}/comment",
                json={"Content": action.note, "ContentType": "text/plain"},
            )
        fields: dict[str, Any] = {}
        if action.queue is not None:
            fields["Queue"] = action.queue
        if action.priority is not None:
            if action.priority not in self.priorities:
                raise DeskError(f"RT: no priority named {action.priority!r}", permanent=True)
            fields["Priority"] = self.priorities[action.priority]
        if fields:
            self._call("PUT", f"/ticket/{action.ticket_id}", json=fields)

    def names(self) -> dict[str, list[str]]:
        return {"queue": list(self._queue_names().values()), "priority": list(self.priorities)}

    def check(self) -> str | None:
        try:
            names = self._queue_names()
        except DeskError as exc:
            return str(exc)
        missing = [queue for queue in self.queues if queue not in names.values()]
        return f"RT has no queue named {', '.join(missing)}" if missing else None

    def own_login(self) -> str | None:
        return None  # never needed: TransactionSQL leaves out our own changes itself

    def history(self, since: str, cursor: str | None, page_size: int) -> HistoryPage:
        # Every queue: a closed ticket's final queue (not the inbox it arrived in) is its label.
        after = int(cursor) if cursor else 0
        query = f"Status = '{CLOSED_STATUS}' AND LastUpdated >= '{_quoted(since)}' AND id > {after}"
        items = self._search("/tickets", query, "Subject,Queue,Priority", page_size)
        queues = self._queue_names()
        tickets = []
        for item in items:
            subject, body, content_type = self.first_message(str(item["id"]), item)
            tickets.append(
                HistoryTicket(
                    ticket_id=str(item["id"]),
                    subject=subject,
                    body=body,
                    content_type=content_type,
                    queue=queues.get(_ref_id(item.get("Queue"))),
                    priority=self.priority_name(item.get("Priority")),
                )
            )
        cursor = tickets[-1].ticket_id if len(items) == min(page_size, MAX_PAGE) else None
        return HistoryPage(tickets=tickets, cursor=cursor)

    # -- polling ------------------------------------------------------------------------------

    def last_ticket_id(self) -> int:
        """The highest ticket id there is now (where polling starts: no backlog is routed)."""
        items = self._search("/tickets", "id > 0", "id", 1, order="DESC")
        return int(items[0]["id"]) if items else 0

    def last_change_id(self) -> int:
        items = self._search("/transactions", "id > 0", "id", 1, order="DESC")
        return int(items[0]["id"]) if items else 0

    def new_tickets(self, after_id: int, limit: int) -> list[DeskTicket]:
        """Tickets in the watched queues with an id above `after_id`, oldest first."""
        query = f"id > {int(after_id)}"
        if self.queues:
            query += f" AND ({self._queue_clause()})"
        items = self._search("/tickets", query, "Subject", limit)
        tickets = []
        for item in items:
            subject, body, content_type = self.first_message(str(item["id"]), item)
            fields = self.custom_fields(str(item["id"]))
            tickets.append(DeskTicket(str(item["id"]), subject, body, content_type, fields))
        return tickets

    def custom_fields(self, ticket_id: str) -> dict[str, str]:
        """A ticket's custom fields with a value, by name (the first value of one that holds
        several), as classify fields."""
        found = self._call("GET", f"/ticket/{ticket_id}").get("CustomFields") or []
        return desk_fields(
            (cf.get("name"), (cf.get("values") or [None])[0])
            for cf in found
            if isinstance(cf, dict) and isinstance(cf.get("values"), list)
        )

    def changes(self, after_id: int, limit: int) -> list[TicketChange]:
        """Queue and Priority changes made by others than us since transaction `after_id`."""
        query = (
            f"ObjectType = 'RT::Ticket' AND Type = 'Set' AND (Field = 'Queue' OR "
            f"Field = 'Priority') AND Creator != '__CurrentUser__' AND id > {int(after_id)}"
        )
        items = self._search("/transactions", query, "ObjectId", limit)
        return [TicketChange(int(item["id"]), str(item["ObjectId"])) for item in items]

    def current(self, ticket_id: str) -> dict[str, str | None]:
        """A ticket's queue and priority names now."""
        ticket = self._call("GET", f"/ticket/{ticket_id}", params={"fields": "Queue,Priority"})
        return {
            "queue": self._queue_names().get(_ref_id(ticket.get("Queue"))),
            "priority": self.priority_name(ticket.get("Priority")),
        }

    def first_message(self, ticket_id: str, item: Mapping[str, Any]) -> tuple[str, str, str]:
        """(subject, body, content type) of a ticket's first message: the first text part of
        its first transaction, plain text before HTML."""
        parts = self._call(
            "GET",
            f"/ticket/{ticket_id}/attachments",
            params={"fields": "Subject,ContentType,Content,TransactionId", "per_page": 20},
        ).get("items", [])
        first = [p for p in parts if p.get("TransactionId") == parts[0].get("TransactionId")]
        texts = [p for p in first if p.get("ContentType") in TEXT_TYPES and p.get("Content")]
        texts.sort(key=lambda p: TEXT_TYPES.index(p["ContentType"]))
        subject = str(item.get("Subject") or (parts[0].get("Subject") if parts else "") or "")
        if not texts:
            return subject, "", "text/plain"
        return subject, str(texts[0]["Content"]), str(texts[0]["ContentType"])

    def priority_name(self, value: Any) -> str | None:
        """The name of a numeric priority, when it is one of the named ones."""
        try:
            number = int(value)
        except (TypeError, ValueError):
            return None
        return next((name for name, n in self.priorities.items() if n == number), None)

    # -- plumbing -----------------------------------------------------------------------------

    def _queue_clause(self) -> str:
        return " OR ".join(f"Queue = '{_quoted(queue)}'" for queue in self.queues)

    def _queue_names(self) -> dict[str, str]:
        """Queue id -> name, of the queues the token may see."""
        found = self._call("GET", "/queues/all", params={"fields": "Name", "per_page": MAX_PAGE})
        return {str(q["id"]): str(q["Name"]) for q in found.get("items", []) if q.get("Name")}

    def _search(
        self, path: str, query: str, fields: str, limit: int, order: str = "ASC"
    ) -> list[dict[str, Any]]:
        params = {
            "query": query,
            "fields": fields,
            "orderby": "id",
            "order": order,
            "per_page": max(1, min(limit, MAX_PAGE)),
        }
        items = self._call("GET", path, params=params).get("items", [])
        return [item for item in items if isinstance(item, dict) and "id" in item]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = send(self.http, f"RT {method} {path}", method, path, **kwargs)
        try:
            answer = response.json()
        except ValueError:
            raise DeskError(f"RT {method} {path}: the answer is not JSON", False) from None
        return answer if isinstance(answer, dict) else {"items": answer}


def _ref_id(ref: Any) -> str | None:
    """The id of a REST 2.0 reference ({"type": "queue", "id": "3", "_url": ...})."""
    return str(ref["id"]) if isinstance(ref, dict) and "id" in ref else None


def _quoted(value: str) -> str:
    """A value inside single quotes of TicketSQL."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
