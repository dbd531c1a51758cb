"""The registry (SQLite + files) and the upload path that writes to it, on temporary directories."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shim.errors import BadRequest, Conflict, NotFound, Unprocessable, UnsupportedMediaType
from shim.schemas import DatasetPublic
from shim.store.datasets import UploadOptions, ingest, summary, upload_format
from shim.store.job_record import Job, JobStatus
from shim.store.registry import DatasetRecord, Store, VersionRecord
from training.text.sample_data import generate_tickets


def csv_bytes(rows: int = 30, seed: int = 0) -> bytes:
    return generate_tickets(rows, seed=seed).to_csv(index=False).encode("utf-8")


def version_record(version: int, models: Path, score: float = 0.5) -> VersionRecord:
    """A version whose model dir is in `models` and archive in its sibling model_store/."""
    return VersionRecord(
        version=version,
        job_id="job",
        created_at=datetime.now(UTC),
        model_dir=models / f"v{version}",
        archive=models.parent / "model_store" / f"ticket-v{version}.mar",
        metrics={"validation": {"queue": {"macro_f1": score}}},
        score=score,
        data_rows=10,
    )


def test_upload_is_stored_as_normalised_rows_and_survives_a_new_store(
    tmp_path: Path, database_url: str | None
) -> None:
    store = Store(tmp_path, database_url)
    report = ingest(store, csv_bytes(30), "text/csv; charset=utf-8", UploadOptions())
    assert report.rows_accepted == 30 and report.stored_rows == 30

    reopened = Store(tmp_path, database_url)  # e.g. after a restart
    (dataset,) = reopened.datasets.all()
    assert dataset.id == report.dataset_id and dataset.rows == 30 and dataset.format == "csv"
    rows = [json.loads(line) for line in dataset.file.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 30
    assert set(rows[0]) == {"text", "queue", "priority"}
    assert not [p for p in store.datasets_dir.iterdir() if p.name.startswith(".")]


def test_append_by_default_and_replace_on_request(tmp_path: Path, database_url: str | None) -> None:
    store = Store(tmp_path, database_url)
    first = ingest(store, csv_bytes(30, seed=1), "text/csv", UploadOptions())
    ingest(store, csv_bytes(20, seed=2), "text/csv", UploadOptions())
    assert summary(store).rows == 50
    old_files = [d.file for d in store.datasets.all()]

    replaced = ingest(store, csv_bytes(25, seed=3), "text/csv", UploadOptions(replace=True))
    assert replaced.replaced and replaced.stored_rows == 25 and replaced.stored_datasets == 1
    assert not any(path.exists() for path in old_files)
    assert first.dataset_id not in {d.id for d in store.datasets.all()}


def test_summary_merges_label_spellings_across_uploads(
    tmp_path: Path, database_url: str | None
) -> None:
    store = Store(tmp_path, database_url)
    for label in ("Hardware", "hardware "):
        lines = [{"text": f"{label} {i}", "queue": label} for i in range(3)]
        lines += [{"text": f"other {label} {i}", "queue": "Billing"} for i in range(3)]
        body = json.dumps(lines).encode()
        ingest(store, body, "application/json", UploadOptions(min_class_examples=1))
    assert summary(store).label_counts == {"queue": {"Hardware": 6, "Billing": 6}}


def test_upload_with_other_label_columns_than_stored_is_a_conflict(
    tmp_path: Path, database_url: str | None
) -> None:
    store = Store(tmp_path, database_url)
    ingest(store, csv_bytes(30), "text/csv", UploadOptions())
    queue_only = generate_tickets(20, seed=4)[["subject", "body", "queue"]]
    body = queue_only.to_csv(index=False).encode()
    with pytest.raises(Conflict, match="replace the stored data"):
        ingest(store, body, "text/csv", UploadOptions())
    assert len(store.datasets.all()) == 1
    assert ingest(store, body, "text/csv", UploadOptions(replace=True)).stored_rows == 20


def test_unreadable_and_unusable_bodies_are_told_apart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(BadRequest, match="not UTF-8"):
        ingest(store, "text,queue\nGröße,a\n".encode("latin-1"), "text/csv", UploadOptions())
    with pytest.raises(Unprocessable, match="no label column"):
        ingest(store, b"text,colour\nhello,red\n", "text/csv", UploadOptions())
    assert store.datasets.all() == []
    assert list(store.datasets_dir.iterdir()) == []


def test_declared_charset_is_decoded(tmp_path: Path) -> None:
    rows = "".join(f"Größe {i},{'ab'[i % 2]}\n" for i in range(10))
    body = ("text,queue\n" + rows).encode("latin-1")
    report = ingest(Store(tmp_path), body, "text/csv; charset=ISO-8859-1", UploadOptions())
    assert report.rows_accepted == 10


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/csv", "csv"),
        ("text/csv; charset=utf-8", "csv"),
        ("Application/JSON", "json"),
        ("application/x-ndjson", "jsonl"),
        ("application/jsonl", "jsonl"),
    ],
)
def test_upload_format_from_content_type(header: str, expected: str) -> None:
    assert upload_format(header)[0] == expected


@pytest.mark.parametrize("header", [None, "", "text/plain", "multipart/form-data; boundary=x"])
def test_other_content_types_are_415(header: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        upload_format(header)


def test_orphan_dataset_files_are_removed(tmp_path: Path, database_url: str | None) -> None:
    store = Store(tmp_path, database_url)
    ingest(store, csv_bytes(30), "text/csv", UploadOptions())
    # What a crash between writing the file and committing its row would leave behind:
    (store.datasets_dir / "0123abcd.jsonl").write_text("{}\n")
    (store.datasets_dir / ".half.jsonl.1234.tmp").write_text("{")
    # ... and a crash while publishing version 2 next to a published version 1:
    store.versions.add(version_record(1, store.models_dir), make_default=True)
    for name in ("v1", "v2"):
        (store.models_dir / name).mkdir()
    for name in ("ticket-v1.mar", "ticket-v2.mar"):
        (store.model_store / name).write_bytes(b"PK")
    removed = {p.name for p in store.remove_orphans()}
    assert removed == {"0123abcd.jsonl", ".half.jsonl.1234.tmp", "v2", "ticket-v2.mar"}
    assert len(list(store.datasets_dir.iterdir())) == 1
    assert [p.name for p in store.models_dir.iterdir()] == ["v1"]


def test_jobs_round_trip_and_the_latest_wins(tmp_path: Path, database_url: str | None) -> None:
    store = Store(tmp_path, database_url)
    first, second = Job.new({"epochs": 1}), Job.new({"epochs": 2})
    store.jobs.save(first)
    store.jobs.save(second)
    second.start(pid=123)
    store.jobs.save(second)
    assert store.jobs.latest().id == second.id
    loaded = store.jobs.get(second.id)
    assert loaded.status == JobStatus.RUNNING and loaded.pid == 123
    assert loaded.started_at == second.started_at
    assert [j.id for j in store.jobs.unfinished()] == [first.id, second.id]
    with pytest.raises(NotFound):
        store.jobs.get("nope")


def test_version_numbers_are_never_reused(tmp_path: Path, database_url: str | None) -> None:
    store = Store(tmp_path, database_url)
    assert store.versions.default() is None
    one = store.versions.reserve()
    store.versions.add(version_record(one, tmp_path), make_default=True)
    two = store.versions.reserve()
    store.versions.add(version_record(two, tmp_path), make_default=False)
    assert (one, two) == (1, 2) and store.versions.default() == 1
    store.versions.delete(two)
    assert Store(tmp_path, database_url).versions.reserve() == 3
    assert [v.version for v in store.versions.all()] == [1]
    with pytest.raises(NotFound):
        store.versions.get(2)


def test_the_public_dataset_is_the_stored_record_less_its_file() -> None:
    """schemas.DatasetPublic is written out (the shared schemas import no room): it must keep
    every field of the record but where the file lies."""
    stored = {f.name for f in fields(DatasetRecord)}
    assert set(DatasetPublic.model_fields) == stored - {"file"}
