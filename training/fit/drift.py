"""What live tickets are compared with to tell drift: a model's reference, and the distance.

Training keeps three references in the model's metrics (`drift_reference`): the label counts of
the data it learned from, per head; the histogram of its calibrated confidence on validation, per
head; and the histogram of the per-ticket share of rare word pieces
(`training.inference.model.rare_token_shares`). The service (`shim.quality.drift`) builds the same
histograms from its predictions log and compares them with `distance`. Each reference keeps
its bin edges, so a model keeps its reference if the defaults here change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

CONFIDENCE_EDGES = tuple(round(i / 10, 1) for i in range(11))
# Most tickets of a language the tokenizer knows have no rare piece at all: fine bins near 0.
RARE_SHARE_EDGES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin of `edges` (the last bin includes its right edge; values are clipped)."""
    clipped = np.clip(np.asarray(list(values), dtype=np.float64), edges[0], edges[-1])
    return [int(n) for n in np.histogram(clipped, bins=np.asarray(edges))[0]]


def distance(live: Sequence[float], reference: Sequence[float]) -> float | None:
    """Jensen-Shannon distance (base 2) between two count vectors over the same bins: 0 for the
    same distribution, 1 for distributions with no bin in common; None when either is empty."""
    # Imported here: scipy.spatial costs the API process a quarter of a second to start.
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(live, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    return round(float(jensenshannon(p, q, base=2)), 6)


def label_vector(counts: Mapping[str, int], labels: Sequence[str]) -> list[int]:
    """`counts` in the order of `labels` (a label missing counts 0)."""
    return [int(counts.get(label, 0)) for label in labels]


def reference(
    label_counts: Mapping[str, Mapping[str, int]],
    confidences: Mapping[str, np.ndarray],
    rare_shares: Sequence[float | None],
) -> dict[str, Any]:
    """The `drift_reference` a model keeps: label counts per head, a confidence histogram per
    head, and the rare-piece histogram (None for a tokenizer that cannot tell)."""
    shares = [s for s in rare_shares if s is not None]
    return {
        "labels": {
            head: {str(label): int(n) for label, n in counts.items()}
            for head, counts in label_counts.items()
        },
        "confidence": {
            head: {"edges": list(CONFIDENCE_EDGES), "counts": histogram(values, CONFIDENCE_EDGES)}
            for head, values in confidences.items()
        },
        "rare_tokens": (
            {
                "edges": list(RARE_SHARE_EDGES),
                "counts": histogram(shares, RARE_SHARE_EDGES),
                "mean": round(float(np.mean(shares)), 6),
            }
            if shares
            else None
        ),
    }
