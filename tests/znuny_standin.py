"""A stand-in for Znuny, written from Znuny's source (its Generic Interface), for the connector
tests (Znuny itself cannot be installed here).

Provider: the GenericTicketConnectorREST operations the connector calls, under a web service's
URL: `POST /Session` (SessionCreate: UserLogin + Password -> SessionID), `GET
/Session/:SessionID` (SessionGet: SessionData as Key/Value pairs, UserID among them), `GET
/Ticket` (TicketSearch: StateType, TicketLastChangeTimeNewerDate, SortBy/OrderBy lists, Limit ->
TicketID list, or {} for none), `GET /Ticket/:TicketID` (TicketGet: comma-separated ids,
AllArticles, ArticleSenderType, ArticleLimit) and `PATCH /Ticket/:TicketID` (TicketUpdate: Queue
and Priority by exact name, an Article needing Subject, Body and ContentType or MimeType +
Charset). Parameters come from the query (repeated keys are a list), the path and the JSON body,
as Znuny's HTTP::REST transport merges them; an operation's failure is an HTTP 200 with
{"Error": {"ErrorCode", "ErrorMessage"}}; an unknown route is a 500 in text.
Requester: `invoke` POSTs what a Ticket::Generic invoker sends ({"Ticket": <TicketDeepGet>,
"Event": {...}}, `Content-Type: application/json; charset=UTF-8`, BasicAuth or an additional
header), and `handle_response` applies an answer as the invoker's HandleResponse does (as user
1, keys in sorted order, stopping at the first that fails).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests

BASE_PATH = "/znuny/nph-genericinterface.pl/Webservice/TicketServe"
PRIORITIES = ["1 very low", "2 low", "3 normal", "4 high", "5 very high"]
USERS = {"ticketserve": (3, "standin-password-5d2e"), "anna": (7, "anna-password")}
PASSWORD = USERS["ticketserve"][1]
INVOKER_USER = 1  # Ticket::Generic applies answers as user 1
TICKET_PATH = re.compile(r"^/Ticket/([^/]+)$")
SESSION_PATH = re.compile(r"^/Session/([^/]+)$")
START = datetime(2024, 3, 1, 9, 0, 0)


@dataclass
class ZnunyStandIn:
    queues: list[str]
    priorities: list[str] = field(default_factory=lambda: list(PRIORITIES))
    dynamic_fields: tuple[str, ...] = ("TicketServeConfidence",)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    clock: datetime = START

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{BASE_PATH}"

    def start(self) -> ZnunyStandIn:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- tickets --------------------------------------------------------------------------

    def create_ticket(
        self,
        title: str,
        body: str,
        mime_type: str = "text/plain",
        state: str = "new",
        queue: str = "Postmaster",
        priority: str = "3 normal",
        changed: datetime | None = None,
    ) -> int:
        """A ticket as a customer's mail creates it: one customer article, by user 1."""
        with self.lock:
            ticket_id = len(self.tickets) + 1
            when = changed or self._tick()
            self.tickets[ticket_id] = {
                "TicketID": ticket_id,
                "TicketNumber": f"2024030110{ticket_id:06d}",
                "Title": title,
                "Queue": queue,
                "QueueID": 1,
                "Priority": priority,
                "PriorityID": 3,
                "State": state,
                "StateType": "closed" if state.startswith("closed") else state,
                "Owner": "root@localhost",
                "CustomerUserID": "customer@example.com",
                "Created": _stamp(when),
                "CreateBy": INVOKER_USER,
                "Changed": _stamp(when),
                "ChangeBy": INVOKER_USER,
                "Articles": [
                    _article(ticket_id * 10, "customer", title, body, mime_type),
                ],
            }
            return ticket_id

    def agent_update(self, ticket_id: int, user_id: int, **fields: str) -> None:
        """An agent's change in Znuny's UI (queue, priority or state)."""
        with self.lock:
            ticket = self.tickets[ticket_id]
            ticket.update(fields)
            if "State" in fields:
                ticket["StateType"] = "closed" if fields["State"].startswith("closed") else "open"
            ticket.update(Changed=_stamp(self._tick()), ChangeBy=user_id)

    def deep_ticket(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as Ticket::Generic's TicketDeepGet has it (with data we never read)."""
        with self.lock:
            ticket = json.loads(json.dumps(self.tickets[ticket_id]))
        ticket.update(
            QueueData={"QueueID": 1, "Name": ticket["Queue"], "ValidID": 1},
            PriorityData={"ID": 3, "Name": ticket["Priority"]},
            CustomerUser={"UserLogin": "customer@example.com", "UserEmail": "c@example.com"},
            OwnerData={"UserLogin": "root@localhost", "UserFirstname": "Admin"},
        )
        return ticket

    def handle_response(self, ticket_id: int, answer: dict[str, Any]) -> list[str]:
        """Apply an invoker answer as Ticket::Generic's HandleResponse does; the keys done."""
        done = []
        with self.lock:
            ticket = self.tickets[ticket_id]
            for key in sorted(answer):
                value = answer[key]
                if key.startswith("OTRS_TicketDynamicFieldSet_"):
                    name = key.removeprefix("OTRS_TicketDynamicFieldSet_")
                    if name not in self.dynamic_fields:
                        continue  # an unknown field is skipped
                    ticket[f"DynamicField_{name}"] = value
                elif key == "OTRS_TicketQueueSet":
                    if value not in self.queues:
                        break
                    ticket["Queue"] = value
                elif key == "OTRS_TicketPrioritySet":
                    if value not in self.priorities:
                        break
                    ticket["Priority"] = value
                elif key == "OTRS_TicketArticleAdd":
                    needed = ("Subject", "Body", "HistoryType", "HistoryComment")
                    if not isinstance(value, dict) or any(not value.get(n) for n in needed):
                        break
                    article_id = ticket_id * 10 + len(ticket["Articles"])
                    article = _article(article_id, "agent", value["Subject"], value["Body"])
                    ticket["Articles"].append({**article, "IsVisibleForCustomer": 0})
                else:
                    continue
                ticket.update(Changed=_stamp(self._tick()), ChangeBy=INVOKER_USER)
                done.append(key)
        return done

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    # -- the provider ---------------------------------------------------------------------

    def answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        with self.lock:
            self.calls.append(f"{method} {path.removeprefix(BASE_PATH)}")
        if not path.startswith(BASE_PATH + "/"):
            return 404, "Not Found"
        route = path.removeprefix(BASE_PATH)
        data = _query(parts.query)
        if body and method != "GET":
            try:
                decoded = json.loads(body)
            except ValueError:
                return 500, "Error while decoding request content."
            if not isinstance(decoded, dict):
                return 500, "Unsupported request content structure."
            data.update(decoded)
        with self.lock:
            if method == "POST" and route == "/Session":
                return 200, self._session_create(data)
            if method == "GET" and (match := SESSION_PATH.match(route)):
                return 200, self._session_get(match.group(1))
            if method == "GET" and route == "/Ticket":
                return 200, self._authorized("TicketSearch", data, self._search)
            if method == "GET" and (match := TICKET_PATH.match(route)):
                data["TicketID"] = match.group(1)
                return 200, self._authorized("TicketGet", data, self._get)
            if method == "PATCH" and (match := TICKET_PATH.match(route)):
                data["TicketID"] = match.group(1)
                return 200, self._authorized("TicketUpdate", data, self._update)
        return 500, f"HTTP::REST Error while determine Operation for request URI '{route}'."

    def _session_create(self, data: dict[str, Any]) -> dict[str, Any]:
        user = USERS.get(str(data.get("UserLogin")))
        if not data.get("Password"):
            return _error("SessionCreate.MissingParameter", "Password parameter is missing!")
        if user is None or data["Password"] != user[1]:
            return _error("SessionCreate.AuthFail", "SessionCreate: Authorization failing!")
        session = uuid.uuid4().hex
        self.sessions[session] = user[0]
        return {"SessionID": session}

    def _session_get(self, session: str) -> dict[str, Any]:
        user_id = self.sessions.get(session)
        if user_id is None:
            return _error("SessionGet.SessionInvalid", "SessionGet: SessionID is Invalid!")
        login = next(name for name, (uid, _) in USERS.items() if uid == user_id)
        pairs = {"UserID": user_id, "UserLogin": login, "UserFirstname": login.title()}
        return {"SessionData": [{"Key": k, "Value": v} for k, v in sorted(pairs.items())]}

    def _authorized(self, operation: str, data: dict[str, Any], run: Any) -> dict[str, Any]:
        user_id = self.sessions.get(str(data.get("SessionID")))
        if user_id is None and data.get("UserLogin") in USERS:
            uid, password = USERS[data["UserLogin"]]
            user_id = uid if data.get("Password") == password else None
        if user_id is None:
            return _error(f"{operation}.AuthFail", f"{operation}: Authorization failing!")
        result: dict[str, Any] = run(data, user_id)
        return result

    def _search(self, data: dict[str, Any], user_id: int) -> dict[str, Any]:
        tickets = list(self.tickets.values())
        if data.get("StateType") == "Closed":
            tickets = [t for t in tickets if t["StateType"] == "closed"]
        newer = data.get("TicketLastChangeTimeNewerDate")
        if newer:
            tickets = [t for t in tickets if t["Changed"] >= newer]
        sort_by = _as_list(data.get("SortBy") or "Age")
        order_by = _as_list(data.get("OrderBy") or "Down")
        keys = {"Changed": "Changed", "TicketNumber": "TicketNumber", "Age": "Created"}
        for name, order in reversed(list(zip(sort_by, order_by, strict=True))):
            tickets.sort(key=lambda t, n=name: t[keys[n]], reverse=order == "Down")
        limit = int(data.get("Limit") or 500)
        ids = [str(t["TicketID"]) for t in tickets[:limit]]
        return {"TicketID": ids} if ids else {}

    def _get(self, data: dict[str, Any], user_id: int) -> dict[str, Any]:
        raw = data["TicketID"]
        ids = raw if isinstance(raw, list) else str(raw).split(",")
        if not all(re.fullmatch(r"[1-9]\d*", str(i).strip()) for i in ids):
            return _error("TicketGet.WrongStructure", "Invalid ticket ID parameter(s) found!")
        items = []
        for ticket_id in (int(i) for i in ids):
            if ticket_id not in self.tickets:
                return _error("TicketGet.AccessDenied", "User does not have access to the ticket!")
            ticket = json.loads(json.dumps(self.tickets[ticket_id]))
            articles = ticket.pop("Articles")
            if data.get("AllArticles"):
                sender = data.get("ArticleSenderType")
                if sender:
                    articles = [a for a in articles if a["SenderType"] in _as_list(sender)]
                limit = int(data.get("ArticleLimit") or 0)
                ticket["Article"] = articles[:limit] if limit else articles
            items.append(ticket)
        return {"Ticket": items}

    def _update(self, data: dict[str, Any], user_id: int) -> dict[str, Any]:
        ticket = self.tickets.get(int(data["TicketID"]))
        if ticket is None:
            return _error("TicketUpdate.AccessDenied", "User does not have access to the ticket!")
        fields, article = data.get("Ticket") or {}, data.get("Article")
        for key, known in (("Queue", self.queues), ("Priority", self.priorities)):
            if key in fields and fields[key] not in known:
                return _error("TicketUpdate.InvalidParameter", f"Ticket->{key} is invalid!")
        if article is not None:
            typed = article.get("ContentType") or (
                article.get("MimeType") and article.get("Charset")
            )
            if not article.get("Subject") or not article.get("Body") or not typed:
                return _error("TicketUpdate.MissingParameter", "Article parameter is missing!")
        ticket.update({k: v for k, v in fields.items() if k in ("Queue", "Priority")})
        article_id = None
        if article is not None:
            article_id = ticket["TicketID"] * 10 + len(ticket["Articles"])
            ticket["Articles"].append(
                _article(
                    article_id,
                    article.get("SenderType", "agent"),
                    article["Subject"],
                    article["Body"],
                    article.get("MimeType", "text/plain"),
                )
            )
        ticket.update(Changed=_stamp(self._tick()), ChangeBy=user_id)
        self.updates.append((ticket["TicketID"], {"Ticket": fields, "Article": article}))
        answer: dict[str, Any] = {"TicketID": str(ticket["TicketID"])}
        if article_id is not None:
            answer["ArticleID"] = str(article_id)
        return answer


def _handler(standin: ZnunyStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, answer = standin.answer(self.command, self.path, self.rfile.read(length))
            text = isinstance(answer, str)
            raw = (answer if text else json.dumps(answer)).encode()
            self.send_response(status)
            kind = "text/plain" if text else "application/json"
            self.send_header("Content-Type", f"{kind}; charset=UTF-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def invoke(
    base: str,
    event: str,
    ticket: dict[str, Any],
    secret: str | None,
    how: str = "basic",
) -> requests.Response:
    """POST an invocation as Ticket::Generic over HTTP::REST does: the ticket and the event's
    data, with the secret as BasicAuth password (`how="basic"`) or additional header."""
    body = {"Ticket": ticket, "Event": {"Event": event, "TicketID": ticket["TicketID"]}}
    headers = {"Content-Type": "application/json; charset=UTF-8", "User-Agent": "libwww-perl/6.72"}
    if secret is not None and how == "basic":
        token = base64.b64encode(f"znuny:{secret}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif secret is not None:
        headers["X-TicketServe-Secret"] = secret
    return requests.post(
        f"{base}/api/v1/connectors/znuny/invoke",
        data=json.dumps(body).encode(),
        headers=headers,
        timeout=60,
    )


def _article(
    article_id: int, sender: str, subject: str, body: str, mime: str = "text/plain"
) -> dict[str, Any]:
    return {
        "ArticleID": article_id,
        "SenderType": sender,
        "IsVisibleForCustomer": 1,
        "From": "Customer <customer@example.com>",
        "Subject": subject,
        "Body": body,
        "ContentType": f"{mime}; charset=utf-8",
        "MimeType": mime,
        "Charset": "utf-8",
        "CommunicationChannel": "Email",
    }


def _query(query: str) -> dict[str, Any]:
    """Query parameters as HTTP::REST reads them: a key given more than once is a list."""
    data: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in data:
            data[key] = value
        else:
            data[key] = [*_as_list(data[key]), value]
    return data


def _error(code: str, message: str) -> dict[str, Any]:
    return {"Error": {"ErrorCode": code, "ErrorMessage": message}}


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")
