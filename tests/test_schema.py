"""The registry's schema has one home (shim/store/registry/tables.py): every way a database gets
its tables (the steps from before Alembic on a new or a first release's SQLite registry, the
Alembic revisions from nothing) must end exactly there, or autogenerate would see a difference."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cli_run import ticketserve
from postgres_server import PostgresServer
from sqlalchemy import create_engine
from test_upgrade import FIRST_RELEASE_SCHEMA

from shim.store.registry import SCHEMA_VERSION, Store
from shim.store.registry.database import _alembic_config, schema_differences, sqlite_url


def differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return schema_differences(conn)
    finally:
        engine.dispose()


def test_revisions_are_numbered_by_schema_version_and_end_at_this_releases() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        script = ScriptDirectory.from_config(_alembic_config(conn))
        revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [str(v) for v in range(8, SCHEMA_VERSION + 1)]
    assert script.get_current_head() == str(SCHEMA_VERSION)


def test_a_new_sqlite_registry_matches_the_tables(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert differences(sqlite_url(store.db_path)) == []
    with store.reading() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == str(SCHEMA_VERSION)


def test_a_first_release_registry_upgraded_matches_the_tables(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite3"
    db = sqlite3.connect(registry)
    try:
        db.executescript(FIRST_RELEASE_SCHEMA)
    finally:
        db.close()
    assert differences(sqlite_url(registry)) != []  # the check sees a missing table
    Store(tmp_path)
    assert differences(sqlite_url(registry)) == []


def test_the_alembic_revisions_from_nothing_match_the_tables(tmp_path: Path) -> None:
    """How a database other than SQLite gets its tables."""
    engine = create_engine(sqlite_url(tmp_path / "alembic.sqlite3"))
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
    engine.dispose()
    assert differences(sqlite_url(tmp_path / "alembic.sqlite3")) == []


def test_a_postgresql_registry_matches_the_tables(tmp_path: Path, postgres: PostgresServer) -> None:
    """PostgreSQL gets its tables from the Alembic revisions, from nothing."""
    url = postgres.database()
    store = Store(tmp_path, url)
    assert differences(url) == []
    with store.reading() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == str(SCHEMA_VERSION)
    store.close()
    assert Store(tmp_path, url).versions.all() == []  # the next start: nothing to do


def test_db_upgrade_creates_a_postgresql_registry_and_backup_sends_to_pg_dump(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    env = {"TICKETSERVE_DATABASE_URL": url}
    upgrade = ("db", "upgrade", "--data-dir", str(tmp_path))
    first = ticketserve(*upgrade, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"upgraded the registry {url}: schema version 0 -> {SCHEMA_VERSION}\n"
    assert differences(url) == []
    again = ticketserve(*upgrade, env=env)
    assert again.stdout.endswith(f"has schema version {SCHEMA_VERSION}, this release's\n")
    backup = ("backup", str(tmp_path / "b.tar.gz"), "--data-dir", str(tmp_path))
    refused = ticketserve(*backup, env=env)
    assert refused.returncode == 1 and "pg_dump" in refused.stderr
    assert not (tmp_path / "b.tar.gz").exists()


def test_replicas_starting_together_on_one_postgresql_all_open_it(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Each creates or finds the tables; the upgrade lock keeps two from creating them at once."""
    url = postgres.database()
    failures: list[str] = []

    def start(replica: int) -> None:
        try:
            Store(tmp_path / f"replica{replica}", url).close()
        except Exception as exc:  # recorded, so the test fails with it
            failures.append(f"replica {replica}: {exc!r}")

    replicas = [threading.Thread(target=start, args=(i,), daemon=True) for i in range(4)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(timeout=60)
    assert not [r for r in replicas if r.is_alive()], "a replica is stuck in its start"
    assert failures == []
    assert differences(url) == []
