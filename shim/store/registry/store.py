"""The Store: the registry's database and the files it names under the data directory, one
object per concern (`store.datasets`, `.jobs`, `.versions`, `.predictions`, `.feedback`,
`.quality`, `.leases`)."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import Connection

from shim.store.registry.classify_jobs import ClassifyJobs
from shim.store.registry.database import SCHEMA_VERSION, SQLITE_FILE, Database, sqlite_url
from shim.store.registry.datasets import Datasets
from shim.store.registry.feedback import FeedbackRows
from shim.store.registry.jobs import Jobs
from shim.store.registry.leases import Leases
from shim.store.registry.predictions import Predictions
from shim.store.registry.quality import Quality
from shim.store.registry.versions import Versions
from training.files import PRIVATE_FILE

PRIVATE_DIR = 0o700

logger = logging.getLogger(__name__)


class Store:
    """The registry plus the files it points to; safe to use from several threads."""

    def __init__(
        self,
        data_dir: str | Path,
        database_url: str | None = None,
        shared_dir: str | Path | None = None,
    ) -> None:
        """`database_url`: the registry's database (None: SQLite in the data directory);
        `shared_dir`: where uploads, model directories and archives go, on a volume every
        replica mounts (None: the data directory). Paths in the registry are relative to it."""
        self.root = Path(data_dir).resolve()
        self.shared = Path(shared_dir).resolve() if shared_dir is not None else self.root
        for private in {self.root, self.shared}:
            private.mkdir(parents=True, exist_ok=True)
            # Only the service's user may enter: the files below hold tickets, models and keys.
            private.chmod(PRIVATE_DIR)
        self.datasets_dir = self.shared / "datasets"
        self.jobs_dir = self.root / "jobs"
        self.models_dir = self.shared / "models"
        self.model_store = self.shared / "model_store"
        self.classify_jobs_dir = self.shared / "classify_jobs"
        for directory in (
            self.datasets_dir, self.jobs_dir, self.models_dir, self.model_store,
            self.classify_jobs_dir,
        ):  # fmt: skip
            directory.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / SQLITE_FILE
        self.db = Database(database_url or sqlite_url(self.db_path), self.root)
        old = self.db.upgrade()
        if old < SCHEMA_VERSION:
            logger.info("registry schema version %d -> %d", old, SCHEMA_VERSION)
        if self.db.is_sqlite:
            Path(str(self.db.url.database)).chmod(PRIVATE_FILE)
        # Held by uploads around "check the stored heads, then add": two never interleave.
        self.upload_lock = threading.Lock()
        self.datasets = Datasets(self.db, self.datasets_dir)
        self.jobs = Jobs(self.db)
        self.versions = Versions(self.db, self.shared)
        self.predictions = Predictions(self.db)
        self.feedback = FeedbackRows(self.db)
        self.quality = Quality(self.db)
        self.leases = Leases(self.db)
        self.classify_jobs = ClassifyJobs(self.db)

    def transaction(self, durable: bool = True) -> AbstractContextManager[Connection]:
        """One write transaction, for the modules that keep their own tables here
        (shim/desks/outbox.py, shim/desks/history_import.py)."""
        return self.db.transaction(durable)

    def reading(self) -> AbstractContextManager[Connection]:
        """A read transaction."""
        return self.db.reading()

    def remove_orphans(self, min_age_s: float = 0) -> list[Path]:
        """Delete what a crash left half-done: unreferenced datasets, model dirs and archives
        not changed for `min_age_s` seconds.

        Call only while no upload or training job runs here (at start-up); with replicas on
        one shared directory, give a `min_age_s` longer than an upload or a publication takes
        on another replica.
        """
        versions = self.versions.all()
        keep = {d.file for d in self.datasets.all()}
        keep |= {v.model_dir.resolve() for v in versions} | {v.archive.resolve() for v in versions}
        before = time.time() - min_age_s
        return [
            _remove(path)
            for directory in (self.datasets_dir, self.models_dir, self.model_store)
            for path in directory.iterdir()
            if path.resolve() not in keep and path.lstat().st_mtime <= before
        ]

    def close(self) -> None:
        self.db.close()


def _remove(path: Path) -> Path:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return path
