"""Writing files so that a reader sees the old content or the whole new one, never half; and
where a module's source lies."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

PRIVATE_FILE = 0o600
SHARED_FILE = 0o644


def write_atomic(path: str | os.PathLike[str], content: bytes, mode: int = SHARED_FILE) -> None:
    """Write `content` to `path` via a temporary file in the same directory, fsync and rename.

    `mode` is the new file's permission (before the umask): PRIVATE_FILE for the service's data.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def module_file(name: str) -> Path:
    """The source file of module `name`, found without importing the module itself (the
    archive copies some that import torch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(name)
    return Path(spec.origin)
