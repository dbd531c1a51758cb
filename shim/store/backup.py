"""`ticketserve backup` and `ticketserve restore`: the data directory as one .tar.gz.

A backup is consistent while the service runs: the registry is copied with SQLite's online
backup API (one transaction's view), and only the files that copy references are packed: the
datasets, each version's model directory and its .mar archive. All of them are immutable once the
registry names them, so a file written after the snapshot is never half-included; one deleted
after it (a replaced dataset, a deleted version) makes the backup start over.

The archive holds the registry (migrated to this release's schema, its paths relative to the data
directory), the files under their paths in the data directory and `backup-manifest.json` (format,
versions, sha256 of every file). Not included: jobs/ (spec and log of past training runs), logs/
and torchserve/ (its keys, config and logs are recreated at start).

`restore` fills an empty or new data directory only, after checking every file against the
manifest. It writes the registry last: an interrupted restore leaves no registry behind, so a
service started on it cannot take the files for orphans of a crash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from sqlalchemy import Connection, delete, select, update

from shim.store.job_record import Job, JobStatus
from shim.store.registry import PRIVATE_DIR, SCHEMA_VERSION, RegistryError
from shim.store.registry.database import Database, sqlite_url
from shim.store.registry.legacy import schema_version
from shim.store.registry.meta import get_meta
from shim.store.registry.tables import classify_jobs, datasets, jobs, versions
from shim.store.registry.versions import DEFAULT as DEFAULT_VERSION
from training.errors import UserError
from training.files import PRIVATE_FILE, fsync_dir

FORMAT = "ticketserve-backup"
FORMAT_VERSION = 1
MANIFEST = "backup-manifest.json"
REGISTRY = "registry.sqlite3"
# Where a backed-up file may go in the data directory: nothing else is ever written by restore.
DATA_FOLDERS = ("datasets", "models", "model_store")
ATTEMPTS = 3  # a snapshot goes stale when a file it names is deleted before it is packed
CHUNK = 1024 * 1024
BACKUP_INTERRUPTED = "interrupted: the backup was taken while this job ran"


class BackupError(UserError):
    """A backup cannot be written or restored; the message names what and where."""


@dataclass(frozen=True)
class Summary:
    """What a backup holds (or a restore brought back)."""

    path: Path
    files: int
    bytes: int
    versions: list[int]
    default_version: int | None
    dataset_rows: int
    schema_version: int


# -- backup -----------------------------------------------------------------------------------


def backup(data_dir: str | Path, out: str | Path) -> Summary:
    """Write a consistent backup of `data_dir` to the new file `out` (a .tar.gz)."""
    root = Path(data_dir).resolve()
    out = Path(out).absolute()
    registry = root / REGISTRY
    if not registry.is_file():
        raise BackupError(f"no registry at {registry}: is {root} a ticketserve data directory?")
    if out.exists() or out.is_symlink():
        raise BackupError(f"{out} already exists; choose a new name")
    if not out.parent.is_dir():
        raise BackupError(f"the folder {out.parent} does not exist")
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # mode 0700
    missing = None
    try:
        for _ in range(ATTEMPTS):
            snapshot = work / REGISTRY
            snapshot.unlink(missing_ok=True)
            _snapshot(registry, snapshot, root)
            try:
                return _pack(root, snapshot, out, work)
            except FileNotFoundError as exc:
                missing = exc.filename  # deleted after the snapshot, or lost: take a new one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raise BackupError(f"{missing}, named by the registry, is missing (tried {ATTEMPTS} snapshots)")


def _snapshot(registry: Path, snapshot: Path, root: Path) -> None:
    """Copy the live registry (one consistent view), then make the copy this release's schema."""
    try:
        source = sqlite3.connect(registry, timeout=30)
        try:
            copy = sqlite3.connect(snapshot, isolation_level=None)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the registry {registry}: {exc}") from None
    copy = Database(sqlite_url(snapshot), root, name=registry)
    try:
        copy.upgrade()
        with copy.transaction() as conn:
            _end_unfinished_jobs(conn)
            # Classify jobs are scoring runs whose files a backup does not carry: none restored.
            conn.execute(delete(classify_jobs))
    finally:
        copy.close()
    db = sqlite3.connect(snapshot, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        db.close()


def _end_unfinished_jobs(conn: Connection) -> None:
    # A restored registry must not claim a running job: the service restored from it would try
    # to stop that job's process, which may be the live training of the original service.
    for job_id, record in conn.execute(select(jobs.c.id, jobs.c.record)).all():
        job = Job.from_dict(json.loads(record))
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            job.fail(BACKUP_INTERRUPTED)
            job.pid = None
            conn.execute(
                update(jobs).where(jobs.c.id == job_id).values(record=json.dumps(job.to_dict()))
            )


def _pack(root: Path, snapshot: Path, out: Path, work: Path) -> Summary:
    contents = _referenced(snapshot, root)
    files = [(REGISTRY, snapshot)] + [
        (path.relative_to(root).as_posix(), path) for path in contents.files
    ]
    tmp = work / "backup.tar.gz"
    entries = []
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, path in files:
            entries.append(_add_file(tar, name, path))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ticketserve_version": ticketserve_version(),
            "created_at": datetime.now(UTC).isoformat(),
            "schema_version": SCHEMA_VERSION,
            "source": str(root),
            "versions": contents.versions,
            "default_version": contents.default_version,
            "dataset_rows": contents.dataset_rows,
            "files": entries,
        }
        body = json.dumps(manifest, indent=2).encode()
        tar.addfile(_tar_info(MANIFEST, len(body)), io.BytesIO(body))
    tmp.chmod(PRIVATE_FILE)  # it holds every ticket, like the data directory it comes from
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    try:
        os.link(tmp, out)  # never replaces a file that appeared meanwhile, unlike a rename
    except FileExistsError:
        raise BackupError(f"{out} already exists; choose a new name") from None
    fsync_dir(out.parent)
    return Summary(
        path=out,
        files=len(entries),
        bytes=out.stat().st_size,
        versions=contents.versions,
        default_version=contents.default_version,
        dataset_rows=contents.dataset_rows,
        schema_version=SCHEMA_VERSION,
    )


@dataclass(frozen=True)
class _Contents:
    files: list[Path]
    versions: list[int]
    default_version: int | None
    dataset_rows: int


def _referenced(snapshot: Path, root: Path) -> _Contents:
    """The files the snapshot's registry names, all inside the data directory."""
    db = Database(sqlite_url(snapshot), root)
    try:
        with db.reading() as conn:
            uploads = conn.execute(select(datasets.c.file, datasets.c.rows).order_by("file")).all()
            models = conn.execute(
                select(versions.c.version, versions.c.model_dir, versions.c.archive).order_by(
                    "version"
                )
            ).all()
            default = get_meta(conn, DEFAULT_VERSION)
    finally:
        db.close()
    files = [_inside(root, f"datasets/{name}", "a dataset file") for name, _ in uploads]
    for version, model_dir, archive in models:
        directory = _inside(root, model_dir, f"the model directory of version {version}")
        if not directory.is_dir():
            raise FileNotFoundError(2, "no such directory", str(directory))
        files += sorted(p for p in directory.rglob("*") if p.is_file())
        files.append(_inside(root, archive, f"the archive of version {version}"))
    return _Contents(
        files=files,
        versions=[v for v, _, _ in models],
        default_version=int(default) if default is not None else None,
        dataset_rows=sum(rows for _, rows in uploads),
    )


def _inside(root: Path, stored: str, what: str) -> Path:
    path = Path(os.path.normpath(root / stored))  # no resolve(): a symlinked folder is fine
    if not path.is_relative_to(root) or path.relative_to(root).parts[0] not in DATA_FOLDERS:
        raise BackupError(f"{what}, {stored}, is outside {root}'s {', '.join(DATA_FOLDERS)}")
    return path


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    """Pack one file, hashing it on the way; returns its manifest entry."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        reader = _HashingReader(handle)
        tar.addfile(_tar_info(name, size), reader)
    return {"path": name, "bytes": size, "sha256": reader.digest.hexdigest()}


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, PRIVATE_FILE, int(datetime.now(UTC).timestamp())
    return info


class _HashingReader:
    """A file object that feeds what tarfile reads into a sha256."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


# -- restore ----------------------------------------------------------------------------------


def restore(archive: str | Path, data_dir: str | Path) -> Summary:
    """Lay out the backup `archive` in `data_dir`, which must be empty or not exist yet."""
    archive = Path(archive).absolute()
    target = Path(data_dir).absolute()
    if not archive.is_file():
        raise BackupError(f"no backup at {archive}")
    if target.exists() and not target.is_dir():
        raise BackupError(f"{target} is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise BackupError(
            f"{target} is not empty: restore only into an empty or new data directory"
        )
    # The folders this restore creates, innermost first: a failed restore removes them again.
    created = [path for path in (target, *target.parents) if not path.exists()]
    target.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    target.chmod(PRIVATE_DIR)
    # Unpacked inside the target (same filesystem, and the service user may write nowhere else).
    staging = target / f".restore-{uuid.uuid4().hex[:8]}"
    try:
        manifest = _unpack(archive, staging)
        _verify(archive, staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            folder.rmdir()
        raise
    # The registry last: until it is there, no service would start on half a restore.
    for name in sorted((p.name for p in staging.iterdir()), key=lambda n: (n == REGISTRY, n)):
        os.replace(staging / name, target / name)
    staging.rmdir()
    fsync_dir(target)
    return Summary(
        path=target,
        files=len(manifest["files"]),
        bytes=sum(entry["bytes"] for entry in manifest["files"]),
        versions=list(manifest.get("versions", [])),
        default_version=manifest.get("default_version"),
        dataset_rows=int(manifest.get("dataset_rows", 0)),
        schema_version=int(manifest["schema_version"]),
    )


def _unpack(archive: Path, staging: Path) -> dict[str, Any]:
    """Check the archive's entries against its manifest, then extract them to `staging`."""
    try:
        # The whole gzip stream first: its CRC covers every byte, tarfile stops reading early.
        with gzip.open(archive, "rb") as stream:
            while stream.read(CHUNK):
                pass
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()  # reads the whole stream: a damaged one fails here
            by_name = {m.name: m for m in members}
            if MANIFEST not in by_name:
                raise BackupError(
                    f"{archive} is damaged or no ticketserve backup: it holds no {MANIFEST}"
                )
            manifest = _read_manifest(archive, tar, by_name.pop(MANIFEST))
            listed = {entry["path"] for entry in manifest["files"]}
            for member in by_name.values():
                if member.name not in listed or not member.isfile():
                    raise BackupError(f"{archive}: unexpected entry {member.name!r}")
            missing = sorted(listed - by_name.keys())
            if missing:
                raise BackupError(f"{archive}: {missing[0]} is in the manifest but missing")
            staging.mkdir(mode=PRIVATE_DIR)
            tar.extractall(staging, members=list(by_name.values()), filter="data")
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        if isinstance(exc, UserError):
            raise
        reason = str(exc) or type(exc).__name__
        raise BackupError(f"{archive} is damaged or unreadable: {reason}") from None
    return manifest


def _read_manifest(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict:
    handle = tar.extractfile(member)
    try:
        manifest = json.loads(handle.read()) if handle else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    numbered = isinstance(manifest, dict) and all(
        isinstance(manifest.get(key), int) for key in ("format_version", "schema_version")
    )
    if not numbered or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: {MANIFEST} is not a ticketserve backup manifest")
    if manifest["format_version"] > FORMAT_VERSION:
        raise BackupError(
            f"{archive} has backup format {manifest['format_version']}, newer than this "
            f"release reads ({FORMAT_VERSION}); restore it with the release that wrote it"
        )
    if manifest["schema_version"] > SCHEMA_VERSION:
        raise RegistryError(
            f"{archive} holds a registry of schema version {manifest['schema_version']}, newer "
            f"than this release knows ({SCHEMA_VERSION}); restore it with ticketserve "
            f"{manifest.get('ticketserve_version', '(newer)')} or later"
        )
    files = manifest.get("files")
    if not isinstance(files, list) or not all(_well_formed(entry) for entry in files):
        raise BackupError(f"{archive}: {MANIFEST} has a malformed file list")
    if REGISTRY not in {entry["path"] for entry in files}:
        raise BackupError(f"{archive} holds no {REGISTRY}")
    return manifest


def _well_formed(entry: Any) -> bool:
    """A manifest entry with a hash and size, naming the registry or a file in a data folder."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return False
    path = PurePosixPath(entry["path"])
    safe = not path.is_absolute() and ".." not in path.parts and str(path) == entry["path"]
    where = str(path) == REGISTRY or (len(path.parts) > 1 and path.parts[0] in DATA_FOLDERS)
    described = isinstance(entry.get("sha256"), str) and isinstance(entry.get("bytes"), int)
    return safe and where and described


def _verify(archive: Path, staging: Path, manifest: dict[str, Any]) -> None:
    for entry in manifest["files"]:
        digest = hashlib.sha256()
        with open(staging / entry["path"], "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
            # On disk before the registry names it: after a power cut, no registry or all files.
            os.fsync(handle.fileno())
        if digest.hexdigest() != entry["sha256"]:
            raise BackupError(
                f"{archive}: {entry['path']} is damaged (its sha256 differs from the manifest)"
            )
    db = sqlite3.connect(staging / REGISTRY)
    try:
        found = schema_version(db)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{archive}: {REGISTRY} is not a usable registry: {exc}") from None
    finally:
        db.close()
    if found != manifest["schema_version"]:
        raise BackupError(
            f"{archive}: the registry has schema version {found}, the manifest says "
            f"{manifest['schema_version']}"
        )
    for folder in (staging, *(p for p in staging.rglob("*") if p.is_dir())):
        fsync_dir(folder)


def ticketserve_version() -> str:
    """The installed ticketserve's version (unknown when run from an uninstalled checkout)."""
    try:
        return metadata.version("ticketserve")
    except metadata.PackageNotFoundError:
        return "unknown"
