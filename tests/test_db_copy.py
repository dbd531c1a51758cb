"""`ticketserve db copy --to URL`: a SQLite registry moves into a real PostgreSQL whole (every
table, row numbers going on after the copied ones), into an empty database only."""

from __future__ import annotations

import uuid
from pathlib import Path

from cli_run import Run, ticketserve
from postgres_server import PostgresServer
from sqlalchemy import func, select
from test_store import csv_bytes, version_record

from connectors.label_map import LabelMap
from shim.desks.outbox import Outbox
from shim.metrics import ApiMetrics
from shim.settings import Settings
from shim.store.datasets import UploadOptions, ingest
from shim.store.job_record import Job
from shim.store.predictions import new_prediction_id
from shim.store.registry import FeedbackRecord, PredictionRecord, Store, utcnow
from shim.store.registry.tables import metadata


def db(*args: str) -> Run:
    return ticketserve("db", *args)


def counts(store: Store) -> dict[str, int]:
    with store.reading() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def prediction(text: str) -> PredictionRecord:
    return PredictionRecord(new_prediction_id(), 0, 1, text, "sha", {"queue": {"label": "A"}})


def test_a_sqlite_registry_moves_into_postgresql_whole(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    sqlite = Store(tmp_path)
    ingest(sqlite, csv_bytes(30), "text/csv", UploadOptions())
    job = Job.new({"epochs": 1})
    sqlite.jobs.save(job)
    for version in (sqlite.versions.reserve(), sqlite.versions.reserve()):
        sqlite.versions.add(version_record(version, tmp_path), make_default=version == 1)
    sqlite.predictions.add([prediction("one"), prediction("two")], 100, 0)
    sqlite.feedback.put(
        FeedbackRecord(uuid.uuid4().hex, None, utcnow(), 1, "text", {"queue": "A"}, None)
    )
    Outbox(sqlite, Settings(data_dir=tmp_path), {}, LabelMap({}), ApiMetrics()).set_cursor(
        "rt", "tickets", "42"
    )
    before = counts(sqlite)
    assert all(before[t] for t in ("datasets", "jobs", "versions", "predictions", "feedback"))

    url = postgres.database()
    copied = db("copy", "--to", url, "--data-dir", str(tmp_path))
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.startswith(f"copied the registry {sqlite.db_path} into {url}: ")
    moved = Store(tmp_path, url)
    assert counts(moved) == before
    assert moved.datasets.all() == sqlite.datasets.all()
    assert moved.versions.all() == sqlite.versions.all() and moved.versions.default() == 1
    assert moved.jobs.get(job.id) == sqlite.jobs.get(job.id)
    assert moved.feedback.page() == sqlite.feedback.page()
    outbox = Outbox(moved, Settings(data_dir=tmp_path), {}, LabelMap({}), ApiMetrics())
    assert outbox.cursor("rt", "tickets") == "42"
    # Row numbers and version numbers go on after the copied ones.
    moved.predictions.add([prediction("three")], 100, 0)
    with moved.reading() as conn:
        texts = conn.execute(select(metadata.tables["predictions"].c.text).order_by("seq"))
        assert list(texts.scalars()) == ["one", "two", "three"]
    assert moved.versions.reserve() == 3

    again = db("copy", "--to", url, "--data-dir", str(tmp_path))
    assert again.returncode == 1 and "is not empty (rows in " in again.stderr
    assert counts(moved)["predictions"] == 3


def test_bad_copies_are_refused_with_the_reason(tmp_path: Path) -> None:
    Store(tmp_path)
    for args, reason in [
        (["copy"], "--to URL goes with copy, and only with copy"),
        (["upgrade", "--to", "sqlite:///x"], "--to URL goes with copy, and only with copy"),
        (["copy", "--to", "mysql://u:secret@h/d"], "--to: the registry is kept in sqlite or"),
        (["copy", "--to", "postgresql+psycopg://u:secret@127.0.0.1:1/d"], "cannot copy into "),
    ]:
        result = db(*args, "--data-dir", str(tmp_path))
        assert result.returncode == 1 and reason in result.stderr, (args, result.stderr)
        assert "secret" not in result.stderr
