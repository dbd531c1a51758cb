"""Suspected label errors: the training rows whose given label their held-out scores contradict.

Confident learning (Northcutt et al., 2021, with cleanlab's implementation): per head, each
row's calibrated out-of-fold probabilities (a model that never learned the row scored it) and
its given label estimate, per class, how often a label is given where another class is meant
(the confident joint); the rows it prunes as such are the candidates. A candidate is flagged
when, besides, its given label's probability is below `MAX_RELATIVE_CONFIDENCE` of its class's
confident threshold (cleanlab's per-class threshold: the mean probability of the class over the
rows given it): on noisy help-desk data (queues that overlap) confident learning alone prunes a
third of the rows, most of them honest borderline tickets, while a label that a held-out model
all but rules out, for its class, is the error worth an agent's look. The cut-off was chosen on
validation data (labels flipped at random in the training part of the shared benchmark set,
seeds apart from the benchmark's; never its test split): the best F1 of flagged rows against
flips (docs/benchmarks.md, `bench/label_issues.py`).

Flagged rows are ranked by that ratio, the score, lowest first. The model directory keeps the
ranking in `label_issues.json` (at most `MAX_STORED` rows per head, excerpts of
`EXCERPT_CHARS`), so the service and the command line read it without recomputing.

Which rows have held-out scores: fast mode, every row the shipped heads learned (train and
validation out of fold; the test split scored by heads fitted before they learned it). Full mode,
the train split only, scored out of fold by the linear heads the fine-tune starts from, with a
temperature fitted on those scores; the fine-tuned model itself has none (it learned every
training row), and the validation and test rows are left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LABEL_ISSUES_FILE = "label_issues.json"
FORMAT = 1
MAX_STORED = 500  # flagged rows kept per head, the most suspect first
EXCERPT_CHARS = 280
# The default cut-off (see the module docstring): a pruned row is flagged when its given label's
# probability is below this share of the class's confident threshold.
MAX_RELATIVE_CONFIDENCE = 0.05
METHOD = (
    "confident learning (cleanlab, prune by noise rate), flagged where the given label's "
    f"probability is below {MAX_RELATIVE_CONFIDENCE:g} of its class's confident threshold"
)


@dataclass(frozen=True)
class Flagged:
    """One head's flagged rows, the most suspect first, and every row's score."""

    rows: np.ndarray  # indices, most suspect first
    score: np.ndarray  # per row: given label's probability / its class's confident threshold


def flag_issues(
    given: np.ndarray, probs: np.ndarray, max_relative_confidence: float = MAX_RELATIVE_CONFIDENCE
) -> Flagged:
    """The rows whose given label (class indices `given`) the calibrated held-out probabilities
    `probs` contradict, the most suspect first."""
    given = np.asarray(given, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(given) != len(probs):
        raise ValueError(f"{len(given)} labels for probabilities of shape {probs.shape}")
    if len(given) and (given.min() < 0 or given.max() >= probs.shape[1]):
        raise ValueError(f"labels must be class indices below {probs.shape[1]}")
    if len(given) == 0:
        return Flagged(np.zeros(0, dtype=np.int64), np.zeros(0))
    quality = probs[np.arange(len(given)), given]
    # cleanlab's confident thresholds: each class's mean probability over the rows given it.
    sums = np.bincount(given, weights=quality, minlength=probs.shape[1])
    counts = np.bincount(given, minlength=probs.shape[1])
    threshold = sums / np.maximum(counts, 1)
    score = quality / np.clip(threshold[given], 1e-12, None)
    flagged = confident_learning(given, probs) & (score < max_relative_confidence)
    rows = np.flatnonzero(flagged)
    return Flagged(rows[np.argsort(score[rows], kind="stable")], score)


def confident_learning(given: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """cleanlab's mask of the rows confident learning prunes (prune by noise rate). Classes that
    no row has are left out of the call (cleanlab wants every class given at least once)."""
    from cleanlab.filter import find_label_issues

    present = np.unique(given)
    if len(present) < 2:
        return np.zeros(len(given), dtype=bool)
    remap = np.full(probs.shape[1], -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    # n_jobs=1: no worker processes inside a training job or a request.
    return np.asarray(
        find_label_issues(remap[given], sub, filter_by="prune_by_noise_rate", n_jobs=1),
        dtype=bool,
    )


def head_report(
    frame: pd.DataFrame,
    head: str,
    names: list[str],
    probs: np.ndarray,
    max_relative_confidence: float = MAX_RELATIVE_CONFIDENCE,
) -> dict[str, Any]:
    """One head's flagged rows of `frame` (rows in the order of `probs`) as stored."""
    given = np.asarray([names.index(v) for v in frame[head]], dtype=np.int64)
    found = flag_issues(given, probs, max_relative_confidence)
    flagged = found.rows
    ids = row_ids(frame)
    texts = frame["text"].tolist()
    per_class: dict[str, int] = {}
    for i in flagged:
        per_class[names[given[i]]] = per_class.get(names[given[i]], 0) + 1
    issues = []
    for i in flagged[:MAX_STORED]:
        suggested = int(np.argmax(np.where(np.arange(len(names)) == given[i], -1.0, probs[i])))
        issues.append(
            {
                "row_id": ids[i],
                "text": excerpt(texts[i]),
                "text_sha256": text_sha256(texts[i]),
                "given": names[given[i]],
                "suggested": names[suggested],
                "score": round(float(found.score[i]), 6),
                "given_probability": round(float(probs[i, given[i]]), 6),
                "suggested_probability": round(float(probs[i, suggested]), 6),
            }
        )
    return {
        "available": True,
        "rows_scored": len(given),
        "flagged": len(flagged),
        "per_class": dict(sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))),
        "issues": issues,
    }


def report(heads: dict[str, dict[str, Any]], source: str) -> dict[str, Any]:
    """The whole label_issues.json: how the rows were scored and flagged, and every head."""
    return {
        "format": FORMAT,
        "method": METHOD,
        "max_relative_confidence": MAX_RELATIVE_CONFIDENCE,
        "source": source,
        "heads": heads,
    }


def summary(full: dict[str, Any]) -> dict[str, Any]:
    """What the metrics and the model card keep of it: counts, no texts."""
    return {
        "source": full["source"],
        "method": full["method"],
        "heads": {
            head: {k: v for k, v in h.items() if k != "issues"} for head, h in full["heads"].items()
        },
    }


def row_ids(frame: pd.DataFrame) -> list[str]:
    """How a user finds each row: the service's stored row id (`dataset:line`), else the row
    number in the file trained on (from 1, header excluded)."""
    if "row_id" in frame.columns:
        return [str(v) for v in frame["row_id"]]
    return [str(int(v)) for v in frame["row"]]


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write(directory: str | Path, full: dict[str, Any]) -> None:
    path = Path(directory) / LABEL_ISSUES_FILE
    path.write_text(json.dumps(full, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def load(directory: str | Path) -> dict[str, Any] | None:
    """A model directory's label issues; None for a model trained before they were kept."""
    path = Path(directory) / LABEL_ISSUES_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def in_data(
    stored: dict[str, Any], head: str, texts: list[str], labels: list[str], rows: list[int]
) -> tuple[list[dict[str, Any]], int, int]:
    """A head's stored issues found in a data file (its cleaned `texts`, `labels` of the head and
    row numbers), each with `row` set to the file's row number: (those still carrying the given
    label, those whose label the file has changed since, those not in the file)."""
    pairs = zip(texts, labels, rows, strict=True)
    where = {text_sha256(t): (row, label) for t, label, row in pairs}
    found, changed, missing = [], 0, 0
    for issue in stored["heads"][head]["issues"]:
        match = where.get(issue["text_sha256"])
        if match is None:
            missing += 1
        elif match[1] != issue["given"]:
            changed += 1
        else:
            found.append({**issue, "row": match[0]})
    return found, changed, missing
