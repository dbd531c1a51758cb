"""A stand-in for Zammad, written from its public REST API documentation, for the connector
tests (Zammad itself cannot be installed here).

It knows what the connector uses: token auth (`Authorization: Token token=...`), `GET
/api/v1/users/me`, `GET /api/v1/groups` and `/api/v1/ticket_priorities` (arrays of {id, name,
active}; a fresh Zammad's priorities are "1 low", "2 normal", "3 high"), and `PUT
/api/v1/tickets/{id}` resolving `group` and `priority` by exact name (an unknown name is a 422,
as Zammad answers) with an optional `article`. It records every update, and can be taken
"down" (503) to test the outbox. `trigger` sends a webhook as Zammad's trigger does: the default
payload, `X-Zammad-Delivery`, and `X-Hub-Signature: sha1=<HMAC-SHA1 of the body>`.

For history imports it holds `tickets` (made by `closed_ticket`) and answers `GET
/api/v1/tickets/search` as Zammad's Elasticsearch-backed search does for the query the connector
sends (`state.name:<name> AND updated_at:>=<day>[ AND id:><id>]`, `sort_by`, `order_by`, `page`,
`per_page` up to 200; with `expand=true` a list of tickets with their group, priority and state
by name, else `{"tickets": [ids], "tickets_count", "assets"}`), and `GET
/api/v1/ticket_articles/by_ticket/{id}` (the ticket's articles, oldest first, sender by name).
A search can be made to fail (`fail_searches`: the numbers of the calls, from 1, answered 500)
or to wait (`hold_searches`, until `release` is set).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

TOKEN = "standin-token-3f9a"
PRIORITIES = ["1 low", "2 normal", "3 high"]
# The model's priorities (tests' generated data) -> a fresh Zammad's names.
PRIORITY_MAP = {"high": "3 high", "medium": "2 normal", "low": "1 low"}
TICKET_PATH = re.compile(r"^/api/v1/tickets/(\d+)$")
SEARCH_PATH = "/api/v1/tickets/search"
ARTICLES_PATH = re.compile(r"^/api/v1/ticket_articles/by_ticket/(\d+)$")
SEARCH_QUERY = re.compile(
    r"^state\.name:(?P<state>\w+) AND updated_at:>=(?P<since>\d{4}-\d{2}-\d{2})"
    r"(?: AND id:>(?P<after>\d+))?$"
)
MAX_PER_PAGE = 200


@dataclass
class ZammadStandIn:
    groups: list[str]
    priorities: list[str] = field(default_factory=lambda: list(PRIORITIES))
    token: str = TOKEN
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    down: bool = False
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    tickets: list[dict[str, Any]] = field(default_factory=list)
    searches: list[dict[str, str]] = field(default_factory=list)
    fail_searches: set[int] = field(default_factory=set)
    hold_searches: set[int] = field(default_factory=set)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    search_calls: int = 0

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ZammadStandIn:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def answer(self, method: str, path: str, auth: str, body: bytes) -> tuple[int, Any]:
        with self.lock:
            self.calls += 1
            if self.down:
                return 503, {"error": "maintenance"}
            if auth != f"Token token={self.token}":
                return 401, {"error": "authentication failed"}
            if method == "GET" and path == "/api/v1/users/me":
                return 200, {"id": 3, "login": "ticketserve"}
            if method == "GET" and path in ("/api/v1/groups", "/api/v1/ticket_priorities"):
                names = self.groups if path.endswith("groups") else self.priorities
                return 200, [{"id": i, "name": n, "active": True} for i, n in enumerate(names, 1)]
            url = urlsplit(path)
            if method == "GET" and url.path == SEARCH_PATH:
                return self._search({k: v[-1] for k, v in parse_qs(url.query).items()})
            articles = ARTICLES_PATH.match(url.path)
            if method == "GET" and articles:
                found = [t for t in self.tickets if t["id"] == int(articles.group(1))]
                if not found:
                    return 404, {"error": "Couldn't find Ticket"}
                return 200, found[0]["articles"]
            match = TICKET_PATH.match(path)
            if method == "PUT" and match:
                update = json.loads(body)
                for key, known in (("group", self.groups), ("priority", self.priorities)):
                    if key in update and update[key] not in known:
                        return 422, {"error": f"No lookup value found for '{key}': {update[key]!r}"}
                self.updates.append((match.group(1), update))
                return 200, {"id": int(match.group(1))}
            return 404, {"error": "No route matches"}

    def search_started(self) -> bool:
        """Count a search call; hold it while it is one of `hold_searches` (outside the lock,
        so other calls go on). False when it is to fail."""
        with self.lock:
            self.search_calls += 1
            number = self.search_calls
        if number in self.hold_searches:
            self.held.set()
            self.release.wait(120)
        return number not in self.fail_searches

    def _search(self, params: dict[str, str]) -> tuple[int, Any]:
        """Zammad's ticket search over `tickets` (the caller holds the lock)."""
        self.searches.append(params)
        query = SEARCH_QUERY.match(params.get("query", ""))
        if query is None or (params.get("sort_by"), params.get("order_by")) != ("id", "asc"):
            return 422, {"error": f"the stand-in does not know this search: {params}"}
        per_page = min(int(params.get("per_page", 50)), MAX_PER_PAGE)
        page = int(params.get("page", 1))
        after = int(query["after"] or 0)
        found = sorted(
            (t for t in self.tickets
             if t["state"] == query["state"] and t["updated_at"][:10] >= query["since"]
             and t["id"] > after),
            key=lambda t: t["id"],
        )[(page - 1) * per_page : page * per_page]  # fmt: skip
        if params.get("expand") != "true":
            return 200, {"tickets": [t["id"] for t in found], "tickets_count": len(found),
                         "assets": {}}  # fmt: skip
        return 200, [{k: v for k, v in t.items() if k != "articles"} for t in found]


def _handler(standin: ZammadStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, answer = 500, {"error": "search index unavailable"}
            if urlsplit(self.path).path != SEARCH_PATH or standin.search_started():
                status, answer = standin.answer(
                    self.command, self.path, self.headers.get("Authorization", ""), body
                )
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_PUT = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def service_env(standin: ZammadStandIn, work: Path, secret: str, **extra: str) -> dict[str, str]:
    """The service's settings for this stand-in: the token and the priority map as files in
    `work`, the webhook secret, and `extra` settings named without their prefix
    (ZAMMAD_MODE="route" is TICKETSERVE_ZAMMAD_MODE)."""
    (work / "token").write_text(TOKEN + "\n")
    (work / "labels.json").write_text(json.dumps({"priority": PRIORITY_MAP}))
    return {
        "TICKETSERVE_ZAMMAD_URL": standin.url,
        "TICKETSERVE_ZAMMAD_TOKEN_FILE": str(work / "token"),
        "TICKETSERVE_ZAMMAD_WEBHOOK_SECRET": secret,
        "TICKETSERVE_CONNECTOR_LABEL_MAP": str(work / "labels.json"),
        **{f"TICKETSERVE_{name}": value for name, value in extra.items()},
    }


def payload(ticket_id: int, title: str, body: str, sender: str = "Customer") -> dict[str, Any]:
    """Zammad's default trigger payload (ticket + article), the fields the connector reads and
    some it does not."""
    return {
        "ticket": {
            "id": ticket_id,
            "number": str(31000 + ticket_id),
            "title": title,
            "group": {"id": 1, "name": "Users", "active": True},
            "priority": {"id": 2, "name": "2 normal"},
            "state": "new",
        },
        "article": {
            "id": ticket_id * 10,
            "ticket_id": ticket_id,
            "body": body,
            "content_type": "text/html",
            "subject": title,
            "from": "Customer <customer@example.com>",
            "sender": sender,
            "type": "email",
            "internal": False,
        },
    }


def trigger(
    base: str,
    body: dict[str, Any] | bytes,
    secret: str | None,
    delivery: str | None = None,
    signature: str | None = None,
) -> requests.Response:
    """POST a webhook as Zammad's trigger job does (a fresh delivery id unless given)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Zammad User Agent",
        "X-Zammad-Trigger": "ticketserve",
        "X-Zammad-Delivery": delivery or str(uuid.uuid4()),
    }
    if signature is not None:
        headers["X-Hub-Signature"] = signature
    elif secret is not None:
        headers["X-Hub-Signature"] = (
            "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
        )
    return requests.post(
        f"{base}/api/v1/connectors/zammad/webhook", data=raw, headers=headers, timeout=60
    )


def update_payload(ticket_id: int, group: str, priority: str, login: str) -> dict[str, Any]:
    """What an update trigger sends when `login` set the ticket's group and priority (no
    article created)."""
    body = payload(ticket_id, "updated", "")
    body["ticket"].update(
        group={"id": 9, "name": group, "active": True},
        priority={"id": 3, "name": priority},
        updated_by={"id": 7, "login": login},
    )
    body["article"] = {}
    return body


def closed_ticket(
    ticket_id: int,
    title: str,
    body: str,
    group: str,
    priority: str,
    updated_at: str = "2024-03-04T10:00:00.000Z",
    state: str = "closed",
) -> dict[str, Any]:
    """A ticket as Zammad's expanded search lists it, with its articles: the customer's mail,
    an internal note and an agent's reply (which the import must not read as the ticket)."""
    articles = [
        {"id": ticket_id * 10 + 1, "ticket_id": ticket_id, "sender": "Customer", "type": "email",
         "internal": False, "body": body, "content_type": "text/html", "subject": title,
         "from": "Customer <customer@example.com>"},
        {"id": ticket_id * 10 + 2, "ticket_id": ticket_id, "sender": "Agent", "type": "note",
         "internal": True, "body": "internal: checked the account", "content_type": "text/plain"},
        {"id": ticket_id * 10 + 3, "ticket_id": ticket_id, "sender": "Agent", "type": "email",
         "internal": False, "body": "<p>Done, closing the ticket.</p>",
         "content_type": "text/html"},
    ]  # fmt: skip
    return {
        "id": ticket_id,
        "number": str(31000 + ticket_id),
        "title": title,
        "group": group,
        "priority": priority,
        "state": state,
        "customer": "customer@example.com",
        "created_at": "2024-03-01T09:00:00.000Z",
        "updated_at": updated_at,
        "article_count": len(articles),
        "articles": articles,
    }
