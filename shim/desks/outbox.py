"""The durable outbox of help-desk write-backs, and its worker.

A webhook's answer, the desk ticket's prediction and the write it asks for are committed in one
transaction before the webhook is answered (`accept`); a worker thread then delivers due writes
(`deliver_due`), retrying timeouts and 5xx answers with exponential back-off across restarts,
and giving up on a 4xx with its reason. A delivery id is accepted once: a redelivered webhook
writes nothing twice. Delivery is at least once: a crash between a write and its record repeats
that write after the restart.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from connectors.base import DeskError, HelpDesk, Mode
from connectors.label_map import LabelMap
from connectors.writeback import plan_write
from shim.metrics import ApiMetrics
from shim.settings import Settings
from shim.store.registry import Store

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
        with self.store.reading() as db:
            row = db.execute(
                "SELECT 1 FROM connector_deliveries WHERE connector = ? AND delivery_id = ?",
                (connector, delivery_id),
            ).fetchone()
        return row is not None

    def accept(
        self, connector: str, delivery_id: str, ticket_id: str, mode: Mode, answer: dict[str, Any]
    ) -> bool:
        """Record a delivery, its ticket's prediction and its write, in one transaction; False
        (and nothing stored) when this delivery was accepted before."""
        now = _now_ms()
        with self.store.transaction() as db:
            if not _link(db, connector, delivery_id, ticket_id, answer["prediction_id"], now):
                return False
            db.execute(
                "INSERT INTO outbox (connector, ticket_id, mode, answer, status, attempts, "
                "next_ms, created_ms) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
                (connector, ticket_id, mode, json.dumps(answer), now, now),
            )
        self._wake.set()
        return True

    def link(self, connector: str, delivery_id: str, ticket_id: str, prediction_id: str) -> bool:
        """Record a delivery and its ticket's prediction, with no write: the help desk applies
        the answer itself (Znuny's invoker); False (and nothing stored) when seen before."""
        with self.store.transaction() as db:
            return _link(db, connector, delivery_id, ticket_id, prediction_id, _now_ms())

    def record_delivery(self, connector: str, delivery_id: str) -> bool:
        """Remember a delivery that asks for no write (an agent's article); False if seen."""
        with self.store.transaction() as db:
            return bool(
                db.execute(
                    "INSERT OR IGNORE INTO connector_deliveries (connector, delivery_id, "
                    "created_ms) VALUES (?, ?, ?)",
                    (connector, delivery_id, _now_ms()),
                ).rowcount
            )

    def prediction_for(self, connector: str, ticket_id: str) -> str | None:
        with self.store.reading() as db:
            row = db.execute(
                "SELECT prediction_id FROM connector_tickets WHERE connector = ? AND ticket_id = ?",
                (connector, ticket_id),
            ).fetchone()
        return None if row is None else str(row[0])

    def cursor(self, connector: str, name: str) -> str | None:
        """Where polling `connector` for `name` (tickets, changes) goes on from."""
        with self.store.reading() as db:
            row = db.execute(
                "SELECT value FROM connector_cursors WHERE connector = ? AND name = ?",
                (connector, name),
            ).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, connector: str, name: str, value: str) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO connector_cursors (connector, name, value, updated_ms) "
                "VALUES (?, ?, ?, ?)",
                (connector, name, value, _now_ms()),
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
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT seq, connector, ticket_id, mode, answer, attempts FROM outbox "
                "WHERE status = 'pending' AND next_ms <= ? ORDER BY seq LIMIT ?",
                (now, BATCH),
            ).fetchall()
        for seq, connector, ticket_id, mode, answer, attempts in rows:
            if self._stop.is_set():
                break
            self._deliver(seq, connector, ticket_id, mode, json.loads(answer), attempts)
        return len(rows)

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
        with self.store.transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'done', attempts = ?, done_ms = ? WHERE seq = ?",
                (attempts + 1, _now_ms(), seq),
            )
        self.metrics.connector_writes.labels(connector, "done").inc()

    def _failed(self, seq: int, connector: str, attempts: int, error: str, permanent: bool) -> None:
        give_up = permanent or attempts >= self.settings.outbox_max_attempts
        backoff = min(self.settings.outbox_max_backoff_s, FIRST_BACKOFF_S * 2 ** (attempts - 1))
        with self.store.transaction() as db:
            db.execute(
                "UPDATE outbox SET status = ?, attempts = ?, next_ms = ?, last_error = ? "
                "WHERE seq = ?",
                ("failed" if give_up else "pending", attempts,
                 _now_ms() + int(backoff * 1000), error[:500], seq),
            )  # fmt: skip
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
        with self.store.reading() as db:
            counts = dict(
                db.execute(
                    "SELECT status, COUNT(*) FROM outbox WHERE connector = ? GROUP BY status",
                    (connector,),
                ).fetchall()
            )
            error = db.execute(
                "SELECT last_error FROM outbox WHERE connector = ? AND last_error IS NOT NULL "
                "ORDER BY seq DESC LIMIT 1",
                (connector,),
            ).fetchone()
            last = db.execute(
                "SELECT MAX(created_ms) FROM connector_deliveries WHERE connector = ?",
                (connector,),
            ).fetchone()
        return ConnectorStats(
            pending=counts.get("pending", 0),
            done=counts.get("done", 0),
            failed=counts.get("failed", 0),
            last_error=error[0] if error else None,
            last_delivery_ms=last[0] if last else None,
        )


def _link(
    db: sqlite3.Connection,
    connector: str,
    delivery_id: str,
    ticket_id: str,
    prediction_id: str,
    now: int,
) -> bool:
    """Insert a delivery and its ticket's prediction; False when the delivery was seen."""
    inserted = db.execute(
        "INSERT OR IGNORE INTO connector_deliveries (connector, delivery_id, created_ms) "
        "VALUES (?, ?, ?)",
        (connector, delivery_id, now),
    ).rowcount
    if inserted:
        db.execute(
            "INSERT OR REPLACE INTO connector_tickets (connector, ticket_id, prediction_id, "
            "created_ms) VALUES (?, ?, ?, ?)",
            (connector, ticket_id, prediction_id, now),
        )
    return bool(inserted)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
