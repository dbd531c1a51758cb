"""One rule for every help-desk call: a transport error or a 5xx/429 is worth retrying, any
other 4xx never succeeds (a bad name, no permission, a revoked token)."""

from __future__ import annotations

from typing import Any

import httpx

from connectors.base import DeskError


def send(
    http: httpx.Client, where: str, method: str, path: str, redact: str | None = None, **kwargs: Any
) -> httpx.Response:
    """`http.request(method, path, **kwargs)`; a failure is a DeskError that starts with
    `where` and leaves `redact` (a session id, say) out of the help desk's text."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise DeskError(f"{where}: {type(exc).__name__}", permanent=False) from None
    if response.status_code >= 400:
        text = response.text[:200]
        raise DeskError(
            f"{where}: HTTP {response.status_code} "
            + (text.replace(redact, "<redacted>") if redact else text),
            permanent=response.status_code < 500 and response.status_code != 429,
        )
    return response
