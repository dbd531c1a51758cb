"""Typed API errors: raised anywhere in the service, rendered once by `app.py`'s handlers.

Every error answer has the shape `{"error": {"code": ..., "message": ..., "details": ...}}`.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error with an HTTP status, a stable machine-readable code and a human message."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        details: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Gone(ApiError):
    """It existed, but is no longer kept (e.g. a prediction past its retention)."""

    status, code = 410, "gone"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ApiError):
    status, code = 422, "unprocessable"


class Unavailable(ApiError):
    """No model is loaded or TorchServe does not answer; the client should retry later."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, details: Any = None, *, retry_after_s: int = 10) -> None:
        super().__init__(message, details, headers={"Retry-After": str(retry_after_s)})


class UpstreamError(ApiError):
    """TorchServe answered with an error we cannot attribute to the client."""

    status, code = 502, "upstream_error"
