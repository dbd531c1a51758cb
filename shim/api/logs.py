"""The service's log: on the console (journald under systemd) and in a size-rotated file, as text
lines or one JSON object per line, each line with the id of the HTTP request it belongs to.

    text: 2025-01-31 12:00:00,123 INFO shim.jobs.runner [req=4f2c...]: job 3f... cancelled
    json: {"time": "2025-01-31T12:00:00.123+00:00", "level": "INFO", "logger": "shim.jobs.runner",
           "message": "job 3f... cancelled", "request_id": "4f2c..."}

`request_id` is `-` in text and null in JSON outside a request (start-up, training progress).
"""

from __future__ import annotations

import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from shim.api.request_id import current_request_id
from shim.settings import LogFormat

FILE_BYTES = 10 * 1024 * 1024
FILES_KEPT = 5
NO_REQUEST = "-"
# The console has no timestamps: journald (or the terminal's user) has its own.
CONSOLE_TEXT = "%(levelname)s %(name)s [req=%(request_id)s]: %(message)s"
FILE_TEXT = "%(asctime)s " + CONSOLE_TEXT
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
# Record attributes that are no field of a JSON line: uvicorn's ANSI-coloured copy of its
# message, and asyncio's task name (Python 3.12+).
_NOT_FIELDS = [*RESERVED_ATTRS, "color_message", "taskName"]


class RequestIdFilter(logging.Filter):
    """Sets `record.request_id` from the request being handled (`-` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or NO_REQUEST
        return True


class JsonLineFormatter(JsonFormatter):
    """python-json-logger's formatter with fixed field names, ISO 8601 UTC times, and a null
    `request_id` outside requests."""

    def __init__(self) -> None:
        super().__init__(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=_NOT_FIELDS,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if log_data.get("request_id") == NO_REQUEST:
            log_data["request_id"] = None
        return log_data


def formatter(log_format: LogFormat, text: str = FILE_TEXT) -> logging.Formatter:
    """A formatter of `log_format`; `text` is the line of the text format."""
    return JsonLineFormatter() if log_format == "json" else logging.Formatter(text)


def configure_logging(log_format: LogFormat, file: Path) -> None:
    """Replace the root logger's handlers: the console (stderr) and `file`, rotated at 10 MB
    (5 kept), both in `log_format` and with the request id on every line.

    Python warnings are logged too, so that a JSON console holds nothing but JSON.
    """
    file.parent.mkdir(parents=True, exist_ok=True)
    console = logging.StreamHandler()
    console.setFormatter(formatter(log_format, CONSOLE_TEXT))
    rotating = logging.handlers.RotatingFileHandler(
        file, maxBytes=FILE_BYTES, backupCount=FILES_KEPT, encoding="utf-8"
    )
    rotating.setFormatter(formatter(log_format, FILE_TEXT))
    for handler in (console, rotating):
        handler.addFilter(RequestIdFilter())
    logging.basicConfig(handlers=[console, rotating], force=True)
    logging.captureWarnings(True)
