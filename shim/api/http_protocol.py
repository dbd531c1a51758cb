"""uvicorn's HTTP/1.1 protocol (h11), answering unparseable requests so that clients can read it.

uvicorn answers a request it cannot parse with a 400 and closes the socket at once. A client still
sending (a 1 MB header, say) then gets a connection reset instead of the answer, and the status
does not say what was wrong. Here the status is h11's own hint (431 for headers over the limit,
else 400), and whatever the client still sends is read and dropped for a moment before closing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LINGER_S = 2.0
REASONS = {400: b"Bad Request", 413: b"Content Too Large", 431: b"Request Header Fields Too Large"}


class LingeringH11Protocol(H11Protocol):
    """H11Protocol with a meaningful status for bad requests and a lingering close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._error_status = 400
        self._draining = False
        next_event = self.conn.next_event

        def remember_hint() -> Any:
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._error_status = exc.error_status_hint
                raise

        self.conn.next_event = remember_hint  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        if not self._draining:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        status = self._error_status if self._error_status in (400, 413, 431) else 400
        message = "request header fields too large" if status == 431 else msg
        body = message.encode("ascii", "replace")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])
            + b"".join(b"%s: %s\r\n" % pair for pair in headers)
            + b"\r\n"
            + body
        )
        self._draining = True
        asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
