"""Polling a help desk that cannot call us (Request Tracker): new tickets in, agents' changes as
corrections.

Each pass reads the tickets above the last one seen and routes each like a webhook delivery
(`shim/api/desk_events.py`: the same classify path, the write-back committed to the outbox),
then the Queue/Priority changes made by others than us above the last change seen. Both cursors are
stored after each item, so a restart neither skips nor repeats one; a ticket routed before is
not routed again (its delivery id is the ticket id). The first pass starts at the newest ticket
and change: switching the connector on does not route the backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, cast

import httpx
from starlette.concurrency import run_in_threadpool

from connectors.base import DeskError, DeskTicket, Mode
from shim.api.deps import Services
from shim.api.desk_events import record_change, route_ticket
from shim.errors import ApiError

logger = logging.getLogger(__name__)

BATCH = 50  # tickets and changes read per pass


class Change(Protocol):
    transaction_id: int
    ticket_id: str


class PolledDesk(Protocol):
    """What polling needs from a help desk besides the HelpDesk calls."""

    def last_ticket_id(self) -> int: ...

    def last_change_id(self) -> int: ...

    def new_tickets(self, after_id: int, limit: int) -> list[DeskTicket]: ...

    def changes(self, after_id: int, limit: int) -> list[Change]: ...

    def current(self, ticket_id: str) -> dict[str, str | None]: ...


class DeskPoller:
    def __init__(
        self, services: Services, name: str, desk: PolledDesk, mode: Mode, interval_s: float
    ) -> None:
        self.services = services
        self.name = name
        self.desk = desk
        self.mode = mode
        self.interval_s = interval_s

    async def run(self) -> None:
        """Poll until cancelled; a failed pass is reported and retried after the interval."""
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except DeskError as exc:
                self.services.outbox.problems[self.name] = str(exc)
                logger.warning("%s polling: %s", self.name, exc)
            except Exception:  # the poller must outlive any surprise; the next pass retries
                logger.exception("%s polling pass failed", self.name)
            await asyncio.sleep(self.interval_s)

    async def poll_once(self) -> None:
        tickets_at = await run_in_threadpool(self._cursor, "tickets", self.desk.last_ticket_id)
        changes_at = await run_in_threadpool(self._cursor, "changes", self.desk.last_change_id)
        tickets = await run_in_threadpool(self.desk.new_tickets, tickets_at, BATCH)
        for ticket in tickets:
            if not await self._route(ticket):
                return  # no model or TorchServe down: this ticket again next pass
            await run_in_threadpool(self._advance, "tickets", ticket.ticket_id)
        changes = await run_in_threadpool(self.desk.changes, changes_at, BATCH)
        for change in changes:
            ticket_id = change.ticket_id
            names = await run_in_threadpool(self.desk.current, ticket_id)
            await run_in_threadpool(record_change, self.services, self.name, ticket_id, names)
            await run_in_threadpool(self._advance, "changes", str(change.transaction_id))
        self.services.outbox.problems[self.name] = None

    async def _route(self, ticket: DeskTicket) -> bool:
        """Route one new ticket; False when it must be tried again later."""
        deliveries = self.services.metrics.connector_deliveries
        try:
            accepted, _ = await route_ticket(
                self.services, self.name, f"ticket-{ticket.ticket_id}", ticket, self.mode
            )
        except ApiError as exc:
            if exc.status >= 500:
                logger.warning("%s ticket %s waits: %s", self.name, ticket.ticket_id, exc)
                return False
            # Nothing the model can read (only a quote, too long): never routable, skip it.
            logger.warning("%s ticket %s not routed: %s", self.name, ticket.ticket_id, exc)
            deliveries.labels(self.name, "rejected").inc()
            return True
        except httpx.TransportError as exc:
            logger.warning("%s ticket %s waits: TorchServe: %s", self.name, ticket.ticket_id, exc)
            return False
        deliveries.labels(self.name, "accepted" if accepted else "duplicate").inc()
        return True

    def _cursor(self, name: str, start: Callable[[], int]) -> int:
        value = self.services.outbox.cursor(self.name, name)
        if value is None:
            value = str(start())
            self.services.outbox.set_cursor(self.name, name, value)
        return int(value)

    def _advance(self, name: str, value: str) -> None:
        self.services.outbox.set_cursor(self.name, name, value)


def build_pollers(services: Services) -> list[DeskPoller]:
    """A poller for each connector that is polled (its help desk cannot call us)."""
    return [
        DeskPoller(services, name, cast(PolledDesk, connector.desk), connector.mode, poll_s)
        for name, connector in services.connectors.items()
        if (poll_s := connector.poll_s) is not None
    ]
