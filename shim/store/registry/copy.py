"""Copy a registry into another database (`ticketserve db copy --to URL`): every table, row for
row, into an empty registry of the same schema, in one transaction, so the target holds all of
it or nothing. Moving from SQLite to PostgreSQL is the use: the data directory's files stay."""

from __future__ import annotations

from sqlalchemy import func, select, text

from shim.store.registry.database import Database, RegistryError
from shim.store.registry.tables import metadata

CHUNK = 1000  # rows per INSERT: bounded memory, whatever the table's size


def copy_registry(source: Database, target: Database) -> dict[str, int]:
    """Copy `source` (brought to this release's schema first) into `target`, which must hold
    no rows; returns the rows copied per table."""
    source.upgrade()
    target.upgrade()
    copied: dict[str, int] = {}
    with source.reading() as reading, target.transaction() as writing:
        full = [
            table.name
            for table in metadata.sorted_tables
            if writing.execute(select(func.count()).select_from(table)).scalar_one()
        ]
        if full:
            raise RegistryError(
                f"the registry {target.where()} is not empty (rows in {', '.join(full)}): copy "
                "into a new database"
            )
        for table in metadata.sorted_tables:
            copied[table.name] = 0
            rows = reading.execute(select(table)).mappings()
            while chunk := rows.fetchmany(CHUNK):
                writing.execute(table.insert(), [dict(row) for row in chunk])
                copied[table.name] += len(chunk)
            if writing.dialect.name == "postgresql" and "seq" in table.c:
                # Row numbers go on after the copied ones, not from 1.
                writing.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'seq'), "
                        f"COALESCE((SELECT MAX(seq) FROM {table.name}), 0) + 1, false)"
                    )
                )
    return copied
