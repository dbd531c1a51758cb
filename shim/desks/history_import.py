"""History imports: a help desk's closed tickets, with their final queue and priority, into the
training data (docs/connectors.md#history-import).

An import runs in a thread, one per connector at a time. It asks the help desk for one page at a
time (`HelpDesk.history`), maps the help desk's names to model labels (`LabelMap.source`),
validates and cleans the rows exactly as an upload's (`training.text.data.validate`), and stores
each page's rows as a dataset in the same transaction as the page's ticket ids and the cursor of the
next page. So a ticket is stored once (by connector and help-desk id, while its dataset is kept),
and an interrupted import (a failed call, a stop) goes on at its cursor: when it is started again
with the same `since`, or by itself when the service starts again.

With replicas, one of them runs a connector's import (a lease in the registry, renewed after
every page); a replica whose peer stopped during an import resumes it at its cursor within
`replica_sync_s` (shim/api/replica_watch.py calls `resume`).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Connection, delete, select, update

from connectors.base import DESK_HEADS, DeskError, HelpDesk, HistoryPage, HistoryTicket
from connectors.label_map import LabelMap
from shim.errors import Conflict, NotFound
from shim.settings import Settings
from shim.store.registry import DatasetRecord, Store, utcnow
from shim.store.registry.leases import new_holder
from shim.store.registry.tables import connector_imported, connector_imports, datasets
from training.text.data import DEFAULT_MIN_CLASS_EXAMPLES, Columns, DataError, TicketData, validate

imports = connector_imports.c  # its columns, as the queries below name them

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
LEASE_PREFIX = "import:"


class ImportProblem(Exception):
    """The import cannot go on (e.g. the stored data has other label columns)."""


@dataclass(frozen=True)
class ImportState:
    """One import as the registry has it (`ConnectorImportPublic`)."""

    connector: str
    since: date
    status: str
    cursor: str | None
    page_size: int
    pages: int
    imported: int
    duplicates: int
    skipped: int
    resumed: bool
    error: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ImportState:
        (connector, since, status, cursor, page_size, pages, imported, duplicates, skipped,
         resumed, error, started, updated, finished) = row  # fmt: skip
        return cls(
            connector=connector,
            since=date.fromisoformat(since),
            status=status,
            cursor=cursor,
            page_size=page_size,
            pages=pages,
            imported=imported,
            duplicates=duplicates,
            skipped=skipped,
            resumed=bool(resumed),
            error=error,
            started_at=datetime.fromisoformat(started),
            updated_at=datetime.fromisoformat(updated),
            finished_at=datetime.fromisoformat(finished) if finished else None,
        )


@dataclass(frozen=True)
class PageRows:
    """What one page brings: validated rows and the help-desk ids they came from."""

    data: TicketData | None
    ticket_ids: list[str]
    duplicates: int
    skipped: int


class HistoryImports:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        desks: dict[str, HelpDesk],
        label_map: LabelMap,
        replica: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.desks = desks
        self.label_map = label_map
        self.replica = replica or new_holder()
        # Renewed after every page: a page's call may take the connector's whole timeout.
        self.lease_ms = int((settings.training_lease_s + 2 * settings.connector_timeout_s) * 1000)
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # -- the API side -------------------------------------------------------------------------

    def start(self, connector: str, since: date, page_size: int) -> ImportState:
        """Start (or resume at its cursor) the import of `connector` since `since`; 404 for a
        connector that is not configured, 409 while one of it runs."""
        desk = self.desks.get(connector)
        if desk is None:
            raise NotFound(f"the {connector} connector is not configured", code="connector_off")
        with self._lock:
            running = self._running(connector)
            if running is not None:
                raise Conflict(
                    f"an import of {connector} is already running (since "
                    f"{running.since.isoformat()}, {running.pages} page(s) read)",
                    {"since": running.since.isoformat(), "pages": running.pages},
                    code="import_running",
                )
            if not self._take(connector):
                elsewhere = self.status(connector)
                raise Conflict(
                    f"an import of {connector} is running on another replica (since "
                    f"{elsewhere.since.isoformat()}, {elsewhere.pages} page(s) read)",
                    {"since": elsewhere.since.isoformat(), "pages": elsewhere.pages},
                    code="import_running",
                )
            try:
                state = self._begin(connector, since.isoformat(), page_size)
            except BaseException:
                self._give_back(connector)
                raise
            self._launch(desk, state)
        return state

    def status(self, connector: str) -> ImportState:
        """The running import of `connector`, else its latest; 404 when there is none."""
        if connector not in self.desks:
            raise NotFound(f"the {connector} connector is not configured", code="connector_off")
        query = (
            select(connector_imports)
            .where(imports.connector == connector)
            .order_by((imports.status == "running").desc(), imports.updated_at.desc())
            .limit(1)
        )
        with self.store.reading() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no import of {connector} yet", code="no_import")
        return ImportState.from_row(row)

    # -- the service's start and stop ---------------------------------------------------------

    def resume(self) -> None:
        """Go on with the imports a stopped service (or replica) left running, each at its
        cursor; one that another live replica runs is left to it."""
        query = (
            select(connector_imports)
            .where(imports.status == "running")
            .order_by(imports.updated_at.desc())
        )
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        for state in map(ImportState.from_row, rows):
            # Under the lock a start here cannot slip in between the look and the launch.
            with self._lock:
                thread = self._threads.get(state.connector)
                if thread is not None and thread.is_alive():  # runs here (its newest, if several)
                    continue
                if not self._take(state.connector):  # another replica runs it
                    continue
                if not self._still_running(state):  # it ended since the look above
                    self._give_back(state.connector)
                    continue
                desk = self.desks.get(state.connector)
                if desk is None:
                    self._fail(state, f"the {state.connector} connector is not configured any more")
                    self._give_back(state.connector)
                    continue
                logger.info("%s import since %s resumed", state.connector, state.since)
                self._launch(
                    desk, self._begin(state.connector, state.since.isoformat(), state.page_size)
                )

    def _still_running(self, state: ImportState) -> bool:
        query = select(imports.status).where(_row(state.connector, state.since.isoformat()))
        with self.store.reading() as conn:
            return conn.execute(query).scalar() == "running"

    def stop(self) -> None:
        """Stop after the page in progress; a stopped import stays running in the registry and
        goes on at the next start."""
        self._stop.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=self.settings.connector_timeout_s + 5)

    # -- the import itself --------------------------------------------------------------------

    def _running(self, connector: str) -> ImportState | None:
        thread = self._threads.get(connector)
        if thread is None or not thread.is_alive():
            return None
        query = select(connector_imports).where(
            imports.connector == connector, imports.status == "running"
        )
        with self.store.reading() as conn:
            row = conn.execute(query).first()
        return None if row is None else ImportState.from_row(row)

    def _begin(self, connector: str, since: str, page_size: int) -> ImportState:
        """Mark the import running: at its cursor when one was interrupted, else afresh (a
        finished one starts again from the first page, its tickets count as duplicates)."""
        now = utcnow().isoformat()
        this = _row(connector, since)
        with self.store.transaction() as conn:
            # One import per connector runs: another one left running is over.
            conn.execute(
                update(connector_imports)
                .where(
                    imports.connector == connector,
                    imports.since != since,
                    imports.status == "running",
                )
                .values(
                    status="failed",
                    error="interrupted: another import of this connector started",
                    updated_at=now,
                    finished_at=now,
                )
            )
            row = conn.execute(select(connector_imports).where(this)).first()
            earlier = None if row is None else ImportState.from_row(row)
            if earlier is not None and earlier.status != "done" and earlier.cursor is not None:
                conn.execute(
                    update(connector_imports)
                    .where(this)
                    .values(
                        status="running",
                        page_size=page_size,
                        resumed=1,
                        error=None,
                        updated_at=now,
                        finished_at=None,
                    )
                )
            else:
                conn.execute(delete(connector_imports).where(this))
                conn.execute(
                    connector_imports.insert().values(
                        connector=connector,
                        since=since,
                        status="running",
                        page_size=page_size,
                        pages=0,
                        imported=0,
                        duplicates=0,
                        skipped=0,
                        resumed=0,
                        started_at=now,
                        updated_at=now,
                    )
                )
            row = conn.execute(select(connector_imports).where(this)).one()
        return ImportState.from_row(row)

    def _take(self, connector: str) -> bool:
        return self.store.leases.take_if_free(
            LEASE_PREFIX + connector, self.replica, None, self.lease_ms
        )

    def _give_back(self, connector: str) -> None:
        self.store.leases.give_back(LEASE_PREFIX + connector, self.replica)

    def _launch(self, desk: HelpDesk, state: ImportState) -> None:
        thread = threading.Thread(
            target=self._run, args=(desk, state), name=f"import-{state.connector}", daemon=True
        )
        self._threads[state.connector] = thread
        thread.start()

    def _run(self, desk: HelpDesk, state: ImportState) -> None:
        try:
            self._pages(desk, state)
        finally:  # a stopped import, still running in the registry, is free to resume
            self._give_back(state.connector)

    def _pages(self, desk: HelpDesk, state: ImportState) -> None:
        since, cursor = state.since.isoformat(), state.cursor
        while not self._stop.is_set():
            try:
                page = desk.history(since, cursor, state.page_size)
                if page.cursor is not None and page.cursor == cursor:
                    raise ImportProblem(f"the help desk's cursor did not move past {cursor!r}")
                self._store_page(state, page)
            except (DeskError, ImportProblem) as exc:
                if not self._stop.is_set():  # a call cut short by a stop is resumed instead
                    self._fail(state, str(exc))
                return
            except Exception as exc:  # the import ends with a reason, never silently
                logger.exception("%s import since %s failed", state.connector, since)
                self._fail(state, f"unexpected error: {type(exc).__name__}: {exc}")
                return
            if page.cursor is None:
                logger.info("%s import since %s done", state.connector, since)
                return
            cursor = page.cursor
            lease = LEASE_PREFIX + state.connector
            if not self.store.leases.renew(lease, self.replica, self.lease_ms):
                logger.warning("%s import: another replica took it over", state.connector)
                return

    def _store_page(self, state: ImportState, page: HistoryPage) -> None:
        """The page's new rows as a dataset, its tickets, the next cursor and the counts, in one
        transaction."""
        with self.store.upload_lock:
            heads = self._heads()
        rows = self._rows(state.connector, page.tickets, heads)
        done = page.cursor is None

        def record(conn: Connection, dataset_id: str | None = None) -> None:
            if dataset_id is not None and rows.ticket_ids:
                # Imported before into a dataset since replaced: now in this one.
                conn.execute(
                    delete(connector_imported).where(
                        connector_imported.c.connector == state.connector,
                        connector_imported.c.ticket_id.in_(rows.ticket_ids),
                    )
                )
                conn.execute(
                    connector_imported.insert(),
                    [
                        {"connector": state.connector, "ticket_id": t, "dataset_id": dataset_id}
                        for t in rows.ticket_ids
                    ],
                )
            now = utcnow().isoformat()
            conn.execute(
                update(connector_imports)
                .where(_row(state.connector, state.since.isoformat()))
                .values(
                    cursor=page.cursor,
                    pages=imports.pages + 1,
                    imported=imports.imported + len(rows.ticket_ids),
                    duplicates=imports.duplicates + rows.duplicates,
                    skipped=imports.skipped + rows.skipped,
                    status="done" if done else "running",
                    updated_at=now,
                    finished_at=now if done else None,
                )
            )

        if rows.data is None:
            with self.store.transaction() as conn:
                record(conn)
            return
        frame = rows.data.frame[["text", *heads]]
        content = "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in frame.to_dict("records")
        ).encode("utf-8")
        prefix = f"import-{state.connector}-{state.since.strftime('%Y%m%d')}-"
        dataset_id, path = self.store.datasets.write_file(content, prefix)
        dataset = DatasetRecord(
            id=dataset_id,
            file=path,
            format="jsonl",
            bytes=len(content),
            rows=len(frame),
            heads=heads,
            label_counts=rows.data.report.label_counts,
            created_at=utcnow(),
        )
        try:
            with self.store.upload_lock:
                if self._heads() != heads:  # an upload replaced the data meanwhile
                    raise ImportProblem("the stored data's label columns changed: start again")
                self.store.datasets.add(
                    dataset, replace=False, also=lambda db: record(db, dataset_id)
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _heads(self) -> list[str]:
        """The stored data's label columns (queue and priority when none is stored): an import
        brings a help desk's queue and priority, so the stored data may have no other."""
        stored = self.store.datasets.all()
        heads = stored[0].heads if stored else list(DESK_HEADS)
        if not set(heads) <= set(DESK_HEADS):
            raise ImportProblem(
                f"the stored training data has the label columns {heads}, a help desk's "
                f"tickets only {list(DESK_HEADS)}: replace the stored data, or import into "
                "a service whose data has these"
            )
        return heads

    def _rows(self, connector: str, tickets: list[HistoryTicket], heads: list[str]) -> PageRows:
        """The page's tickets not stored before, as validated rows; the others counted."""
        unique = list({t.ticket_id: t for t in tickets}.values())
        before = self._imported(connector, [t.ticket_id for t in unique])
        fresh = [t for t in unique if t.ticket_id not in before]
        duplicates = len(tickets) - len(fresh)
        if not fresh:
            return PageRows(None, [], duplicates, 0)
        table = pd.DataFrame(
            {
                "subject": [t.subject for t in fresh],
                "body": [t.body for t in fresh],
                "content_type": [t.content_type for t in fresh],
                **{head: [self._label(head, t) for t in fresh] for head in heads},
            }
        )
        try:
            data = validate(
                table,
                f"{connector} import",
                Columns(labels=tuple(heads)),
                int(self.settings.train_defaults.get("min_class_examples",
                                                     DEFAULT_MIN_CLASS_EXAMPLES)),
                self.settings.max_ticket_chars,
                self.settings.cleaning(),
                min_labels=1,  # a page may hold a single queue
            )  # fmt: skip
        except DataError:  # no usable row on this page
            return PageRows(None, [], duplicates, len(fresh))
        ids = [fresh[row - 1].ticket_id for row in data.frame["row"]]
        return PageRows(data, ids, duplicates, len(fresh) - len(ids))

    def _label(self, head: str, ticket: HistoryTicket) -> str:
        name = getattr(ticket, head)
        return self.label_map.source(head, name) if name else ""

    def _imported(self, connector: str, ticket_ids: list[str]) -> set[str]:
        """Those of `ticket_ids` stored before, in a dataset still kept."""
        if not ticket_ids:
            return set()
        i = connector_imported.c
        query = select(i.ticket_id).where(
            i.connector == connector,
            i.ticket_id.in_(ticket_ids),
            i.dataset_id.in_(select(datasets.c.id)),
        )
        with self.store.reading() as conn:
            return set(conn.execute(query).scalars())

    def _fail(self, state: ImportState, error: str) -> None:
        logger.warning("%s import since %s failed: %s", state.connector, state.since, error)
        now = utcnow().isoformat()
        with self.store.transaction() as conn:
            conn.execute(
                update(connector_imports)
                .where(_row(state.connector, state.since.isoformat()))
                .values(
                    status="failed", error=error[:MAX_ERROR_CHARS], updated_at=now, finished_at=now
                )
            )


def _row(connector: str, since: str) -> ColumnElement[bool]:
    """The registry's row of one import (`since` as YYYY-MM-DD)."""
    return (imports.connector == connector) & (imports.since == since)
