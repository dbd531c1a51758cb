"""Pack a trained model directory into a self-contained TorchServe archive (.mar).

The only module that knows the archive layout. An archive holds, flat at its root:

    ticket_handler.py    the handler (handlers/ticket_handler.py)
    ticket_requests.py   request parsing / answer formatting (handlers/ticket_requests.py)
    ticket_model.py      the model definition: a verbatim copy of training/inference/model.py
    ticket_similar.py    similar-ticket lookups: a verbatim copy of
    training/inference/similar_index.py model-config.yaml    batching, workers and timeouts for
    TorchServe, `handler:` settings model.safetensors, config.json, tokenizer files, labels.json,
    ticket_model.json, training_config.json, metrics.json, ticket_cleaning.py + cleaning.json (the
    cleaning the model was trained with, training/inference/model_cleaning.py)   (the model
    directory, without its report pictures)
    MAR-INF/MANIFEST.json  model name and version (TorchServe takes the version from here)

It imports nothing from `training/`, so an archive keeps working after the project changes.
Archives are named `<name>-v<version>.mar`; `<name>.mar` is a symlink to the newest one, which
config.properties loads at start. Handler files are read from the repository's `handlers/`
directory as files (training never imports handlers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from training.config import DEFAULT_TOP_K
from training.errors import UserError
from training.files import module_file

HANDLERS_DIR = Path(__file__).resolve().parents[2] / "handlers"
# The files every archive carries, found without importing them (they import torch).
MODEL_SOURCE = module_file("training.inference.model")
SIMILAR_SOURCE = module_file("training.inference.similar_index")
SIMILAR_MODULE_FILE = "ticket_similar.py"
HANDLER_FILE = "ticket_handler.py"
HELPER_FILES = ("ticket_requests.py",)
MODEL_MODULE_FILE = "ticket_model.py"
CONFIG_FILE = "model-config.yaml"
# training.inference.model's WEIGHTS_FILE and LABELS_FILE, named here so this module needs no torch
# import.
WEIGHTS_FILE = "model.safetensors"
LABELS_FILE = "labels.json"
# Files of a model directory that serve no purpose in a served archive.
SKIPPED_SUFFIXES = (".png", ".md")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")


class ArchiveError(UserError):
    """The archive cannot be built as asked; the message names the value at fault."""


@dataclass(frozen=True)
class ServingSettings:
    """What TorchServe and the handler read from the archive's model-config.yaml."""

    batch_size: int = 16
    max_batch_delay_ms: int = 5  # a lone request waits this long: the floor of its latency
    workers: int = 1
    response_timeout_s: int = 60
    startup_timeout_s: int = 180
    forward_batch_size: int = 128
    num_threads: int = 0  # 0: the worker's default

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_batch_delay_ms", "workers", "response_timeout_s",
                     "startup_timeout_s", "forward_batch_size"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArchiveError(f"serving setting {name} must be a positive integer: {value!r}")
        if not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ArchiveError(f"serving setting num_threads must be >= 0: {self.num_threads!r}")

    def model_config(self, top_k: int) -> dict[str, Any]:
        return {
            "minWorkers": self.workers,
            "maxWorkers": self.workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s,
            "startupTimeout": self.startup_timeout_s,
            "handler": {
                "top_k": top_k,
                "forward_batch_size": self.forward_batch_size,
                "num_threads": self.num_threads,
            },
        }


def archive_file_name(name: str, version: str) -> str:
    return f"{name}-v{version}.mar"


def archived_versions(store: str | Path, name: str = "ticket") -> list[str]:
    """Versions of `name` in the store, integers first in numeric order."""
    pattern = re.compile(rf"^{re.escape(name)}-v(.+)\.mar$")
    found = [m.group(1) for p in Path(store).glob(f"{name}-v*.mar") if (m := pattern.match(p.name))]
    return sorted(found, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


def next_version(store: str | Path, name: str = "ticket") -> str:
    """One more than the highest integer version of `name` in the store (1 for none)."""
    numbers = [int(v) for v in archived_versions(store, name) if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def build_archive(
    model_dir: str | Path,
    store: str | Path = "model_store",
    version: str | None = None,
    name: str = "ticket",
    settings: ServingSettings | None = None,
    update_latest: bool = True,
) -> Path:
    """Write `<store>/<name>-v<version>.mar` from a trained model directory; return its path.

    The archive is built under a temporary name in the store and linked into place without
    overwriting: an existing version is an error, and a version picked automatically (the next
    free integer) moves on if another build takes it first. With `update_latest`, `<name>.mar`
    then points at the new archive.
    """
    model_dir = Path(model_dir)
    if not (model_dir / WEIGHTS_FILE).is_file() or not (model_dir / LABELS_FILE).is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a trained model directory (no model.safetensors and labels.json)"
        )
    if not NAME_PATTERN.match(name):
        raise ArchiveError(f"archive name {name!r} may hold only letters, digits, '_', '-', '.'")
    if version is not None and not VERSION_PATTERN.match(str(version)):
        raise ArchiveError(f"version {version!r} may hold only letters, digits, '_' and '.'")
    settings = settings or ServingSettings()
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    if version is not None and (store / archive_file_name(name, str(version))).exists():
        raise ArchiveError(
            f"{store / archive_file_name(name, str(version))} already exists; "
            "choose another --version"
        )

    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=store) as tmp:
        staging = Path(tmp)
        while True:
            chosen = str(version) if version is not None else next_version(store, name)
            built = _run_archiver(model_dir, staging, name, chosen, settings)
            target = store / archive_file_name(name, chosen)
            try:
                os.link(built, target)  # atomic and never overwrites
            except FileExistsError:
                if version is not None:
                    raise ArchiveError(
                        f"{target} already exists; choose another --version"
                    ) from None
                continue
            break
    if update_latest:
        point_latest(store, name, chosen)
    return target


def point_latest(store: str | Path, name: str, version: str) -> Path:
    """Make `<store>/<name>.mar` a symlink to the archive of `version` (atomically)."""
    store = Path(store)
    target = archive_file_name(name, version)
    if not (store / target).is_file():
        raise ArchiveError(f"{store / target} does not exist")
    link = store / f"{name}.mar"
    temporary = store / f".{name}.mar.{uuid.uuid4().hex}"
    temporary.symlink_to(target)
    temporary.replace(link)
    return link


def read_manifest(archive: str | Path) -> dict[str, Any]:
    """The MANIFEST.json of an archive (model name, version, handler, ...)."""
    with zipfile.ZipFile(archive) as mar:
        return json.loads(mar.read("MAR-INF/MANIFEST.json"))


def _run_archiver(
    model_dir: Path, staging: Path, name: str, version: str, settings: ServingSettings
) -> Path:
    """Stage the files and run torch-model-archiver; returns the .mar it wrote in `staging`."""
    source = staging / "src"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir()
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix not in SKIPPED_SUFFIXES:
            shutil.copy2(path, source / path.name)
    shutil.copy2(MODEL_SOURCE, source / MODEL_MODULE_FILE)
    shutil.copy2(SIMILAR_SOURCE, source / SIMILAR_MODULE_FILE)
    for file_name in (HANDLER_FILE, *HELPER_FILES):
        if not (HANDLERS_DIR / file_name).is_file():
            raise FileNotFoundError(f"handler file {HANDLERS_DIR / file_name} is missing")
        shutil.copy2(HANDLERS_DIR / file_name, source / file_name)
    (source / CONFIG_FILE).write_text(
        "# Written by training/export/archive.py: batching, workers and timeouts; handler "
        "settings\n" + yaml.safe_dump(settings.model_config(_top_k(model_dir)), sort_keys=False),
        encoding="utf-8",
    )
    extra = [
        str(p)
        for p in sorted(source.iterdir())
        if p.name not in (HANDLER_FILE, MODEL_MODULE_FILE, CONFIG_FILE, WEIGHTS_FILE)
    ]
    out = staging / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    command = [
        sys.executable, "-m", "model_archiver.model_packaging",
        "--model-name", name,
        "--version", version,
        "--handler", str(source / HANDLER_FILE),
        "--model-file", str(source / MODEL_MODULE_FILE),
        "--serialized-file", str(source / WEIGHTS_FILE),
        "--extra-files", ",".join(extra),
        "--config-file", str(source / CONFIG_FILE),
        "--export-path", str(out),
        # Stored, not deflated: weights barely compress, and TorchServe unpacks it faster.
        "--archive-format", "zip-store",
    ]  # fmt: skip
    # The archiver stages files in $TMPDIR/<name>: give each build its own TMPDIR.
    env = {**os.environ, "TMPDIR": str(staging), "TEMP": str(staging)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    built = out / f"{name}.mar"
    if result.returncode != 0 or not built.is_file():
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ArchiveError(
            f"torch-model-archiver failed ({result.returncode}): "
            + (detail[-1] if detail else "no output")
        )
    shutil.rmtree(source)
    return built


def _top_k(model_dir: Path) -> int:
    """The top_k the model was trained to report (training_config.json), the default when
    unknown."""
    try:
        config = json.loads((model_dir / "training_config.json").read_text(encoding="utf-8"))
        return int(config.get("top_k", DEFAULT_TOP_K))
    except (OSError, ValueError, TypeError):
        return 3
