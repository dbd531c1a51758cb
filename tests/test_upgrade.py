"""Upgrading keeps a data directory working: the registry of the first release is migrated.

The test writes a data directory as the first release leaves it (its schema, verbatim below; no
schema version, i.e. user_version 0; absolute paths to each version's model directory and
archive), starts the new service on it and classifies with the old default version. A registry
from a newer release is refused with a message naming the file and both versions; migrating
twice changes nothing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_service import TICKETSERVE, Service, free_port
from cli_run import Run, ticketserve
from conftest import PROBE_TEXTS, TrainedModel

from shim.store.backup import backup
from shim.store.registry import SCHEMA_VERSION, RegistryError, Store, legacy
from training.export.archive import build_archive
from training.fit.evaluate import selection_score
from training.text.sample_data import generate_tickets

# shim/store/registry.py's SCHEMA of the first release (executescript'ed at every start), verbatim.
FIRST_RELEASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    format TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    heads TEXT NOT NULL,
    label_counts TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY,
    job_id TEXT,
    created_at TEXT NOT NULL,
    model_dir TEXT NOT NULL,
    archive TEXT NOT NULL,
    metrics TEXT NOT NULL,
    score REAL NOT NULL,
    data_rows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- An upload's key (its Idempotency-Key, else a hash of its body and options) -> its dataset.
CREATE TABLE IF NOT EXISTS upload_keys (key TEXT PRIMARY KEY, dataset_id TEXT NOT NULL);
"""
DATASET_ID = "3f2a9c41d07b5e18"
JOB_ID = "9b1e55c2a7d0"
DATASET_ROWS = 40


@dataclass(frozen=True)
class FirstReleaseDataDir:
    root: Path
    registry: Path
    dataset: Path
    model_dir: Path
    archive: Path


def write_first_release_data_dir(root: Path, model: TrainedModel | None) -> FirstReleaseDataDir:
    """The data directory the first release leaves after one upload and one training job.

    With `model`, version 1 is that model (its directory and a real .mar); without, the
    registry names them but they are not written (enough for the registry's own tests).
    """
    root = root.resolve()  # the first release stored its resolved paths
    for folder in ("datasets", "jobs", "models", "model_store"):
        (root / folder).mkdir(parents=True)
    root.chmod(0o700)
    frame = generate_tickets(DATASET_ROWS, seed=5)
    rows = [
        {"text": f"{r.subject}\n{r.body}", "queue": r.queue, "priority": r.priority}
        for r in frame.itertuples()
    ]
    dataset = root / "datasets" / f"{DATASET_ID}.jsonl"
    dataset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    model_dir = root / "models" / "v1"
    archive = root / "model_store" / "ticket-v1.mar"
    metrics = {"validation": {"queue": {"macro_f1": 0.5}}}
    if model is not None:
        metrics = model.metrics
        (root / "models" / "v1").mkdir()
        for path in model.model_dir.iterdir():
            (model_dir / path.name).write_bytes(path.read_bytes())
        build_archive(model_dir, root / "model_store", "1", update_latest=False)
    job = {
        "id": JOB_ID,
        "params": {"base_model": "all-MiniLM-L6-v2", "epochs": 3},
        "created_at": "2026-11-30T09:00:00+00:00",
        "status": "succeeded",
        "phase": "done",
        "started_at": "2026-11-30T09:00:01+00:00",
        "finished_at": "2026-11-30T09:04:00+00:00",
        "pid": None,
        "data_rows": DATASET_ROWS,
        "progress": None,
        "metrics": metrics,
        "mode": "full",
        "expected_duration_s": None,
        "model_version": 1,
        "is_default": True,
        "note": "version 1 is the first model version: made default",
        "error": None,
    }
    registry = root / "registry.sqlite3"
    db = sqlite3.connect(registry, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.execute(
            "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                DATASET_ID,
                dataset.name,
                "csv",
                dataset.stat().st_size,
                DATASET_ROWS,
                json.dumps(["queue", "priority"]),
                json.dumps({h: dict(Counter(r[h] for r in rows)) for h in ("queue", "priority")}),
                "2026-11-30T08:59:00+00:00",
            ),
        )
        db.execute("INSERT INTO upload_keys VALUES (?, ?)", ("sha256:upload", DATASET_ID))
        db.execute("INSERT INTO jobs (id, record) VALUES (?, ?)", (JOB_ID, json.dumps(job)))
        db.execute(
            "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                1,
                JOB_ID,
                "2026-11-30T09:04:00+00:00",
                str(model_dir),
                str(archive),
                json.dumps(metrics),
                selection_score(metrics),
                DATASET_ROWS,
            ),
        )
        db.execute("INSERT INTO meta VALUES ('last_version', '1')")
        db.execute("INSERT INTO meta VALUES ('default_version', '1')")
    finally:
        db.close()
    return FirstReleaseDataDir(root, registry, dataset, model_dir, archive)


def dump(registry: Path) -> dict[str, object]:
    """Everything in a registry: its schema version, its tables and each table's rows."""
    db = sqlite3.connect(registry)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            "user_version": db.execute("PRAGMA user_version").fetchone()[0],
            "schema": db.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall(),
            **{t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables},
        }
    finally:
        db.close()


def version_paths(registry: Path) -> list[tuple[int, str, str]]:
    db = sqlite3.connect(registry)
    try:
        return db.execute("SELECT version, model_dir, archive FROM versions").fetchall()
    finally:
        db.close()


def test_the_new_service_serves_a_data_directory_of_the_first_release(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    old = write_first_release_data_dir(tmp_path / "var", trained_model)
    service = Service(old.root)
    try:
        service.start()
        assert service.wait_ready()["model_version"] == 1
        tickets = [{"ticket_data": text} for text in PROBE_TEXTS]
        for params in ({}, {"version": 1}):
            answer = service.post("/api/v1/classify", json={"tickets": tickets}, params=params)
            assert answer.status_code == 200, answer.text
            predictions = answer.json()["predictions"]
            for got, want in zip(predictions, trained_model.probe_predictions, strict=True):
                assert got["model_version"] == 1
                for head, expected in want.items():
                    assert got[head]["model_label"] == expected["label"]
                    assert got[head]["confidence"] == pytest.approx(
                        expected["confidence"], abs=1e-4
                    )
        models = service.get("/api/v1/models").json()
        assert models["default_version"] == 1
        assert [(v["version"], v["job_id"]) for v in models["versions"]] == [(1, JOB_ID)]
        stored = service.get("/api/v1/train-data").json()
        assert stored["rows"] == DATASET_ROWS
        assert [d["id"] for d in stored["datasets"]] == [DATASET_ID]
        job = service.get(f"/api/v1/train/{JOB_ID}").json()
        assert job["status"] == "succeeded" and job["model_version"] == 1
        assert service.stop() == 0
        assert f"registry schema version 0 -> {SCHEMA_VERSION}" in service.log_path.read_text()
    finally:
        service.cleanup()

    assert dump(old.registry)["user_version"] == SCHEMA_VERSION
    assert version_paths(old.registry) == [(1, "models/v1", "model_store/ticket-v1.mar")]
    # Nothing of the old directory was taken for a crash's orphan.
    assert old.dataset.is_file() and old.archive.is_file()
    assert (old.model_dir / "model.safetensors").is_file()
    # Relative paths: the directory can move now.
    moved = old.root.rename(tmp_path / "moved")
    record = Store(moved).versions.get(1)
    assert record.archive == moved / "model_store" / "ticket-v1.mar" and record.archive.is_file()
    assert record.model_dir == moved / "models" / "v1" and record.model_dir.is_dir()


def test_the_first_migration_step_is_the_first_releases_schema(tmp_path: Path) -> None:
    first = sqlite3.connect(tmp_path / "first.sqlite3")
    try:
        first.executescript(FIRST_RELEASE_SCHEMA)
    finally:
        first.close()
    new = Store(tmp_path / "new").db_path
    first_schema = dump(tmp_path / "first.sqlite3")["schema"]
    first_tables = {row[2] for row in first_schema}  # sqlite_master's tbl_name
    new_schema = dump(new)["schema"]
    assert [row for row in new_schema if row[2] in first_tables] == first_schema
    # Later steps only add tables (and their indexes).
    assert {row[2] for row in new_schema} - first_tables == {
        "predictions",
        "feedback",
        "connector_deliveries",
        "connector_tickets",
        "outbox",
        "connector_cursors",
        "connector_imports",
        "connector_imported",
        "alembic_version",  # Alembic's, from the baseline on
        "leases",
        "classify_jobs",
    }
    assert dump(new)["user_version"] == SCHEMA_VERSION


def test_migration_is_idempotent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = write_first_release_data_dir(tmp_path / "var", None)
    outside = tmp_path / "elsewhere" / "v2"
    db = sqlite3.connect(old.registry, isolation_level=None)
    try:  # a version kept outside the data directory keeps its absolute path
        db.execute(
            "INSERT INTO versions SELECT 2, job_id, created_at, ?, ?, metrics, score, data_rows "
            "FROM versions WHERE version = 1",
            (str(outside), str(outside / "ticket-v2.mar")),
        )
    finally:
        db.close()
    before = dump(old.registry)

    with caplog.at_level(logging.INFO, logger="shim.store.registry"):
        store = Store(old.root)
    assert f"registry schema version 0 -> {SCHEMA_VERSION}" in caplog.text
    migrated = dump(old.registry)
    assert migrated["user_version"] == SCHEMA_VERSION
    assert version_paths(old.registry) == [
        (1, "models/v1", "model_store/ticket-v1.mar"),
        (2, str(outside), str(outside / "ticket-v2.mar")),
    ]
    # Only the paths changed; every other row is as the first release wrote it.
    for table in ("datasets", "jobs", "meta", "upload_keys"):
        assert migrated[table] == before[table]
    assert migrated["predictions"] == migrated["feedback"] == []  # new, empty tables
    assert [v.archive for v in store.versions.all()] == [old.archive, outside / "ticket-v2.mar"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="shim.store.registry"):
        Store(old.root)  # the next start
    assert "registry schema version" not in caplog.text
    assert dump(old.registry) == migrated
    db = sqlite3.connect(old.registry, isolation_level=None)
    try:
        assert legacy.upgrade(db, old.root) == SCHEMA_VERSION
        db.execute("PRAGMA user_version = 0")  # as if a step had not been recorded
        assert legacy.upgrade(db, old.root) == 0
        for _, step in legacy.MIGRATIONS:  # and every step once more, outside upgrade()
            step(db, old.root)
        assert legacy.schema_version(db) == legacy.VERSION  # the steps' own last version
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    finally:
        db.close()
    assert dump(old.registry) == migrated


def test_a_registry_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    registry = Store(data_dir).db_path
    newer = SCHEMA_VERSION + 1
    db = sqlite3.connect(registry)
    try:
        db.execute(f"PRAGMA user_version = {newer}")
    finally:
        db.close()
    before = dump(registry)
    message = (
        f"the registry {registry} has schema version {newer}, newer than this release knows "
        f"({SCHEMA_VERSION})"
    )
    with pytest.raises(RegistryError) as error:
        Store(data_dir)
    assert str(error.value).startswith(message)

    # The service does not start: one line, exit status 1, no TorchServe.
    result = subprocess.run(
        [TICKETSERVE, "serve", "--port", str(free_port()), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"ticketserve serve: error: {error.value}"]
    assert not (data_dir / "torchserve").exists()
    # Nor is it backed up (a backup holds this release's schema).
    with pytest.raises(RegistryError, match=f"has schema version {newer}, newer than"):
        backup(data_dir, tmp_path / "backup.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]
    # Nor upgraded by hand.
    result = ticketserve_db(data_dir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"ticketserve db: error: {error.value}"]
    assert dump(registry) == before


def ticketserve_db(data_dir: Path) -> Run:
    return ticketserve("db", "upgrade", "--data-dir", str(data_dir))


def test_db_upgrade_brings_a_first_release_registry_to_this_releases_schema(
    tmp_path: Path,
) -> None:
    """`ticketserve db upgrade`: the registry alone, in place; again, nothing to do."""
    old = write_first_release_data_dir(tmp_path / "var", None)
    before = dump(old.registry)
    result = ticketserve_db(old.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"upgraded the registry {old.registry}: schema version 0 -> {SCHEMA_VERSION}\n"
    )
    upgraded = dump(old.registry)
    assert upgraded["user_version"] == SCHEMA_VERSION
    for table in ("datasets", "jobs", "meta", "upload_keys"):
        assert upgraded[table] == before[table]
    assert ticketserve_db(old.root).stdout == (
        f"the registry {old.registry} has schema version {SCHEMA_VERSION}, this release's\n"
    )
    missing = tmp_path / "empty"
    result = ticketserve_db(missing)
    assert result.returncode == 1 and not missing.exists()
    assert result.stderr == (
        f"ticketserve db: error: no registry at {missing / 'registry.sqlite3'}: is {missing} a "
        "ticketserve data directory?\n"
    )
