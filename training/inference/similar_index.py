"""Similar tickets: each model version's stored tickets, searchable by the model's own embedding.

A model directory keeps the pooled embedding (L2-normalised, as the heads see it) of every
ticket it was trained from, in `similar_vectors.npy` (float16: half the size, and cosine
similarity to three decimals), and beside it in `similar_tickets.json` each ticket's id, labels
and an excerpt of its text as stored (cleaned, and masked when masking is on). A lookup is exact:
one matrix product and a partial sort. `bench/similar.py` measured it against an approximate
(HNSW) index at 1,000 to 100,000 tickets on 2 cores: at 100,000 exact search took 8 ms (p95,
about a seventh of the encoder's time per ticket) with recall 1, where HNSW found 63 % of the
true ten nearest, so no approximate index is kept (docs/benchmarks.md).

Copied verbatim into every .mar (as `ticket_similar.py`): it imports only numpy and the standard
library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

VECTORS_FILE = "similar_vectors.npy"
TICKETS_FILE = "similar_tickets.json"
FORMAT = 1
MAX_K = 20  # most similar tickets one answer lists
EXCERPT_CHARS = 280


def excerpt(text: str) -> str:
    """The stored text of a ticket: whitespace collapsed, at most EXCERPT_CHARS characters."""
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def write_index(directory: str | Path, vectors: np.ndarray, tickets: list[dict[str, Any]]) -> None:
    """Store `vectors` (one row per ticket) and `tickets` ({id, labels, text}) in `directory`."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(tickets):
        raise ValueError(f"{len(tickets)} tickets for vectors of shape {vectors.shape}")
    directory = Path(directory)
    np.save(directory / VECTORS_FILE, _normalised(vectors).astype(np.float16), allow_pickle=False)
    document = {"format": FORMAT, "metric": "cosine", "tickets": tickets}
    (directory / TICKETS_FILE).write_text(
        json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8"
    )


class SimilarIndex:
    """A version's stored tickets and their embeddings, searched exactly by cosine similarity."""

    def __init__(self, vectors: np.ndarray, tickets: list[dict[str, Any]]) -> None:
        if len(vectors) != len(tickets):
            raise ValueError(f"{len(tickets)} tickets for {len(vectors)} vectors")
        self.vectors = _normalised(np.asarray(vectors, dtype=np.float32))
        self.tickets = tickets

    def __len__(self) -> int:
        return len(self.tickets)

    @classmethod
    def load(cls, directory: str | Path) -> SimilarIndex | None:
        """The index of a model directory; None for a model that keeps none."""
        directory = Path(directory)
        vectors, tickets = directory / VECTORS_FILE, directory / TICKETS_FILE
        if not vectors.is_file() or not tickets.is_file():
            return None
        document = json.loads(tickets.read_text(encoding="utf-8"))
        return cls(np.load(vectors, allow_pickle=False), document["tickets"])

    def search(self, queries: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """The `k` stored tickets most similar to each query vector, most similar first:
        {id, labels, similarity, text}."""
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
        queries = _normalised(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if not len(self) or not len(queries):
            return [[] for _ in queries]
        if queries.shape[1] != self.vectors.shape[1]:
            have, want = queries.shape[1], self.vectors.shape[1]
            raise ValueError(f"query vectors have {have} dimensions, the index {want}")
        k = min(k, len(self))
        scores = queries @ self.vectors.T
        results = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.argsort(-row[top], kind="stable")]
            results.append(
                [{**self.tickets[i], "similarity": round(float(row[i]), 4)} for i in top]
            )
        return results


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.clip(norms, 1e-12, None)
