"""The registry's schema steps from before Alembic (schema versions 1 to 8), kept so a registry
written by any earlier release still opens: `shim.store.registry.database` runs the steps a
registry lacks, then Alembic takes over from its baseline revision, which is version 8.

The schema version of such a registry is SQLite's `user_version`. Never edit a shipped step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from shim.store.registry.records import stored_path

# The tables of the first release (schema version 1), exactly as it created them. Never edit a
# shipped step.
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
            (stored_path(root, Path(model_dir)), stored_path(root, Path(archive)), version),
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
VERSION = len(MIGRATIONS)  # Alembic's baseline revision is this schema


def schema_version(db: sqlite3.Connection) -> int:
    """The schema version recorded in a registry (0: none recorded)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def upgrade(db: sqlite3.Connection, root: Path) -> int:
    """Bring the registry open in `db` (autocommit mode, schema version at most VERSION) to
    VERSION in one transaction; returns its old version. `root` is the data directory the
    registry's paths refer to."""
    db.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(db)
        for _, step in MIGRATIONS[found:]:
            step(db, root)
        if found < VERSION:
            db.execute(f"PRAGMA user_version = {VERSION}")  # no parameters in a PRAGMA
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return found
