"""The registry's named values (`meta`): the default version, the last version number handed out,
how far the predictions log was pruned."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from shim.store.registry.database import insert
from shim.store.registry.tables import meta


def get_meta(conn: Connection, key: str, lock: bool = False) -> str | None:
    """A value, or None; `lock` holds its row until the transaction ends (PostgreSQL; SQLite's
    write transactions hold the whole database)."""
    query = select(meta.c.value).where(meta.c.key == key)
    return conn.execute(query.with_for_update() if lock else query).scalar()


def set_meta(conn: Connection, key: str, value: str | None) -> None:
    """Set a value (None removes it)."""
    if value is None:
        conn.execute(delete(meta).where(meta.c.key == key))
        return
    conn.execute(
        insert(conn, meta)
        .values(key=key, value=value)
        .on_conflict_do_update(index_elements=["key"], set_={"value": value})
    )
