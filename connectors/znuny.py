"""Znuny: its Generic Interface in both directions (as Znuny's source defines it; OTRS 6's and
OTOBO's provider side is the same, the invoker below is Znuny's, 6.1 and later).

Invoker in: a `Ticket::Generic` invoker POSTs `{"Ticket": {...}, "Event": {"Event": ...,
"TicketID": ...}}`: the ticket as `TicketDeepGet` has it (TicketID, Title, Queue, Priority,
ChangeBy = the id of the user who changed it last, `Articles` oldest first with SenderType,
Body, MimeType/ContentType). Its transport `HTTP::REST` sends BasicAuth or additional headers.
The JSON answer is applied by the invoker itself, as user 1: `OTRS_TicketQueueSet` and
`OTRS_TicketPrioritySet` (names), `OTRS_TicketDynamicFieldSet_<Field>` and
`OTRS_TicketArticleAdd` (an internal note; Subject and Body required, ArticleCreate needs a
HistoryType and HistoryComment). Update events (TicketQueueUpdate, TicketPriorityUpdate) send the
ticket as it is then.
Provider out: the GenericTicketConnectorREST operations under the web service's URL: `POST
/Session` (SessionCreate), `GET /Session/:SessionID` (SessionGet), `GET /Ticket` (TicketSearch),
`GET /Ticket/:TicketID` (TicketGet, comma-separated ids), `PATCH /Ticket/:TicketID`
(TicketUpdate). An operation's failure is an HTTP 200 with `{"Error": {"ErrorCode",
"ErrorMessage"}}`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import threading
from collections.abc import Sequence
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

SECRET_HEADER = "X-TicketServe-Secret"
CREATE_EVENT = "TicketCreate"
CHANGE_EVENTS = ("TicketQueueUpdate", "TicketPriorityUpdate")
# The Text dynamic field (object Ticket) the answer's confidences go to; a Znuny without it
# skips the value (the invoker ignores an unknown field).
CONFIDENCE_FIELD = "TicketServeConfidence"
# Ticket::Generic applies an answer as user 1: a change by it is ours, not an agent's.
INVOKER_USER_ID = "1"
CUSTOMER_SENDER = "customer"
# A fresh Znuny's priorities; its REST connector has no operation that lists them (nor queues).
DEFAULT_PRIORITIES = ("1 very low", "2 low", "3 normal", "4 high", "5 very high")
# The provider routes the client calls (deploy/znuny/ticketserve-router.yml defines them).
ROUTES = {
    "SessionCreate": ("POST", "/Session"),
    "SessionGet": ("GET", "/Session/:SessionID"),
    "TicketSearch": ("GET", "/Ticket"),
    "TicketGet": ("GET", "/Ticket/:TicketID"),
    "TicketUpdate": ("PATCH", "/Ticket/:TicketID"),
}
MAX_PAGE = 100  # tickets per history page (one TicketGet for all of them)
MAX_SKIP = 100_000  # tickets of one change second a history cursor may skip
MAX_ID_CHARS = 20
MAX_EVENT_CHARS = 100
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CHANGED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")  # a ticket's Changed
CURSOR = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\|(\d{1,6})$")
NOTE_SUBJECT = "ticketserve"


def given_secret(authorization: str | None, secret_header: str | None) -> str | None:
    """The secret a request carries: the password of `Authorization: Basic` (the user name is
    free), else the `X-TicketServe-Secret` header; "" for another Authorization scheme (a wrong
    credential), None for none."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return secret_header or ""
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return secret_header


def secret_valid(given: str, secret: str) -> bool:
    """Whether `given` is the secret (compared in constant time)."""
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


class PayloadError(ValueError):
    """The body is not a Ticket::Generic request; the message says what is missing."""


@dataclass(frozen=True)
class Invocation:
    """One invoker request: the event, the ticket as it is now, and for a new ticket its first
    customer article (None: no customer wrote one)."""

    event: str
    ticket_id: str
    queue: str | None
    priority: str | None
    changed_by: str | None
    ticket: DeskTicket | None

    @property
    def is_new_ticket(self) -> bool:
        return self.event == CREATE_EVENT

    @property
    def is_change(self) -> bool:
        return self.event in CHANGE_EVENTS

    def names(self) -> dict[str, str | None]:
        """The ticket's queue and priority (Znuny's names) as they are now."""
        return {"queue": self.queue, "priority": self.priority}


def invocation_from_payload(payload: Any) -> Invocation:
    """The invocation a Ticket::Generic request body describes."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Ticket"), dict):
        raise PayloadError("the body needs a 'Ticket' object (a Ticket::Generic invoker's)")
    ticket, event = payload["Ticket"], payload.get("Event")
    name = event.get("Event") if isinstance(event, dict) else None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_EVENT_CHARS:
        raise PayloadError(
            f"the body needs an 'Event' object with the event's name (at most {MAX_EVENT_CHARS} "
            "characters) in 'Event'"
        )
    ticket_id = _ticket_id(ticket.get("TicketID", event.get("TicketID")))
    if ticket_id is None:
        raise PayloadError(
            f"'Ticket.TicketID' must be the ticket's id (1 to {MAX_ID_CHARS} digits)"
        )
    return Invocation(
        event=name,
        ticket_id=ticket_id,
        queue=_text(ticket.get("Queue")),
        priority=_text(ticket.get("Priority")),
        changed_by=_ticket_id(ticket.get("ChangeBy")),
        ticket=_desk_ticket(ticket_id, ticket),
    )


def is_ours(invocation: Invocation, own_user_id: str) -> bool:
    """Whether the ticket's last change is the connector's (the invoker applying an answer, or
    our REST user); an unknown author counts as ours: nothing is read from it."""
    return invocation.changed_by is None or invocation.changed_by in (
        INVOKER_USER_ID,
        own_user_id,
    )


def _desk_ticket(ticket_id: str, ticket: dict[str, Any]) -> DeskTicket | None:
    article = first_customer_article(ticket.get("Articles") or ticket.get("Article"))
    if article is None:
        return None
    dynamic = [(f"DynamicField_{d.get('Name')}", d.get("Value"))
               for d in _dicts(ticket.get("DynamicField"))]  # fmt: skip
    return DeskTicket(
        ticket_id=ticket_id,
        subject=_text(ticket.get("Title")) or "",
        body=_text(article.get("Body")) or "",
        content_type=_content_type(article),
        # Type, Service, SLA, CustomerID...; dynamic fields by their DynamicField_<Name>.
        fields=desk_fields([*ticket.items(), *dynamic]),
    )


def first_customer_article(articles: Any) -> dict[str, Any] | None:
    """The first article a customer wrote (TicketDeepGet and TicketGet list them oldest
    first; one article may come as an object)."""
    for article in _dicts([articles] if isinstance(articles, dict) else articles):
        if str(article.get("SenderType", "")).lower() == CUSTOMER_SENDER:
            return article
    return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (nothing for anything else)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _content_type(article: dict[str, Any]) -> str:
    """text/html or text/plain, from the article's MimeType or ContentType ("text/plain;
    charset=utf-8")."""
    raw = article.get("MimeType") or article.get("ContentType") or ""
    mime = str(raw).split(";")[0].strip().lower()
    return "text/html" if mime == "text/html" else "text/plain"


def _ticket_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    return text if text.isdigit() and len(text) <= MAX_ID_CHARS and text != "0" else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def invoker_answer(action: WriteBack, answer: dict[str, Any]) -> dict[str, Any]:
    """What the invoker applies for `action` (plan_write's decision for `answer`): the note, the
    confidences, and the queue and priority that were decided."""
    fields: dict[str, Any] = {
        "OTRS_TicketArticleAdd": {
            "Subject": NOTE_SUBJECT,
            "Body": action.note,
            "HistoryType": "AddNote",
            "HistoryComment": "ticketserve answer",
        },
        f"OTRS_TicketDynamicFieldSet_{CONFIDENCE_FIELD}": confidences(answer),
    }
    if action.queue is not None:
        fields["OTRS_TicketQueueSet"] = action.queue
    if action.priority is not None:
        fields["OTRS_TicketPrioritySet"] = action.priority
    return fields


def confidences(answer: dict[str, Any]) -> str:
    """Each head's label and confidence, e.g. "queue=Billing 0.93; priority=high 0.55"."""
    parts = []
    for head in ("queue", "priority"):
        head_answer = answer.get(head)
        if isinstance(head_answer, dict):
            parts.append(f"{head}={head_answer['model_label']} {head_answer['confidence']:.2f}")
    return "; ".join(parts)


class ZnunyClient:
    """The GenericTicketConnectorREST calls the connector makes, as one agent (a session from
    SessionCreate, made again when Znuny ends it); every call has a timeout, TLS is verified."""

    name = "znuny"

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        queues: Sequence[str] = (),
        priorities: Sequence[str] = DEFAULT_PRIORITIES,
        timeout_s: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, verify=verify)
        self.user = user
        self._password = password
        self.queues, self.priorities = list(queues), list(priorities)
        self._session: str | None = None
        self._user_id: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def write(self, action: WriteBack) -> None:
        body: dict[str, Any] = {}
        fields = {"Queue": action.queue, "Priority": action.priority}
        if action.sets_fields():
            body["Ticket"] = {key: value for key, value in fields.items() if value is not None}
        if action.note:
            body["Article"] = {
                "CommunicationChannel": "Internal",
                "IsVisibleForCustomer": 0,
                "SenderType": "agent",
                "Subject": NOTE_SUBJECT,
                "Body": action.note,
                "MimeType": "text/plain",
                "Charset": "utf8",
            }
        self._operation("TicketUpdate", action.ticket_id, json=body)

    def names(self) -> dict[str, list[str]]:
        """The configured names (TICKETSERVE_ZNUNY_QUEUES / _PRIORITIES): Znuny's REST
        connector cannot list queues or priorities."""
        return {"queue": list(self.queues), "priority": list(self.priorities)}

    def check(self) -> str | None:
        try:
            self.own_user_id()
        except DeskError as exc:
            return str(exc)
        return None

    def own_login(self) -> str | None:
        return self.user

    def own_user_id(self) -> str:
        """The id of our user (a ticket's ChangeBy), from SessionGet; asked once."""
        if self._user_id is None:
            data = self._operation("SessionGet", self._session_id())
            pairs = _dicts(data.get("SessionData"))
            found = {item.get("Key"): item.get("Value") for item in pairs}
            user_id = _ticket_id(found.get("UserID"))
            if user_id is None:
                raise DeskError("Znuny SessionGet: no UserID in the session's data", True)
            self._user_id = user_id
        return self._user_id

    def history(self, since: str, cursor: str | None, page_size: int) -> HistoryPage:
        """Closed tickets changed on or after `since`, by change time (then ticket number).
        TicketSearch has no offset: the cursor is the last change time seen and how many
        tickets of that second were read, so the next search starts at that second."""
        if not DAY.match(since):
            raise ValueError(f"since must be YYYY-MM-DD, got {since[:40]!r}")
        after, skip = _parse_cursor(cursor, since)
        size = max(1, min(page_size, MAX_PAGE))
        search = [("StateType", "Closed"), ("TicketLastChangeTimeNewerDate", after),
                  ("SortBy", "Changed"), ("SortBy", "TicketNumber"), ("OrderBy", "Up"),
                  ("OrderBy", "Up"), ("Limit", str(skip + size))]  # fmt: skip
        found = _ids(self._operation("TicketSearch", params=search).get("TicketID"))
        ids = found[skip:]
        if not ids:
            return HistoryPage(tickets=[], cursor=None)
        params = {"AllArticles": "1", "ArticleSenderType": CUSTOMER_SENDER, "ArticleLimit": "1"}
        got = self._operation("TicketGet", ",".join(ids), params=params).get("Ticket")
        by_id = {str(item.get("TicketID")): item for item in _dicts(got)}
        tickets, changed = [], []
        for ticket_id in ids:
            item = by_id.get(ticket_id)
            if item is None:
                continue
            changed.append(str(item.get("Changed") or ""))
            article = first_customer_article(item.get("Article")) or {}
            tickets.append(
                HistoryTicket(
                    ticket_id=ticket_id,
                    subject=_text(item.get("Title")) or "",
                    body=_text(article.get("Body")) or "",
                    content_type=_content_type(article),
                    queue=_text(item.get("Queue")),
                    priority=_text(item.get("Priority")),
                )
            )
        if len(found) < skip + size or not changed or not CHANGED.match(changed[-1]):
            return HistoryPage(tickets=tickets, cursor=None)
        last = changed[-1]
        same = sum(1 for value in changed if value == last) + (skip if last == after else 0)
        return HistoryPage(tickets=tickets, cursor=f"{last}|{min(same, MAX_SKIP)}")

    # -- calls ----------------------------------------------------------------------------

    def _session_id(self) -> str:
        with self._lock:
            if self._session is None:
                data = self._request(
                    "SessionCreate", None, json={"UserLogin": self.user, "Password": self._password}
                )
                session = data.get("SessionID")
                if not isinstance(session, str) or not session:
                    raise DeskError("Znuny SessionCreate: no SessionID in the answer", True)
                self._session = session
            return self._session

    def _operation(self, operation: str, key: str | None = None, **kwargs: Any) -> dict:
        """Call `operation` (`key`: the route's :TicketID or :SessionID) in our session; a
        session Znuny ended is made again, once."""
        for attempt in (1, 2):
            session = self._session_id()
            try:
                return self._request(operation, key, session=session, **kwargs)
            except _SessionEnded:
                with self._lock:
                    if self._session == session:
                        self._session = None
                if attempt == 2:
                    raise DeskError(f"Znuny {operation}: the session is refused", True) from None
        raise AssertionError("unreachable")

    def _request(
        self, operation: str, key: str | None, session: str | None = None, **kwargs: Any
    ) -> dict:
        method, route = ROUTES[operation]
        path = route.replace(":TicketID", key or "").replace(":SessionID", key or "")
        if session is not None and method == "GET":
            params = kwargs.pop("params", None) or []
            items = list(params.items()) if isinstance(params, dict) else list(params)
            kwargs["params"] = [*items, ("SessionID", session)]
        elif session is not None:
            kwargs["json"] = {**kwargs.get("json", {}), "SessionID": session}
        where = f"Znuny {operation}"  # never the path: it may hold the session id
        response = send(self.http, where, method, path, redact=session, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise DeskError(f"{where}: the answer is not JSON", False) from None
        if not isinstance(data, dict):
            raise DeskError(f"{where}: the answer is not a JSON object", True)
        error = data.get("Error")
        if isinstance(error, dict):
            code, message = str(error.get("ErrorCode")), str(error.get("ErrorMessage"))[:200]
            if session is not None and (code.endswith(".AuthFail") or "SessionInvalid" in code):
                raise _SessionEnded(code)
            raise DeskError(f"{where}: {code}: {message}", permanent=True)
        return data


class _SessionEnded(Exception):
    """Znuny refused our session (expired, or removed by an admin)."""


def _parse_cursor(cursor: str | None, since: str) -> tuple[str, int]:
    if cursor is None:
        return f"{since} 00:00:00", 0
    match = CURSOR.match(cursor)
    if match is None or int(match.group(2)) > MAX_SKIP:
        raise ValueError(f"not a Znuny history cursor: {cursor[:40]!r}")
    return match.group(1), int(match.group(2))


def _ids(value: Any) -> list[str]:
    """TicketSearch's TicketID list (one id may come as a string)."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    return [text for text in (_ticket_id(item) for item in items) if text is not None]
