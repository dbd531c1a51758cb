"""The registry under the data directory: SQLite for datasets, jobs and versions, plus files.

Layout of the data directory:

    registry.sqlite3        datasets, jobs, versions, the default version, the predictions
                            log, the agents' feedback, and the help-desk connectors' deliveries,
                            write-back outbox and history imports
    datasets/<id>.jsonl     one upload's normalised tickets (`text` + one key per head)
    jobs/<id>/              a job's spec, its data (hard links), its log, its model while training
    models/v<N>/            a published model directory
    model_store/            the .mar archives TorchServe loads

A dataset file is written to a temporary name, fsynced and renamed before its row is committed,
so a crash never shows half a dataset; an orphan file left by a crash is removed at start-up.
SQLite runs in WAL mode with synchronous=FULL: a committed upload survives a kill.

The registry's schema version is SQLite's `user_version`. Opening a Store migrates an older
registry forward through `MIGRATIONS`, in one transaction, and refuses one from a newer release.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shim.errors import Conflict, NotFound
from shim.store.job_record import Job, JobStatus
from training.errors import UserError
from training.files import PRIVATE_FILE, write_atomic
from training.text.data import Format
from training.text.labels import label_key

# The tables of the first release (schema version 1), exactly as it created them. Never edit a
# shipped step: a change to the schema is a new step at the end of MIGRATIONS.
BASELINE_TABLES = (
    """CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    format TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    heads TEXT NOT NULL,
    label_counts TEXT NOT NULL,
    created_at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY,
    job_id TEXT,
    created_at TEXT NOT NULL,
    model_dir TEXT NOT NULL,
    archive TEXT NOT NULL,
    metrics TEXT NOT NULL,
    score REAL NOT NULL,
    data_rows INTEGER NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # An upload's key (its Idempotency-Key, else a hash of its body and options) -> its dataset.
    "CREATE TABLE IF NOT EXISTS upload_keys (key TEXT PRIMARY KEY, dataset_id TEXT NOT NULL)",
)


class RegistryError(UserError):
    """The registry cannot be used by this release (e.g. it was written by a newer one)."""


def _create_baseline(db: sqlite3.Connection, root: Path) -> None:
    # IF NOT EXISTS: a registry of the first release (user_version 0, tables present) is schema 1.
    for statement in BASELINE_TABLES:
        db.execute(statement)


def _relative_version_paths(db: sqlite3.Connection, root: Path) -> None:
    # Paths inside the data directory become relative to it, so the directory can be moved or
    # restored elsewhere; a path outside it stays absolute. Relative ones are left alone.
    rows = db.execute("SELECT version, model_dir, archive FROM versions").fetchall()
    for version, model_dir, archive in rows:
        db.execute(
            "UPDATE versions SET model_dir = ?, archive = ? WHERE version = ?",
            (_stored_path(root, Path(model_dir)), _stored_path(root, Path(archive)), version),
        )


# Classify answers kept for feedback (pruned by count and age), and the agents' corrections:
# training rows of their own, apart from uploads. `seq` orders both by insertion, so pruning the
# oldest predictions is a range delete; a prediction id starts with its creation time.
FEEDBACK_TABLES = (
    """CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    created_ms INTEGER NOT NULL,
    version INTEGER,
    text TEXT,
    text_sha256 TEXT NOT NULL,
    labels TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_ms)",
    """CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    prediction_id TEXT UNIQUE,
    created_at TEXT NOT NULL,
    model_version INTEGER,
    text TEXT NOT NULL,
    labels TEXT NOT NULL,
    predicted TEXT
)""",
)


def _create_feedback_tables(db: sqlite3.Connection, root: Path) -> None:
    for statement in FEEDBACK_TABLES:
        db.execute(statement)


# Live quality reads both logs by version over a time window.
QUALITY_INDEXES = (
    "CREATE INDEX IF NOT EXISTS predictions_version ON predictions (version, created_ms)",
    "CREATE INDEX IF NOT EXISTS feedback_version ON feedback (model_version, created_at)",
)


def _create_quality_indexes(db: sqlite3.Connection, root: Path) -> None:
    for statement in QUALITY_INDEXES:
        db.execute(statement)


def _add_rare_token_share(db: sqlite3.Connection, root: Path) -> None:
    # The drift watch compares each answer's share of rare word pieces with the training data's.
    columns = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
    if "rare_token_share" not in columns:
        db.execute("ALTER TABLE predictions ADD COLUMN rare_token_share REAL")


# Help-desk connectors (shim/desks/outbox.py): each webhook delivery once, each desk ticket's
# prediction (for agents' later changes), and the write-backs waiting or done.
CONNECTOR_TABLES = (
    """CREATE TABLE IF NOT EXISTS connector_deliveries (
    connector TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (connector, delivery_id)
)""",
    """CREATE TABLE IF NOT EXISTS connector_tickets (
    connector TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    prediction_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (connector, ticket_id)
)""",
    """CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    connector TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    answer TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    done_ms INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_ms)",
    # Where polling a help desk goes on from (the last ticket and transaction seen).
    """CREATE TABLE IF NOT EXISTS connector_cursors (
    connector TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (connector, name)
)""",
)


def _create_connector_tables(db: sqlite3.Connection, root: Path) -> None:
    for statement in CONNECTOR_TABLES:
        db.execute(statement)


# History imports from help desks (shim/desks/history_import.py): each import's cursor and counts,
# resumed from its cursor; and each imported ticket, so none is stored twice.
IMPORT_TABLES = (
    """CREATE TABLE IF NOT EXISTS connector_imports (
    connector TEXT NOT NULL,
    since TEXT NOT NULL,
    status TEXT NOT NULL,
    cursor TEXT,
    page_size INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    resumed INTEGER NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (connector, since)
)""",
    """CREATE TABLE IF NOT EXISTS connector_imported (
    connector TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    PRIMARY KEY (connector, ticket_id)
)""",
)


def _create_import_tables(db: sqlite3.Connection, root: Path) -> None:
    for statement in IMPORT_TABLES:
        db.execute(statement)


def _add_feedback_row_id(db: sqlite3.Connection, root: Path) -> None:
    # A correction of a stored training row (`<dataset id>:<line>`, a suspected label error)
    # replaces that row in training; one correction per row.
    columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)")}
    if "row_id" not in columns:
        db.execute("ALTER TABLE feedback ADD COLUMN row_id TEXT")
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS feedback_row_id ON feedback (row_id)")


# Step i brings a registry from schema version i to i + 1. Each step must be idempotent: it may
# meet a registry that already has its change (the first release did not record its version).
MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection, Path], None]], ...] = (
    ("tables of the first release", _create_baseline),
    ("version paths relative to the data directory", _relative_version_paths),
    ("predictions and feedback", _create_feedback_tables),
    ("indexes for live quality", _create_quality_indexes),
    ("rare token share of each answer, for the drift watch", _add_rare_token_share),
    ("help-desk deliveries, tickets, cursors and the write-back outbox", _create_connector_tables),
    ("help-desk history imports: cursors and imported tickets", _create_import_tables),
    ("corrections of stored training rows (feedback.row_id)", _add_feedback_row_id),
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    """The schema version recorded in a registry (0: none recorded)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, root: Path, where: str | Path) -> int:
    """Bring the registry open in `db` (autocommit mode) to SCHEMA_VERSION; returns its old one.

    `root` is the data directory the registry's paths refer to; `where` names the registry in
    the error for a registry newer than this release.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(db)
        if found > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry {where} has schema version {found}, newer than this release "
                f"knows ({SCHEMA_VERSION}): run the newer ticketserve, or restore a backup "
                "made with this one"
            )
        for _, step in MIGRATIONS[found:]:
            step(db, root)
        if found < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # no parameters in a PRAGMA
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return found


def _stored_path(root: Path, path: Path) -> str:
    """How a path is kept in the registry: relative to the data directory when inside it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


PRIVATE_DIR = 0o700
# meta key: the creation time (ms) of the newest prediction pruned so far.
PRUNED_UNTIL = "predictions_pruned_until_ms"

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    file: Path
    format: Format  # how it was uploaded
    bytes: int
    rows: int
    heads: list[str]
    label_counts: dict[str, dict[str, int]]
    created_at: datetime


@dataclass(frozen=True)
class VersionRecord:
    version: int
    job_id: str | None
    created_at: datetime
    model_dir: Path
    archive: Path
    metrics: dict[str, Any]
    score: float  # validation macro-F1, mean over heads
    data_rows: int

    @property
    def heads(self) -> list[str]:
        """The heads the version was trained with, in its order."""
        return list(self.metrics.get("validation") or {})


@dataclass(frozen=True)
class PredictionRecord:
    id: str
    created_ms: int
    version: int | None
    text: str | None  # None when texts are not stored
    text_sha256: str
    # head -> {"label": the model's, "confidence", "auto_route" (absent in older rows)}
    labels: dict[str, dict[str, Any]]
    rare_token_share: float | None = None  # None: an older archive or row


@dataclass(frozen=True)
class FeedbackRecord:
    id: str
    prediction_id: str | None  # None for a ticket never classified here
    created_at: datetime
    model_version: int | None
    text: str
    labels: dict[str, str]  # the training row's label per head
    predicted: dict[str, str] | None  # the prediction's label per head
    row_id: str | None = None  # the stored training row it corrects (`<dataset id>:<line>`)


class Store:
    """SQLite registry plus the files it points to; safe to use from several threads."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # Only the service's user may enter: the files below hold tickets, models and keys.
        self.root.chmod(PRIVATE_DIR)
        self.datasets_dir = self.root / "datasets"
        self.jobs_dir = self.root / "jobs"
        self.models_dir = self.root / "models"
        self.model_store = self.root / "model_store"
        for directory in (self.datasets_dir, self.jobs_dir, self.models_dir, self.model_store):
            directory.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "registry.sqlite3"
        # Held by uploads around "check the stored heads, then add": two never interleave.
        self.upload_lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            old = migrate(db, self.root, self.db_path)
        if old < SCHEMA_VERSION:
            logger.info("registry schema version %d -> %d", old, SCHEMA_VERSION)
        self.db_path.chmod(PRIVATE_FILE)

    @contextmanager
    def _connect(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        # A connection per operation keeps threads apart; SQLite's own locking serialises writes.
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            # NORMAL in WAL mode is still atomic; it may lose the last commits on power loss.
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self._connect(durable) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def transaction(self, durable: bool = True) -> Any:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), for the modules that keep their
        own tables here (shim/desks/outbox.py)."""
        return self._transaction(durable)

    def reading(self) -> Any:
        """A connection for reads."""
        return self._connect(durable=False)

    # -- datasets ---------------------------------------------------------------------------

    def write_dataset_file(self, content: bytes, prefix: str = "") -> tuple[str, Path]:
        """Write a new dataset file atomically; returns (dataset id, path). `prefix` names
        where the rows came from (an import's `import-zammad-20240101-`)."""
        dataset_id = prefix + uuid.uuid4().hex[:16]
        path = self.datasets_dir / f"{dataset_id}.jsonl"
        write_atomic(path, content, PRIVATE_FILE)
        return dataset_id, path

    def add_dataset(
        self,
        record: DatasetRecord,
        replace: bool,
        upload_key: str | None = None,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[DatasetRecord]:
        """Commit a dataset row (its file already written); returns the datasets it replaced.
        `also` writes what must commit with it (an import's tickets and cursor)."""
        with self._transaction() as db:
            if also is not None:
                also(db)
            replaced = self._datasets(db) if replace else []
            if replace:
                db.execute("DELETE FROM datasets")
                db.execute("DELETE FROM upload_keys")
            if upload_key is not None:
                db.execute(
                    "INSERT OR REPLACE INTO upload_keys VALUES (?, ?)", (upload_key, record.id)
                )
            db.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.file.name,
                    record.format,
                    record.bytes,
                    record.rows,
                    json.dumps(record.heads),
                    json.dumps(record.label_counts),
                    record.created_at.isoformat(),
                ),
            )
        for old in replaced:
            # Running jobs hold hard links to their data, so removing the file is safe.
            old.file.unlink(missing_ok=True)
        return replaced

    def datasets(self) -> list[DatasetRecord]:
        with self._connect() as db:
            return self._datasets(db)

    def dataset_for_key(self, upload_key: str) -> str | None:
        """The stored dataset an earlier upload with this key created, if it is still there."""
        with self._connect() as db:
            row = db.execute(
                "SELECT k.dataset_id FROM upload_keys k JOIN datasets d ON d.id = k.dataset_id "
                "WHERE k.key = ?",
                (upload_key,),
            ).fetchone()
        return row[0] if row else None

    def _datasets(self, db: sqlite3.Connection) -> list[DatasetRecord]:
        rows = db.execute(
            "SELECT id, file, format, bytes, rows, heads, label_counts, created_at "
            "FROM datasets ORDER BY created_at, rowid"
        ).fetchall()
        return [
            DatasetRecord(
                id=r[0],
                file=self.datasets_dir / r[1],
                format=r[2],
                bytes=r[3],
                rows=r[4],
                heads=json.loads(r[5]),
                label_counts=json.loads(r[6]),
                created_at=datetime.fromisoformat(r[7]),
            )
            for r in rows
        ]

    # -- jobs -------------------------------------------------------------------------------

    def save_job(self, job: Job) -> None:
        """Insert or update a job record (the whole record is one JSON document)."""
        record = json.dumps(job.to_dict())
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, record) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                (job.id, record),
            )

    def get_job(self, job_id: str) -> Job:
        with self._connect() as db:
            row = db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no training job {job_id!r}", code="job_not_found")
        return Job.from_dict(json.loads(row[0]))

    def latest_job(self, status: JobStatus | None = None) -> Job | None:
        """The newest job (with that status, when given)."""
        where, args = (
            ("WHERE json_extract(record, '$.status') = ?", (status.value,)) if status else ("", ())
        )
        with self._connect() as db:
            row = db.execute(
                f"SELECT record FROM jobs {where} ORDER BY seq DESC LIMIT 1", args
            ).fetchone()
        return Job.from_dict(json.loads(row[0])) if row else None

    def unfinished_jobs(self) -> list[Job]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT record FROM jobs WHERE json_extract(record, '$.status') IN (?, ?) "
                "ORDER BY seq",
                (JobStatus.QUEUED.value, JobStatus.RUNNING.value),
            ).fetchall()
        return [Job.from_dict(json.loads(r[0])) for r in rows]

    # -- versions ---------------------------------------------------------------------------

    def next_version(self) -> int:
        """Reserve a version number; numbers are never reused, even after a delete."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_version'").fetchone()
            top = db.execute("SELECT MAX(version) FROM versions").fetchone()[0] or 0
            version = max(int(row[0]) if row else 0, top) + 1
            db.execute(
                "INSERT INTO meta VALUES ('last_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
        return version

    def add_version(self, record: VersionRecord, make_default: bool) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.version,
                    record.job_id,
                    record.created_at.isoformat(),
                    _stored_path(self.root, record.model_dir),
                    _stored_path(self.root, record.archive),
                    json.dumps(record.metrics),
                    record.score,
                    record.data_rows,
                ),
            )
            if make_default:
                _set_meta(db, "default_version", str(record.version))

    def versions(self) -> list[VersionRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM versions ORDER BY version").fetchall()
        return [_version(self.root, r) for r in rows]

    def get_version(self, version: int) -> VersionRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM versions WHERE version = ?", (version,)).fetchone()
        if row is None:
            raise NotFound(f"no model version {version}", code="version_not_found")
        return _version(self.root, row)

    def default_version(self) -> int | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'default_version'").fetchone()
        return int(row[0]) if row else None

    def set_default_version(self, version: int | None) -> None:
        with self._transaction() as db:
            if version is None:
                db.execute("DELETE FROM meta WHERE key = 'default_version'")
            else:
                _set_meta(db, "default_version", str(version))

    def delete_version(self, version: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM versions WHERE version = ?", (version,))

    # -- predictions ------------------------------------------------------------------------

    def add_predictions(
        self, records: list[PredictionRecord], keep_count: int, cutoff_ms: int
    ) -> None:
        """Log a request's answers and prune, in one transaction: beyond the newest
        `keep_count`, and older than `cutoff_ms`. A log, not a record: no fsync per request."""
        with self._transaction(durable=False) as db:
            db.executemany(
                "INSERT INTO predictions (id, created_ms, version, text, text_sha256, labels, "
                "rare_token_share) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        r.created_ms,
                        r.version,
                        r.text,
                        r.text_sha256,
                        json.dumps(r.labels),
                        r.rare_token_share,
                    )
                    for r in records
                ],
            )
            top = db.execute("SELECT MAX(seq) FROM predictions").fetchone()[0] or 0
            last_kept_out = top - keep_count
            # Both through an index: the cost follows the rows pruned, not the rows kept.
            newest_gone = max(
                db.execute(
                    "SELECT COALESCE(MAX(created_ms), 0) FROM predictions WHERE seq <= ?",
                    (last_kept_out,),
                ).fetchone()[0],
                db.execute(
                    "SELECT COALESCE(MAX(created_ms), 0) FROM predictions WHERE created_ms < ?",
                    (cutoff_ms,),
                ).fetchone()[0],
            )
            if newest_gone:
                db.execute("DELETE FROM predictions WHERE seq <= ?", (last_kept_out,))
                db.execute("DELETE FROM predictions WHERE created_ms < ?", (cutoff_ms,))
                db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                    "MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    (PRUNED_UNTIL, str(newest_gone)),
                )

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, created_ms, version, text, text_sha256, labels, rare_token_share "
                "FROM predictions WHERE id = ?",
                (prediction_id,),
            ).fetchone()
        if row is None:
            return None
        return PredictionRecord(*row[:5], labels=json.loads(row[5]), rare_token_share=row[6])

    def recent_predictions(
        self, version: int, since_ms: int, limit: int
    ) -> list[tuple[dict[str, dict[str, Any]], float | None]]:
        """The newest `limit` answers of `version` logged since `since_ms`: (labels, rare token
        share) each, newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT labels, rare_token_share FROM predictions "
                "WHERE version = ? AND created_ms >= ? ORDER BY created_ms DESC, seq DESC LIMIT ?",
                (version, since_ms, limit),
            ).fetchall()
        return [(json.loads(labels), share) for labels, share in rows]

    def predictions_pruned_until(self) -> int:
        """The creation time (ms) of the newest prediction pruned so far (0: none)."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_UNTIL,)).fetchone()
        return int(row[0]) if row else 0

    # -- feedback ---------------------------------------------------------------------------

    def put_feedback(
        self, record: FeedbackRecord, max_rows: int | None = None
    ) -> tuple[FeedbackRecord, bool]:
        """Store a correction; one of the same prediction is replaced, keeping its id. A new one
        beyond `max_rows` stored is refused (409), in the same transaction.

        Returns (the stored record, whether it replaced one).
        """
        values = (
            record.created_at.isoformat(),
            record.model_version,
            record.text,
            json.dumps(record.labels),
            json.dumps(record.predicted) if record.predicted is not None else None,
        )
        with self._transaction() as db:
            earlier = None
            if record.prediction_id is not None:
                earlier = db.execute(
                    "SELECT id FROM feedback WHERE prediction_id = ?", (record.prediction_id,)
                ).fetchone()
            elif record.row_id is not None:
                earlier = db.execute(
                    "SELECT id FROM feedback WHERE row_id = ?", (record.row_id,)
                ).fetchone()
            if earlier is not None:
                db.execute(
                    "UPDATE feedback SET created_at = ?, model_version = ?, text = ?, labels = ?, "
                    "predicted = ? WHERE id = ?",
                    (*values, earlier[0]),
                )
                return replace(record, id=earlier[0]), True
            stored = db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
            if max_rows is not None and stored >= max_rows:
                raise Conflict(
                    f"{stored} corrections are stored, the most this service keeps "
                    "(TICKETSERVE_MAX_FEEDBACK_ROWS); delete some with "
                    "DELETE /api/v1/feedback/{feedback_id}",
                    {"stored": stored},
                    code="feedback_full",
                )
            db.execute(
                "INSERT INTO feedback (id, prediction_id, created_at, model_version, text, "
                "labels, predicted, row_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.prediction_id, *values, record.row_id),
            )
        return record, False

    def feedback(self, offset: int = 0, limit: int | None = None) -> list[FeedbackRecord]:
        """Stored corrections, oldest first (all of them without `limit`)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, prediction_id, created_at, model_version, text, labels, predicted, "
                "row_id FROM feedback ORDER BY seq LIMIT ? OFFSET ?",
                (-1 if limit is None else limit, offset),
            ).fetchall()
        return [
            FeedbackRecord(
                id=r[0],
                prediction_id=r[1],
                created_at=datetime.fromisoformat(r[2]),
                model_version=r[3],
                text=r[4],
                labels=json.loads(r[5]),
                predicted=json.loads(r[6]) if r[6] is not None else None,
                row_id=r[7],
            )
            for r in rows
        ]

    def feedback_counts(self) -> tuple[int, dict[str, dict[str, int]]]:
        """(corrections stored, head -> label -> rows)."""
        with self._connect() as db:
            total = db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
            rows = db.execute(
                "SELECT j.key, j.value, COUNT(*) FROM feedback, json_each(feedback.labels) AS j "
                "GROUP BY j.key, j.value ORDER BY j.key, COUNT(*) DESC, j.value"
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for head, label, count in rows:
            counts.setdefault(head, {})[label] = count
        return total, counts

    def feedback_since(self, since: datetime | None) -> int:
        """Corrections stored (or replaced) after `since` (all of them for None)."""
        with self._connect() as db:
            return db.execute(
                "SELECT COUNT(*) FROM feedback WHERE created_at > ?",
                (since.isoformat() if since else "",),
            ).fetchone()[0]

    def delete_feedback(self, feedback_id: str) -> None:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM feedback WHERE id = ?", (feedback_id,)).rowcount
        if not gone:
            raise NotFound(f"no feedback {feedback_id!r}", code="feedback_not_found")

    # -- live quality -----------------------------------------------------------------------

    def agreement(
        self, versions: list[int], since: datetime
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Feedback on logged predictions of `versions` stored since `since`.

        Returns (per version and UTC day: feedback, agreed on every head) and (per version, day,
        head and predicted label: labels, agreed). A label agrees when its key equals the
        prediction's (`training.text.labels.label_key`, as the feedback use case compares them).
        """
        if not versions:
            return [], []
        marks = ",".join("?" * len(versions))
        # One row per feedback label that has a prediction to compare with.
        labels = (
            "SELECT f.seq, f.model_version AS version, substr(f.created_at, 1, 10) AS day, "
            "l.key AS head, json_extract(f.predicted, '$.\"' || l.key || '\"') AS said, "
            "label_key(l.value) = label_key(json_extract(f.predicted, '$.\"' || l.key || '\"'))"
            " AS agreed FROM feedback AS f, json_each(f.labels) AS l "
            f"WHERE f.model_version IN ({marks}) AND f.created_at >= ? "
            "AND f.predicted IS NOT NULL AND said IS NOT NULL"
        )
        params = (*versions, since.isoformat())
        with self._connect() as db:
            db.create_function("label_key", 1, label_key, deterministic=True)
            overall = db.execute(
                "SELECT version, day, COUNT(*), SUM(agreed) FROM "
                f"(SELECT version, day, MIN(agreed) AS agreed FROM ({labels}) GROUP BY seq) "
                "GROUP BY version, day",
                params,
            ).fetchall()
            per_label = db.execute(
                "SELECT version, day, head, said, COUNT(*), SUM(agreed) "
                f"FROM ({labels}) GROUP BY version, day, head, said",
                params,
            ).fetchall()
        return overall, per_label

    def routed_agreement(self, versions: list[int], since: datetime) -> list[tuple[Any, ...]]:
        """Feedback stored since `since` on logged predictions of `versions` whose head cleared
        its auto-routing gate: (version, head, feedback labels, agreed)."""
        if not versions:
            return []
        marks = ",".join("?" * len(versions))
        with self._connect() as db:
            db.create_function("label_key", 1, label_key, deterministic=True)
            return db.execute(
                "SELECT f.model_version, l.key, COUNT(*), SUM(label_key(l.value) = "
                "label_key(json_extract(f.predicted, '$.\"' || l.key || '\"'))) "
                "FROM feedback AS f JOIN predictions AS p ON p.id = f.prediction_id, "
                "json_each(f.labels) AS l "
                f"WHERE f.model_version IN ({marks}) AND f.created_at >= ? "
                "AND json_extract(p.labels, '$.\"' || l.key || '\".auto_route') IS 1 "
                "GROUP BY f.model_version, l.key",
                (*versions, since.isoformat()),
            ).fetchall()

    def auto_routing(self, versions: list[int], since_ms: int) -> list[tuple[Any, ...]]:
        """Per version, UTC day and head of the predictions logged since `since_ms`: (version,
        day, head, answers, cleared the gate, unknown: logged before the log kept it)."""
        if not versions:
            return []
        marks = ",".join("?" * len(versions))
        with self._connect() as db:
            return db.execute(
                "SELECT p.version, date(p.created_ms / 1000, 'unixepoch'), h.key, COUNT(*), "
                "SUM(json_extract(h.value, '$.auto_route') IS 1), "
                "SUM(json_type(h.value, '$.auto_route') IS NULL) "
                "FROM predictions AS p, json_each(p.labels) AS h "
                f"WHERE p.version IN ({marks}) AND p.created_ms >= ? "
                "GROUP BY p.version, date(p.created_ms / 1000, 'unixepoch'), h.key",
                (*versions, since_ms),
            ).fetchall()

    # -- housekeeping -----------------------------------------------------------------------

    def remove_orphans(self) -> list[Path]:
        """Delete what a crash left half-done: unreferenced datasets, model dirs and archives.

        Call only while no upload or training job runs (at start-up).
        """
        versions = self.versions()
        keep = {d.file for d in self.datasets()}
        keep |= {v.model_dir.resolve() for v in versions} | {v.archive.resolve() for v in versions}
        removed = []
        for directory in (self.datasets_dir, self.models_dir, self.model_store):
            for path in directory.iterdir():
                if path.resolve() in keep:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _version(root: Path, row: tuple[Any, ...]) -> VersionRecord:
    return VersionRecord(
        version=row[0],
        job_id=row[1],
        created_at=datetime.fromisoformat(row[2]),
        model_dir=root / row[3],  # an absolute path stays as it is
        archive=root / row[4],
        metrics=json.loads(row[5]),
        score=row[6],
        data_rows=row[7],
    )
