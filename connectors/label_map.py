"""Model labels -> the help desk's queue and priority names.

An explicit map (a JSON file: {"queue": {"Billing and Payments": "Billing"}, "priority": {"high":
"3 high"}}) wins; otherwise a label goes to the help desk's name that equals it ignoring case.
A label with neither has no target: it is never written, only mentioned in the note.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from connectors.base import DESK_HEADS

MAX_MAP_BYTES = 1_000_000


class LabelMapError(ValueError):
    """The label map file cannot be used; the message names the file and the entry."""


class LabelMap:
    def __init__(self, explicit: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.explicit = {head: dict(m) for head, m in (explicit or {}).items()}

    @classmethod
    def from_file(cls, path: Path) -> LabelMap:
        try:
            raw = path.read_bytes()
            if len(raw) > MAX_MAP_BYTES:
                raise LabelMapError(f"{path}: larger than {MAX_MAP_BYTES} bytes")
            data = json.loads(raw)
        except OSError as exc:
            raise LabelMapError(f"{path}: cannot read: {exc.strerror}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LabelMapError(f"{path}: not JSON: {exc}") from exc
        if not isinstance(data, dict) or not set(data) <= set(DESK_HEADS):
            raise LabelMapError(
                f"{path}: expected an object with keys among {', '.join(DESK_HEADS)}"
            )
        for head, mapping in data.items():
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and k and v for k, v in mapping.items()
            ):
                raise LabelMapError(f"{path}: {head!r} must map label names to non-empty names")
        return cls(data)

    def source(self, head: str, name: str) -> str:
        """The model label a help-desk `name` stands for: the explicit map read backwards, else
        the name itself (the service matches it to its labels ignoring case)."""
        for label, mapped in self.explicit.get(head, {}).items():
            if mapped == name:
                return label
        return name

    def target(self, head: str, label: str, names: list[str]) -> str | None:
        """The help desk's name for `label` of `head` among `names`, or None."""
        mapped = self.explicit.get(head, {}).get(label)
        if mapped is not None:
            return mapped
        folded = label.casefold()
        return next((name for name in names if name.casefold() == folded), None)
