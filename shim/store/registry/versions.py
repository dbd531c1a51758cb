"""The model versions' table, the default version and the version numbers handed out (never
reused, even after a delete)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from shim.errors import NotFound
from shim.store.registry.database import Database
from shim.store.registry.meta import get_meta, set_meta
from shim.store.registry.records import VersionRecord, stored_path
from shim.store.registry.tables import versions

DEFAULT = "default_version"
LAST = "last_version"


class Versions:
    def __init__(self, db: Database, root: Path) -> None:
        self.db, self.root = db, root

    def reserve(self) -> int:
        """Reserve a version number."""
        with self.db.transaction() as conn:
            last = get_meta(conn, LAST, lock=True)
            top = conn.execute(select(func.max(versions.c.version))).scalar() or 0
            version = max(int(last or 0), top) + 1
            set_meta(conn, LAST, str(version))
        return version

    def add(self, record: VersionRecord, make_default: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                versions.insert().values(
                    version=record.version,
                    job_id=record.job_id,
                    created_at=record.created_at.isoformat(),
                    model_dir=stored_path(self.root, record.model_dir),
                    archive=stored_path(self.root, record.archive),
                    metrics=json.dumps(record.metrics),
                    score=record.score,
                    data_rows=record.data_rows,
                )
            )
            if make_default:
                set_meta(conn, DEFAULT, str(record.version))

    def all(self) -> list[VersionRecord]:
        with self.db.reading() as conn:
            rows = conn.execute(select(versions).order_by(versions.c.version))
            return [self._record(r) for r in rows]

    def get(self, version: int) -> VersionRecord:
        with self.db.reading() as conn:
            row = conn.execute(select(versions).where(versions.c.version == version)).first()
        if row is None:
            raise NotFound(f"no model version {version}", code="version_not_found")
        return self._record(row)

    def default(self) -> int | None:
        with self.db.reading() as conn:
            value = get_meta(conn, DEFAULT)
        return int(value) if value is not None else None

    def set_default(self, version: int | None) -> None:
        with self.db.transaction() as conn:
            set_meta(conn, DEFAULT, None if version is None else str(version))

    def delete(self, version: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(delete(versions).where(versions.c.version == version))

    def _record(self, row: Any) -> VersionRecord:
        return VersionRecord(
            version=row.version,
            job_id=row.job_id,
            created_at=datetime.fromisoformat(row.created_at),
            model_dir=self.root / row.model_dir,  # an absolute path stays as it is
            archive=self.root / row.archive,
            metrics=json.loads(row.metrics),
            score=row.score,
            data_rows=row.data_rows,
        )
