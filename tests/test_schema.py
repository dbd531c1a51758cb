"""The registry's schema has one home (shim/store/registry/tables.py): every way a database gets
its tables (the steps from before Alembic on a new or a first release's SQLite registry, the
Alembic revisions from nothing) must end exactly there, or autogenerate would see a difference."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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
