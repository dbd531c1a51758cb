"""The gate every request passes before any route sees it: API key first, then body size.

    app.add_middleware(RequestGuard, api_key=..., max_body_bytes=..., upload_paths=...,
                       max_upload_bytes=...)

A pure ASGI middleware, so nothing of the body has been read when it answers: a request without
the right key gets its 401 before a byte of its body is received, and a body is refused (413) as
soon as its Content-Length, or the bytes received so far, pass the route's limit (uploads have
their own, larger one). Before a 413 the rest of the body is read and dropped, for LINGER_S at
most: the connection closes after the answer, and a client still sending would get a reset
instead of it. Routes outside `protected_prefix` (health, metrics, docs) need no key.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from shim.api.http_protocol import LINGER_S
from shim.errors import ApiError, BadRequest, PayloadTooLarge, Unauthorized

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    """Check the API key and cap the body of every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        max_body_bytes: int,
        upload_paths: tuple[str, ...],
        max_upload_bytes: int,
        protected_prefix: str = "/api/v1",
        signed_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.upload_paths = upload_paths
        self.max_upload_bytes = max_upload_bytes
        self.protected_prefix = protected_prefix
        # Webhooks a help desk sends: signed with their own secret (checked by the route), as
        # the help desk cannot send our API key.
        self.signed_paths = signed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        try:
            self._authorize(scope["path"], headers)
            limit = self.max_upload_bytes if scope["path"] in self.upload_paths else (
                self.max_body_bytes)  # fmt: skip
            _check_declared_length(headers.get("content-length"), limit)
        except PayloadTooLarge as error:
            await _drain(receive)
            await _answer(send, error)
            return
        except ApiError as error:
            await _answer(send, error)
            return
        await _Capped(self.app, limit)(scope, receive, send)

    def _authorize(self, path: str, headers: dict[str, bytes]) -> None:
        if self.api_key is None or not path.startswith(self.protected_prefix):
            return
        if path in self.signed_paths:
            return
        scheme, _, given = headers.get("authorization", b"").partition(b" ")
        # compare_digest: the time taken does not reveal how much of the key was right.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.api_key):
            raise Unauthorized(
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )


def _check_declared_length(declared: bytes | None, limit: int) -> None:
    if declared is None:
        return
    if not declared.strip().isdigit() or len(declared) > 20:
        raise BadRequest(f"invalid Content-Length {declared[:40]!r}", code="bad_content_length")
    if int(declared) > limit:
        raise too_large(int(declared), limit)


class _Capped:
    """One request whose body may not pass `limit` bytes. Past it, the 413 is sent from here,
    the app is told the client left (so it stops reading), and its own answer is dropped."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.received = 0
        self.answered = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def capped_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    if not self.answered:
                        self.answered = True
                        if message.get("more_body", False):
                            await _drain(receive)
                        await _answer(send, too_large(self.received, self.limit))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not self.answered:
                await send(message)

        await self.app(scope, capped_receive, guarded_send)


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body, for LINGER_S at most."""
    deadline = time.monotonic() + LINGER_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body has {'at least ' if size <= limit else ''}{size} bytes; the limit is {limit}",
        {"limit_bytes": limit},
    )


async def _answer(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body must not be taken for the next request
        *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
