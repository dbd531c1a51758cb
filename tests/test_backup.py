"""`ticketserve backup` / `restore`: a backup taken while the service runs restores the service.

The main test backs up a real `ticketserve serve` (TorchServe, a version the service trained and
published itself, uploads arriving meanwhile, a fine-tune running), restores it into a new
directory, starts a service there beside the original (which must keep its job), and asks it the
same questions once the original is stopped and moved away. The others
check that every broken input is refused in one line, with nothing half-written left behind.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import pytest
import requests
from api_service import Background, Service, tickets_csv
from conftest import PROBE_TEXTS

from shim.cli import main
from shim.store.backup import BACKUP_INTERRUPTED, MANIFEST, BackupError, backup, restore
from shim.store.datasets import UploadOptions, ingest
from shim.store.job_record import JobStatus
from shim.store.registry import SCHEMA_VERSION, RegistryError, Store


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    """`ticketserve ARGS...` in this process: exit status and what it printed."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own exits
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


# Small and quick: the bundled encoder on short texts.
SMALL_JOB = {"base_model": "all-MiniLM-L6-v2", "max_length": 64, "seed": 1}


def one_line_error(result: Result, command: str) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ticketserve {command}: error: "), lines[0]
    return lines[0]


def answers(service: Service, version: int | None = None) -> list[dict]:
    params = {"version": version} if version else {}
    tickets = [{"ticket_data": text} for text in PROBE_TEXTS]
    answer = service.post("/api/v1/classify", json={"tickets": tickets}, params=params)
    assert answer.status_code == 200, answer.text
    # Each answer has an id of its own; the rest must be the same.
    return [{**p, "prediction_id": None} for p in answer.json()["predictions"]]


@pytest.mark.slow  # the real service
def test_backup_while_serving_restores_a_service_with_the_same_answers(run, tmp_path: Path) -> None:
    source = Service(tmp_path / "var")
    restored = Service(tmp_path / "restored" / "var")
    try:
        source.start()
        for seed in (1, 2):
            assert source.upload_csv(tickets_csv(60, seed=seed)).status_code == 201
        # Version 1 is published by the service itself: a fast-mode job through the API.
        first = source.post("/api/v1/train", json={**SMALL_JOB, "mode": "fast"}).json()
        assert source.wait_job(first["job_id"])["status"] == "succeeded"
        assert source.wait_ready()["model_version"] == 1
        # A fine-tune that runs for minutes (no early stop): it runs while the backup is taken,
        # on one core, so that the backup, the restore and the second service get the other.
        long_job = {**SMALL_JOB, "mode": "full", "epochs": 100, "patience": 100, "num_threads": 1}
        running = source.post("/api/v1/train", json=long_job)
        job_id = running.json()["job_id"]
        assert source.wait_job(job_id, until=("progress",))["status"] == "running"
        expected = answers(source)
        versions = source.get("/api/v1/models").json()

        # Uploads keep arriving while the backup runs: it holds those committed at its snapshot.
        def upload(call: int) -> requests.Response:
            return source.upload_csv(tickets_csv(30, seed=100 + call))

        out = tmp_path / "backups" / "ticketserve.tar.gz"
        out.parent.mkdir()
        with Background(upload, expected=201, pause_s=0.2) as uploads:
            result = run("backup", str(out), "--data-dir", str(source.data_dir))
        uploads.check()
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"wrote {out} (")
        assert "model versions 1 (default 1)" in result.stdout
        assert result.stdout.rstrip().endswith(f"registry schema {SCHEMA_VERSION}")
        assert [p.name for p in out.parent.iterdir()] == [out.name]  # no work files left
        assert out.stat().st_mode & 0o777 == 0o600  # it holds every ticket
        stored = source.get("/api/v1/train-data").json()
        assert source.get(f"/api/v1/train/{job_id}").json()["status"] == "running"  # untouched

        result = run("restore", str(out), "--data-dir", str(restored.data_dir))
        assert result.returncode == 0, result.stderr
        assert f"into {restored.data_dir}: " in result.stdout
        assert (restored.data_dir.stat().st_mode & 0o777) == 0o700
        assert not [p for p in restored.data_dir.iterdir() if p.name.startswith(".")]
        record = Store(restored.data_dir).jobs.get(job_id)
        assert record.status == JobStatus.FAILED and record.pid is None
        assert record.error == BACKUP_INTERRUPTED

        # Started beside the original, the restored service leaves the original's job alone.
        restored.start()
        assert restored.wait_ready()["model_version"] == 1
        assert source.get(f"/api/v1/train/{job_id}").json()["status"] == "running"
        cancelled = source.post(f"/api/v1/train/{job_id}/cancel")
        assert cancelled.json()["status"] == "cancelled", cancelled.text
        assert source.stop() == 0
        # The restored service needs nothing of the original directory.
        source.data_dir.rename(tmp_path / "moved")
        assert answers(restored) == expected
        assert answers(restored, version=1) == expected
        assert restored.get("/api/v1/models").json() == versions
        summary = restored.get("/api/v1/train-data").json()
        # Consistent: the two uploads before, then a prefix of those made during the backup.
        assert summary["datasets"] == stored["datasets"][: len(summary["datasets"])]
        assert len(summary["datasets"]) >= 2
        assert summary["rows"] == sum(d["rows"] for d in summary["datasets"])
        assert f"{summary['rows']} stored tickets" in result.stdout
        job_view = restored.get(f"/api/v1/train/{job_id}").json()
        assert job_view["status"] == "failed" and job_view["error"] == BACKUP_INTERRUPTED
        assert restored.stop() == 0
    finally:
        source.cleanup()
        restored.cleanup()


# -- refusals: one line each, nothing half-written ----------------------------------------------


@dataclass(frozen=True)
class Small:
    """A data directory with one upload and no model, and its backup."""

    data_dir: Path
    archive: Path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    root = tmp_path_factory.mktemp("small")
    store = Store(root / "var")
    ingest(store, tickets_csv(30, seed=7), "text/csv", UploadOptions())
    summary = backup(store.root, root / "small.tar.gz")
    assert summary.files == 2 and summary.dataset_rows == 30 and summary.versions == []
    return Small(store.root, summary.path)


def entries(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def write_tar_gz(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None):
    with tarfile.open(path, "w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def with_manifest(contents: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    """`contents` of an archive with these fields of its manifest changed."""
    manifest = json.loads(contents[MANIFEST])
    manifest.update(changes)
    return {**contents, MANIFEST: json.dumps(manifest).encode()}


def refused(archive: Path, target: Path, match: str) -> None:
    """Restoring `archive` into `target` fails with `match`, leaving `target` as it was."""
    new = [path for path in (target, *target.parents) if not path.exists()]
    before = sorted(target.rglob("*")) if target.exists() else None
    with pytest.raises(BackupError, match=match) as error:
        restore(archive, target)
    assert "\n" not in str(error.value)
    if before is not None:
        assert sorted(target.rglob("*")) == before
    assert not [path for path in new if path.exists()]  # not even a parent folder


def test_the_small_backup_restores(small: Small, tmp_path: Path) -> None:
    summary = restore(small.archive, tmp_path / "new" / "var")
    assert summary.files == 2 and summary.dataset_rows == 30
    assert sorted(p.name for p in summary.path.iterdir()) == ["datasets", "registry.sqlite3"]
    store = Store(summary.path)
    (dataset,) = store.datasets.all()
    assert dataset.file.read_bytes() == next(small.data_dir.glob("datasets/*.jsonl")).read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert restore(small.archive, empty).schema_version == SCHEMA_VERSION


def test_restore_refuses_a_directory_that_is_not_empty(small: Small, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    refused(small.archive, tmp_path, f"{tmp_path} is not empty: restore only into an empty")
    refused(small.archive, small.data_dir, "is not empty")  # e.g. the live data directory
    refused(small.archive, tmp_path / "notes.txt", "is not a directory")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_archive_is_refused(small: Small, tmp_path: Path, damage: str) -> None:
    data = bytearray(small.archive.read_bytes())
    if damage == "flip":
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    else:
        data = data[: len(data) * 2 // 3]
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bytes(data))
    refused(broken, tmp_path / "var", f"{broken} is damaged or unreadable: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(broken, empty, "is damaged or unreadable")


def test_a_file_that_differs_from_its_manifest_hash_is_refused(
    small: Small, tmp_path: Path
) -> None:
    files = entries(small.archive)
    (dataset,) = [name for name in files if name.startswith("datasets/")]
    files[dataset] = files[dataset].replace(b'"queue"', b'"QUEUE"', 1)
    tampered = write_tar_gz(tmp_path / "tampered.tar.gz", files)
    refused(tampered, tmp_path / "var", rf"{dataset} is damaged \(its sha256 differs")


def test_a_tar_gz_that_is_no_backup_is_refused(small: Small, tmp_path: Path) -> None:
    other = write_tar_gz(tmp_path / "other.tar.gz", {"notes.txt": b"hello"})
    refused(other, tmp_path / "var", f"{other} is damaged or no ticketserve backup: it holds no")
    files = with_manifest(entries(small.archive), format="something-else")
    foreign = write_tar_gz(tmp_path / "foreign.tar.gz", files)
    refused(foreign, tmp_path / "var", f"{MANIFEST} is not a ticketserve backup manifest")
    for changes, match in [
        ({"schema_version": "2"}, f"{MANIFEST} is not a ticketserve backup manifest"),
        ({"files": [{"path": "registry.sqlite3"}]}, f"{MANIFEST} has a malformed file list"),
        ({"format_version": 2}, "has backup format 2, newer than this release reads"),
    ]:
        odd = write_tar_gz(
            tmp_path / "odd.tar.gz", with_manifest(entries(small.archive), **changes)
        )
        refused(odd, tmp_path / "var", match)
    plain = tmp_path / "plain.tar.gz"
    plain.write_text("not even gzip")
    refused(plain, tmp_path / "var", "is damaged or unreadable")
    refused(tmp_path / "nothing.tar.gz", tmp_path / "var", "no backup at")


def test_a_backup_of_a_newer_registry_is_refused(small: Small, tmp_path: Path) -> None:
    files = with_manifest(entries(small.archive), schema_version=SCHEMA_VERSION + 1)
    newer = write_tar_gz(tmp_path / "newer.tar.gz", files)
    with pytest.raises(RegistryError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        restore(newer, tmp_path / "var")
    assert not (tmp_path / "var").exists()


def test_path_traversal_entries_are_refused(small: Small, tmp_path: Path) -> None:
    files = entries(small.archive)
    target = tmp_path / "deep" / "var"
    escape = write_tar_gz(tmp_path / "escape.tar.gz", {**files, "../../evil.txt": b"x"})
    refused(escape, target, "unexpected entry '../../evil.txt'")
    # Listed in the manifest, hash and all: the manifest itself is refused.
    evil = {"path": "datasets/../../evil.txt", "bytes": 1, "sha256": sha256(b"x").hexdigest()}
    listed = [*json.loads(files[MANIFEST])["files"], evil]
    sneaky = {**with_manifest(files, files=listed), "datasets/../../evil.txt": b"x"}
    refused(write_tar_gz(tmp_path / "sneaky.tar.gz", sneaky), target, "malformed file list")
    absolute = with_manifest(files, files=[*listed[:-1], {**listed[-1], "path": "/tmp/evil.txt"}])
    refused(write_tar_gz(tmp_path / "abs.tar.gz", absolute), target, "malformed file list")
    linked = write_tar_gz(
        tmp_path / "link.tar.gz", files, symlinks={"datasets/evil.jsonl": "/etc/passwd"}
    )
    refused(linked, target, "unexpected entry 'datasets/evil.jsonl'")
    assert not list(tmp_path.rglob("evil*"))


def test_backup_refuses_an_existing_file_and_a_directory_without_registry(
    small: Small, tmp_path: Path
) -> None:
    existing = tmp_path / "taken.tar.gz"
    existing.write_bytes(b"keep me")
    with pytest.raises(BackupError, match=f"{existing} already exists; choose a new name"):
        backup(small.data_dir, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(BackupError, match=f"no registry at {tmp_path / 'registry.sqlite3'}"):
        backup(tmp_path, tmp_path / "new.tar.gz")
    with pytest.raises(BackupError, match=f"the folder {tmp_path / 'nope'} does not exist"):
        backup(small.data_dir, tmp_path / "nope" / "new.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.tar.gz"]


def test_backup_of_a_registry_naming_a_missing_file_fails_cleanly(
    small: Small, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    shutil.copytree(small.data_dir, data_dir)
    (dataset,) = data_dir.glob("datasets/*.jsonl")
    dataset.unlink()
    with pytest.raises(BackupError, match=f"{dataset}, named by the registry, is missing"):
        backup(data_dir, tmp_path / "out.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]


def test_cli_exit_codes_and_one_line_errors(
    small: Small, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b.tar.gz"
    result = run("backup", str(out), "--data-dir", str(small.data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (0.0 MB): 2 files, model versions none")
    assert "30 stored tickets" in result.stdout

    line = one_line_error(run("backup", str(out), "--data-dir", str(small.data_dir)), "backup")
    assert line.endswith(f"{out} already exists; choose a new name")
    line = one_line_error(
        run("backup", str(tmp_path / "c.tar.gz"), "--data-dir", str(tmp_path)), "backup"
    )
    assert "no registry at" in line
    monkeypatch.setenv("TICKETSERVE_DATA_DIR", str(small.data_dir))  # the service's setting
    assert run("backup", str(tmp_path / "d.tar.gz")).returncode == 0

    target = tmp_path / "restored"
    result = run("restore", str(out), "--data-dir", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"restored {out} into {target}: 2 files,")
    line = one_line_error(run("restore", str(out), "--data-dir", str(target)), "restore")
    assert line.endswith("restore only into an empty or new data directory")
    (tmp_path / "file").write_text("x")
    line = one_line_error(
        run("restore", str(out), "--data-dir", str(tmp_path / "file" / "var")), "restore"
    )
    assert str(tmp_path / "file") in line
    monkeypatch.setenv("TICKETSERVE_DATA_DIR", str(tmp_path / "from-env"))
    assert run("restore", str(out)).returncode == 0
    assert (tmp_path / "from-env" / "registry.sqlite3").is_file()
    result = run("restore")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
