"""A model version's suspected label errors, as training stored them
(training/fit/label_issues.py)."""

from __future__ import annotations

import json
from pathlib import Path

from shim.errors import NotFound
from shim.schemas import LabelIssuePublic, LabelIssuesPublic
from shim.store.registry import Store
from training.fit import label_issues

NOT_KEPT = (
    "this version was trained before suspected label errors were kept: train again to rank them"
)


def page(
    store: Store, version: int, head: str | None, offset: int, limit: int
) -> LabelIssuesPublic:
    """`limit` issues of `head` (default: the version's first head) from `offset`, the most
    suspect first; 404 for an unknown version or head."""
    record = store.versions.get(version)  # 404 for an unknown version
    heads = record.heads
    head = head or (heads[0] if heads else None)
    if head is None or head not in heads:
        raise NotFound(
            f"version {version} has no head {head!r}; its heads: {', '.join(heads)}",
            {"heads": heads},
            code="head_not_found",
        )
    stored = _load(record.model_dir)
    empty = {"version": version, "head": head, "offset": offset, "limit": limit, "issues": []}
    if stored is None or head not in stored.get("heads", {}):
        return LabelIssuesPublic(**empty, available=False, reason=NOT_KEPT)
    found = stored["heads"][head]
    if not found.get("available"):
        return LabelIssuesPublic(
            **empty, available=False, reason=found.get("reason"), source=stored.get("source")
        )
    issues = found["issues"]
    return LabelIssuesPublic(
        **{**empty, "issues": [LabelIssuePublic(**i) for i in issues[offset : offset + limit]]},
        available=True,
        source=stored.get("source"),
        method=stored.get("method"),
        rows_scored=found["rows_scored"],
        flagged=found["flagged"],
        stored=len(issues),
        per_class=found["per_class"],
    )


def _load(model_dir: Path) -> dict | None:
    try:
        return label_issues.load(model_dir)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
