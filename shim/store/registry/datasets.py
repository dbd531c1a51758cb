"""The uploads' table: each dataset's row (its file is written first) and the upload keys that
make a repeated upload find its dataset."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, delete, select

from shim.store.registry.database import Database, insert
from shim.store.registry.records import DatasetRecord
from shim.store.registry.tables import datasets, upload_keys
from training.files import PRIVATE_FILE, write_atomic


class Datasets:
    def __init__(self, db: Database, directory: Path) -> None:
        self.db, self.directory = db, directory

    def write_file(self, content: bytes, prefix: str = "") -> tuple[str, Path]:
        """Write a new dataset file atomically; returns (dataset id, path). `prefix` names
        where the rows came from (an import's `import-zammad-20240101-`)."""
        dataset_id = prefix + uuid.uuid4().hex[:16]
        path = self.directory / f"{dataset_id}.jsonl"
        write_atomic(path, content, PRIVATE_FILE)
        return dataset_id, path

    def add(
        self,
        record: DatasetRecord,
        replace: bool,
        upload_key: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> list[DatasetRecord]:
        """Commit a dataset row (its file already written); returns the datasets it replaced.
        `also` writes what must commit with it (an import's tickets and cursor)."""
        with self.db.transaction() as conn:
            if also is not None:
                also(conn)
            replaced = self._all(conn) if replace else []
            if replace:
                conn.execute(delete(datasets))
                conn.execute(delete(upload_keys))
            if upload_key is not None:
                conn.execute(
                    insert(conn, upload_keys)
                    .values(key=upload_key, dataset_id=record.id)
                    .on_conflict_do_update(index_elements=["key"], set_={"dataset_id": record.id})
                )
            conn.execute(
                datasets.insert().values(
                    id=record.id,
                    file=record.file.name,
                    format=record.format,
                    bytes=record.bytes,
                    rows=record.rows,
                    heads=json.dumps(record.heads),
                    label_counts=json.dumps(record.label_counts),
                    created_at=record.created_at.isoformat(),
                )
            )
        for old in replaced:
            # Running jobs hold hard links to their data, so removing the file is safe.
            old.file.unlink(missing_ok=True)
        return replaced

    def all(self) -> list[DatasetRecord]:
        """The stored datasets, oldest first."""
        with self.db.reading() as conn:
            return self._all(conn)

    def for_key(self, upload_key: str) -> str | None:
        """The stored dataset an earlier upload with this key created, if it is still there."""
        query = (
            select(upload_keys.c.dataset_id)
            .join(datasets, datasets.c.id == upload_keys.c.dataset_id)
            .where(upload_keys.c.key == upload_key)
        )
        with self.db.reading() as conn:
            return conn.execute(query).scalar()

    def _all(self, conn: Connection) -> list[DatasetRecord]:
        rows = conn.execute(select(datasets).order_by(datasets.c.created_at, datasets.c.id))
        return [
            DatasetRecord(
                id=r.id,
                file=self.directory / r.file,
                format=r.format,
                bytes=r.bytes,
                rows=r.rows,
                heads=json.loads(r.heads),
                label_counts=json.loads(r.label_counts),
                created_at=datetime.fromisoformat(r.created_at),
            )
            for r in rows
        ]
