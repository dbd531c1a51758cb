"""What every help-desk connector is: its modes, the ticket it reads, the write it makes, and
how a failed write is classified (retry later, or give up with the reason)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from handlers.ticket_requests import MAX_FIELD_CHARS, MAX_FIELD_NAME_CHARS, MAX_FIELDS

Mode = Literal["off", "suggest", "route"]
# The heads a help desk has fields for: the ticket's queue (group) and its priority.
DESK_HEADS = ("queue", "priority")


@dataclass(frozen=True)
class DeskTicket:
    """A new ticket as a help desk sends it: its id there, subject and first customer article,
    and its structured attributes (type, service, custom fields: `desk_fields`), which a model
    trained with feature columns of those names reads."""

    ticket_id: str
    subject: str
    body: str
    content_type: str = "text/plain"
    fields: dict[str, str] = field(default_factory=dict)


def desk_fields(attributes: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    """A ticket's scalar attributes (name, value) as classify fields: text, numbers and
    booleans as text, at most MAX_FIELD_CHARS each; names that are too long, values that are
    objects or empty, are left out; at most MAX_FIELDS, the first ones."""
    fields: dict[str, str] = {}
    for name, value in attributes:
        if len(fields) == MAX_FIELDS:
            break
        if not isinstance(name, str) or not 0 < len(name) <= MAX_FIELD_NAME_CHARS:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        if isinstance(value, str | int | float) and str(value).strip():
            fields.setdefault(name, str(value).strip()[:MAX_FIELD_CHARS])
    return fields


@dataclass(frozen=True)
class WriteBack:
    """One write to a ticket: fields to set (by the help desk's names) and an internal note."""

    ticket_id: str
    queue: str | None = None
    priority: str | None = None
    note: str = ""
    unmapped: list[str] = field(default_factory=list)  # head=label without a target

    def sets_fields(self) -> bool:
        return self.queue is not None or self.priority is not None


@dataclass(frozen=True)
class HistoryTicket:
    """A closed ticket for the training data: its text and its final queue and priority (the
    help desk's names; the importer maps them to model labels)."""

    ticket_id: str
    subject: str
    body: str
    content_type: str
    queue: str | None
    priority: str | None


@dataclass(frozen=True)
class HistoryPage:
    """One page of closed tickets and the cursor of the next page (None: no more pages). The
    cursor is opaque text the importer stores, so an interrupted import resumes there."""

    tickets: list[HistoryTicket]
    cursor: str | None


class DeskError(Exception):
    """A help-desk call failed; `permanent` ones (a 4xx) are not retried."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class HelpDesk(Protocol):
    """The calls the outbox and the start-up check make to a help desk."""

    name: str

    def write(self, action: WriteBack) -> None:
        """Apply `action`; raise DeskError (permanent or not) when it cannot."""

    def names(self) -> dict[str, list[str]]:
        """The help desk's queue and priority names: {"queue": [...], "priority": [...]}."""

    def check(self) -> str | None:
        """Why the help desk cannot be used (unreachable, bad token), or None."""

    def own_login(self) -> str | None:
        """The login the connector writes as: changes by it are not an agent's."""

    def history(self, since: str, cursor: str | None, page_size: int) -> HistoryPage:
        """Closed tickets changed on or after `since` (YYYY-MM-DD), oldest first, one page
        from `cursor` (None: the first page)."""
