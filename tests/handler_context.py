"""A fake of the parts of TorchServe's `Context` the handler uses (tests/test_handler.py), and
the archive's handler initialised with it as a TorchServe worker initialises it."""

from __future__ import annotations

import importlib
import json
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class FakeMetrics:
    counters: Counter = field(default_factory=Counter)

    def add_counter(self, name: str, value: int, idx: object, dimensions: list) -> None:
        self.counters[name] += value


@dataclass
class FakeContext:
    """The parts of TorchServe's `Context` the handler uses, recording what it sets."""

    model_dir: Path
    headers: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[int, tuple[int, str]] = field(default_factory=dict)
    content_types: dict[int, str] = field(default_factory=dict)
    metrics: FakeMetrics = field(default_factory=FakeMetrics)
    model_name: str = "ticket"

    @property
    def system_properties(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "gpu_id": None, "batch_size": 8}

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.model_dir / "MAR-INF" / "MANIFEST.json").read_text())

    @property
    def model_yaml_config(self) -> dict[str, Any]:
        return yaml.safe_load((self.model_dir / "model-config.yaml").read_text())

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.headers[idx].get(key) if idx < len(self.headers) else None

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.statuses[idx] = (code, phrase)

    def batch(self, headers: list[dict[str, Any]]) -> FakeContext:
        """The context of one batch: fresh per-request state, same model."""
        return FakeContext(self.model_dir, headers=headers, metrics=self.metrics)


def unpack(archive: Path, target: Path) -> Path:
    """The .mar's files, as TorchServe unpacks them for its worker."""
    with zipfile.ZipFile(archive) as mar:
        mar.extractall(target)
    return target


def archive_handler(unpacked: Path) -> Any:
    """The archive's own handler module (not the project's), initialised on a FakeContext."""
    sys.path.insert(0, str(unpacked))  # as TorchServe puts the unpacked archive first
    try:
        for name in [n for n in sys.modules if n.startswith("ticket_")]:
            del sys.modules[name]  # another archive's copies, imported before
        module = importlib.import_module("ticket_handler")
        handler = module.TicketHandler()
        handler.initialize(FakeContext(unpacked))
    finally:
        sys.path.remove(str(unpacked))
    assert Path(module.__file__).parent == unpacked
    assert Path(sys.modules["ticket_cleaning"].__file__).parent == unpacked
    return handler
