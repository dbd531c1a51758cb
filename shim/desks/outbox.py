"""The durable outbox of help-desk write-backs, and its worker.

A webhook's answer, the desk ticket's prediction and the write it asks for are committed in one
transaction before the webhook is answered (`accept`); a worker thread then delivers due writes
(`deliver_due`), retrying timeouts and 5xx answers with exponential back-off across restarts,
and giving up on a 4xx with its reason. A delivery id is accepted once: a redelivered webhook
writes nothing twice. Delivery is at least once: a crash between a write and its record repeats
that write after the restart. Replicas on one registry share the outbox: each write is claimed by
one of them before it is sent (`claim`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from connectors.base import DeskError, HelpDesk, Mode
from connectors.label_map import LabelMap
from connectors.writeback import plan_write
from shim.metrics import ApiMetrics
from shim.settings import Settings
from shim.store.registry import Store
from shim.store.registry.database import insert
from shim.store.registry.tables import (
    connector_cursors,
    connector_deliveries,
    connector_tickets,
    outbox,
)

logger = logging.getLogger(__name__)

BATCH = 20  # writes taken per pass
IDLE_S = 1.0  # the worker's wait when nothing is due (a new write wakes it at once)
NAMES_TTL_S = 300.0  # how long a help desk's queue and priority names are reused
FIRST_BACKOFF_S = 1.0


@dataclass(frozen=True)
class ConnectorStats:
    """One connector's counts for monitoring."""

    pending: int
    done: int
    failed: int
    last_error: str | None
    last_delivery_ms: int | None


class Outbox:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        desks: dict[str, HelpDesk],
        label_map: LabelMap,
        metrics: ApiMetrics,
    ) -> None:
        self.store = store
        self.settings = settings
        self.desks = desks
        self.label_map = label_map
        self.metrics = metrics
        self._names: dict[str, tuple[float, dict[str, list[str]]]] = {}
        # Each help desk's problem as last seen (None: it answered); checked at start.
        self.problems: dict[str, str | None] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the webhook side ---------------------------------------------------------------------

    def seen(self, connector: str, delivery_id: str) -> bool:
        d = connector_deliveries.c
        query = select(d.created_ms).where(d.connector == connector, d.delivery_id == delivery_id)
        with self.store.reading() as conn:
            return conn.execute(query).first() is not None

    def accept(
        self, connector: str, delivery_id: str, ticket_id: str, mode: Mode, answer: dict[str, Any]
    ) -> bool:
        """Record a delivery, its ticket's prediction and its write, in one transaction; False
        (and nothing stored) when this delivery was accepted before."""
        now = _now_ms()
        with self.store.transaction() as conn:
            if not _link(conn, connector, delivery_id, ticket_id, answer["prediction_id"], now):
                return False
            conn.execute(
                outbox.insert().values(
                    connector=connector,
                    ticket_id=ticket_id,
                    mode=mode,
                    answer=json.dumps(answer),
                    status="pending",
                    attempts=0,
                    next_ms=now,
                    created_ms=now,
                )
            )
        self._wake.set()
        return True

    def link(self, connector: str, delivery_id: str, ticket_id: str, prediction_id: str) -> bool:
        """Record a delivery and its ticket's prediction, with no write: the help desk applies
        the answer itself (Znuny's invoker); False (and nothing stored) when seen before."""
        with self.store.transaction() as conn:
            return _link(conn, connector, delivery_id, ticket_id, prediction_id, _now_ms())

    def record_delivery(self, connector: str, delivery_id: str) -> bool:
        """Remember a delivery that asks for no write (an agent's article); False if seen."""
        with self.store.transaction() as conn:
            return _record_delivery(conn, connector, delivery_id, _now_ms())

    def prediction_for(self, connector: str, ticket_id: str) -> str | None:
        t = connector_tickets.c
        query = select(t.prediction_id).where(t.connector == connector, t.ticket_id == ticket_id)
        with self.store.reading() as conn:
            return conn.execute(query).scalar()

    def cursor(self, connector: str, name: str) -> str | None:
        """Where polling `connector` for `name` (tickets, changes) goes on from."""
        c = connector_cursors.c
        query = select(c.value).where(c.connector == connector, c.name == name)
        with self.store.reading() as conn:
            return conn.execute(query).scalar()

    def set_cursor(self, connector: str, name: str, value: str) -> None:
        values = {"value": value, "updated_ms": _now_ms()}
        with self.store.transaction() as conn:
            conn.execute(
                insert(conn, connector_cursors)
                .values(connector=connector, name=name, **values)
                .on_conflict_do_update(index_elements=["connector", "name"], set_=values)
            )

    # -- the worker side ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None and self.desks:
            self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.connector_timeout_s + 5)

    def check_desks(self) -> None:
        """Ask each help desk whether it can be used (reachable, token valid); a problem is
        reported by /readyz and monitoring, never fatal."""
        for name, desk in self.desks.items():
            problem = desk.check()
            self.problems[name] = problem
            if problem:
                logger.warning("%s connector: %s", name, problem)

    def _run(self) -> None:
        self.check_desks()
        while not self._stop.is_set():
            try:
                done = self.deliver_due()
            except Exception:  # the worker must outlive any surprise; the next pass retries
                logger.exception("outbox pass failed")
                done = 0
            if not done:
                self._wake.wait(IDLE_S)
                self._wake.clear()

    def deliver_due(self, now_ms: int | None = None) -> int:
        """Try every due write once (up to BATCH); returns how many were tried."""
        now = _now_ms() if now_ms is None else now_ms
        o = outbox.c
        query = (
            select(o.seq, o.connector, o.ticket_id, o.mode, o.answer, o.attempts, o.next_ms)
            .where(o.status == "pending", o.next_ms <= now)
            .order_by(o.seq)
            .limit(BATCH)
        )
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        for seq, connector, ticket_id, mode, answer, attempts, due_ms in rows:
            if self._stop.is_set():
                break
            if self.claim(seq, due_ms, now):
                self._deliver(seq, connector, ticket_id, mode, json.loads(answer), attempts)
        return len(rows)

    def claim(self, seq: int, due_ms: int, now_ms: int) -> bool:
        """Take a due write for this replica: move it out of the others' reach for as long as a
        delivery may take (it is due again after that, if this replica stops meanwhile). False
        when another replica took it since it was read as due at `due_ms`."""
        hold_ms = (3 * self.settings.connector_timeout_s + 30) * 1000
        with self.store.transaction() as conn:
            taken = conn.execute(
                update(outbox)
                .where(
                    outbox.c.seq == seq, outbox.c.status == "pending", outbox.c.next_ms == due_ms
                )
                .values(next_ms=now_ms + hold_ms)
            )
        return bool(taken.rowcount)

    def _deliver(
        self, seq: int, connector: str, ticket_id: str, mode: Mode, answer: dict, attempts: int
    ) -> None:
        desk = self.desks.get(connector)
        try:
            if desk is None:
                raise DeskError(f"the {connector} connector is not configured", permanent=False)
            action = plan_write(ticket_id, answer, mode, self.label_map, self._desk_names(desk))
            desk.write(action)
        except DeskError as exc:
            self._names.pop(connector, None)  # a renamed queue may be why
            self.problems[connector] = str(exc)
            self._failed(seq, connector, attempts + 1, str(exc), exc.permanent)
            return
        self.problems[connector] = None
        for unmapped in action.unmapped:
            self.metrics.connector_unmapped.labels(connector, unmapped.split("=")[0]).inc()
        with self.store.transaction() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.seq == seq)
                .values(status="done", attempts=attempts + 1, done_ms=_now_ms())
            )
        self.metrics.connector_writes.labels(connector, "done").inc()

    def _failed(self, seq: int, connector: str, attempts: int, error: str, permanent: bool) -> None:
        give_up = permanent or attempts >= self.settings.outbox_max_attempts
        backoff = min(self.settings.outbox_max_backoff_s, FIRST_BACKOFF_S * 2 ** (attempts - 1))
        with self.store.transaction() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.seq == seq)
                .values(
                    status="failed" if give_up else "pending",
                    attempts=attempts,
                    next_ms=_now_ms() + int(backoff * 1000),
                    last_error=error[:500],
                )
            )
        self.metrics.connector_writes.labels(connector, "failed" if give_up else "retry").inc()
        logger.warning(
            "%s write-back %d %s (try %d): %s",
            connector, seq, "failed for good" if give_up else "will be retried", attempts, error,
        )  # fmt: skip

    def _desk_names(self, desk: HelpDesk) -> dict[str, list[str]]:
        cached = self._names.get(desk.name)
        if cached is not None and time.monotonic() - cached[0] < NAMES_TTL_S:
            return cached[1]
        names = desk.names()
        self._names[desk.name] = (time.monotonic(), names)
        return names

    def stats(self, connector: str) -> ConnectorStats:
        o, d = outbox.c, connector_deliveries.c
        with self.store.reading() as conn:
            counts = {
                status: count
                for status, count in conn.execute(
                    select(o.status, func.count())
                    .where(o.connector == connector)
                    .group_by(o.status)
                )
            }
            error = conn.execute(
                select(o.last_error)
                .where(o.connector == connector, o.last_error.is_not(None))
                .order_by(o.seq.desc())
                .limit(1)
            ).scalar()
            last = conn.execute(
                select(func.max(d.created_ms)).where(d.connector == connector)
            ).scalar()
        return ConnectorStats(
            pending=counts.get("pending", 0),
            done=counts.get("done", 0),
            failed=counts.get("failed", 0),
            last_error=error,
            last_delivery_ms=last,
        )


def _record_delivery(conn: Connection, connector: str, delivery_id: str, now: int) -> bool:
    """Insert a delivery; False when it was seen."""
    # RETURNING tells an insert from a conflict on every database (psycopg's INSERT rowcount is -1).
    inserted = conn.execute(
        insert(conn, connector_deliveries)
        .values(connector=connector, delivery_id=delivery_id, created_ms=now)
        .on_conflict_do_nothing()
        .returning(connector_deliveries.c.delivery_id)
    )
    return inserted.first() is not None


def _link(
    conn: Connection,
    connector: str,
    delivery_id: str,
    ticket_id: str,
    prediction_id: str,
    now: int,
) -> bool:
    """Insert a delivery and its ticket's prediction; False when the delivery was seen."""
    if not _record_delivery(conn, connector, delivery_id, now):
        return False
    values = {"prediction_id": prediction_id, "created_ms": now}
    conn.execute(
        insert(conn, connector_tickets)
        .values(connector=connector, ticket_id=ticket_id, **values)
        .on_conflict_do_update(index_elements=["connector", "ticket_id"], set_=values)
    )
    return True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
