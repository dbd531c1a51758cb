"""The registry's database: one SQLAlchemy engine, short transactions, and the schema brought to
this release's when it opens.

SQLite in the data directory is the default (WAL, `synchronous=FULL` for records, `NORMAL` for the
predictions log; writes take the lock at BEGIN, so a read-then-write never meets a busy upgrade).
The schema is Alembic's (`migrations/`), whose revisions are named by schema version: the baseline
is version 8, the last of the steps a SQLite registry went through before Alembic
(`shim.store.registry.legacy`). A SQLite registry still runs those steps first (a new one all of
them), then is stamped at the baseline; another database starts from the baseline revision. SQLite's
`user_version` keeps the schema version too, so a release from before Alembic refuses a newer
registry instead of opening it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Float, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from shim.store.registry.legacy import VERSION as LEGACY_VERSION
from shim.store.registry.legacy import schema_version
from shim.store.registry.legacy import upgrade as upgrade_legacy
from shim.store.registry.tables import metadata
from training.errors import UserError

# Alembic narrates its start-up and each step at INFO; the Store logs one line when the schema
# version changes. Set before Alembic is imported (in `upgrade`: only there is it needed).
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (tests/test_schema.py holds them equal).
SCHEMA_VERSION = 10
SQLITE_FILE = "registry.sqlite3"
# PostgreSQL advisory lock held while the schema is upgraded (any number; ours alone).
UPGRADE_LOCK = 0x7469636B


class RegistryError(UserError):
    """The registry cannot be used by this release (e.g. it was written by a newer one)."""


def sqlite_url(path: Path) -> str:
    return str(URL.create("sqlite", database=str(path)))


class Database:
    """An engine on the registry's database; safe to use from several threads."""

    def __init__(self, url: str, root: Path, name: str | Path | None = None) -> None:
        """`url` is a SQLAlchemy URL; `root` is the data directory stored paths refer to; `name`
        is what errors call the registry (default: its file, or its URL without password)."""
        self.url = make_url(url)
        self.root = root
        self.name = str(name) if name is not None else None
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = create_engine(self.url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)

    def where(self) -> str:
        """The database as an error message names it (no password)."""
        if self.name is not None:
            return self.name
        return str(self.url.database) if self.is_sqlite else self.url.render_as_string()

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Connection]:
        """One write transaction, committed when the block ends. `durable=False` (SQLite): still
        atomic, but the last commits may be lost on a power cut (a log, not a record)."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                driver = conn.connection.driver_connection
                assert driver is not None
                driver.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with conn.begin():
                if not durable and not self.is_sqlite:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction: its queries see one state of the registry."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def upgrade(self) -> int:
        """Bring the schema to SCHEMA_VERSION; returns the version it had (0: a new registry)."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        found = self._upgrade_legacy() if self.is_sqlite else None
        with self.transaction() as conn:
            if not self.is_sqlite:  # replicas starting together upgrade one after the other
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK})")
            config = _alembic_config(conn)
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None:
                try:
                    ScriptDirectory.from_config(config).get_revision(current)
                except CommandError:
                    raise self._newer(current) from None
                found = max(found or 0, int(current))
            elif self.is_sqlite:  # built by the steps from before Alembic: the baseline
                command.stamp(config, str(LEGACY_VERSION))
            command.upgrade(config, "head")
            if self.is_sqlite:
                conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return found or 0

    def _upgrade_legacy(self) -> int:
        """Run the steps from before Alembic that a SQLite registry lacks (all of them for a new
        one, so every SQLite registry has the same tables, to the letter); returns its schema
        version (0: a new registry)."""
        db = sqlite3.connect(self.url.database or "", timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            found = schema_version(db)
            if found > SCHEMA_VERSION:
                raise self._newer(found)
            if found < LEGACY_VERSION:
                upgrade_legacy(db, self.root)
            return found
        finally:
            db.close()

    def _newer(self, found: object) -> RegistryError:
        return RegistryError(
            f"the registry {self.where()} has schema version {found}, newer than this release "
            f"knows ({SCHEMA_VERSION}): run the newer ticketserve, or restore a backup made with "
            "this one"
        )

    def close(self) -> None:
        self.engine.dispose()


def schema_differences(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate finds between the database and `tables` (empty: they agree),
    less two ways SQLite reflects a column that are not differences: a primary key column may
    read as nullable, and a float column as REAL."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def same_type(context: Any, inspected: Any, declared: Any, *_: Any) -> bool | None:
        floats = isinstance(inspected.type, Float) and isinstance(declared.type, Float)
        return False if floats else None  # None: Alembic's own comparison

    context = MigrationContext.configure(conn, opts={"compare_type": same_type})
    found = []
    for change in compare_metadata(context, metadata):
        steps = change if isinstance(change, list) else [change]
        kept = [
            step
            for step in steps
            if not (
                conn.dialect.name == "sqlite"
                and step[0] == "modify_nullable"
                and metadata.tables[step[2]].c[step[3]].primary_key
            )
        ]
        if kept:
            found.append(kept)
    return found


def insert(conn: Connection, table: Table) -> Any:
    """An INSERT with ON CONFLICT clauses (`on_conflict_do_nothing`, `on_conflict_do_update`),
    in the connection's dialect."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def _sqlite_connect(driver: sqlite3.Connection, _: object) -> None:
    # The transactions are ours (BEGIN in _sqlite_begin), not the driver's implicit ones.
    driver.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))
