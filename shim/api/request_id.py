"""An id for every HTTP request: the `X-Request-ID` header of its answer, and the `request_id`
of every log line written while it is handled (see shim.api.logs).

A client's (or the reverse proxy's) own `X-Request-ID` is reused when it is a short token, so one
id follows the request through both logs. Anything else is replaced by a new id, never echoed:
a header value could otherwise forge log lines or carry control characters into them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import MutableHeaders

HEADER = "X-Request-ID"
MAX_LENGTH = 128
# A subset of HTTP's token characters: no quotes, brackets, spaces or anything a shell or a log
# reader would trip over.
_SAFE = re.compile(rb"[A-Za-z0-9._~+-]{1,%d}" % MAX_LENGTH)
_HEADER_KEY = HEADER.lower().encode("latin-1")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context, None outside requests."""
    return _current.get()


def accepted_id(value: bytes | None) -> str:
    """`value` (a header's raw bytes) if it is a safe id, else a new one (32 hex digits)."""
    if value is not None and _SAFE.fullmatch(value):
        return value.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each HTTP request its id: in the context (for logging) and on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k.lower() == _HEADER_KEY), None)
        request_id = accepted_id(given)
        # Not reset on the way out: the server logs a failed request's traceback after the app
        # has raised, still in the request's own task, whose context ends with it.
        _current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
