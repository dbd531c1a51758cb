"""A stand-in for Zammad, written from its public REST API documentation, for the connector
tests (Zammad itself cannot be installed here).

It knows what the connector uses: token auth (`Authorization: Token token=...`), `GET
/api/v1/users/me`, `GET /api/v1/groups` and `/api/v1/ticket_priorities` (arrays of {id, name,
active}; a fresh Zammad's priorities are "1 low", "2 normal", "3 high"), and `PUT
/api/v1/tickets/{id}` resolving `group` and `priority` by exact name (an unknown name is a 422,
as Zammad answers) with an optional `article`. It records every update, and can be taken
"down" (503) to test the outbox. `trigger` sends a webhook as Zammad's trigger does: the default
payload, `X-Zammad-Delivery`, and `X-Hub-Signature: sha1=<HMAC-SHA1 of the body>`.
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
from typing import Any

import requests

TOKEN = "standin-token-3f9a"
PRIORITIES = ["1 low", "2 normal", "3 high"]
TICKET_PATH = re.compile(r"^/api/v1/tickets/(\d+)$")


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
            match = TICKET_PATH.match(path)
            if method == "PUT" and match:
                update = json.loads(body)
                for key, known in (("group", self.groups), ("priority", self.priorities)):
                    if key in update and update[key] not in known:
                        return 422, {"error": f"No lookup value found for '{key}': {update[key]!r}"}
                self.updates.append((match.group(1), update))
                return 200, {"id": int(match.group(1))}
            return 404, {"error": "No route matches"}


def _handler(standin: ZammadStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
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
