"""Similar-ticket lookups: exact search (what the service uses) against an HNSW index (usearch),
at 1,000, 10,000 and 100,000 stored tickets, measured in the same run on the same vectors.

    .venv/bin/python bench/similar.py [DATA] [--sizes 1000,10000,100000] [--queries 200]
    .venv/bin/python bench/similar.py --smoke    # random vectors, small sizes, seconds

Vectors are the default encoder's (multilingual-e5-small, as fast mode embeds them: mean pooled,
L2-normalised; from the embedding cache) for the tickets of DATA (default the shared v3 set,
split as its README says): the training part is stored, the test part asks. Sizes beyond the
real tickets are made of real vectors plus Gaussian noise (norm about 0.2), renormalised: the
clusters of real tickets stay, and no two stored vectors are equal.

Per size and method: the time of one lookup of the 10 most similar (one ticket, as a classify
request asks), p50 and p95 over the queries; recall@10 against exact search; build seconds and
memory. Beside them, the encoder's own time for one ticket (the forward pass every classify
request pays anyway), p50 over the first queries.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_DATA, fixed_split
from usearch.index import Index

from training.cli import exit_with
from training.config import TrainConfig
from training.encoders.base_models import resolve_base_model
from training.encoders.embeddings import EmbeddingCache, embed_texts, encoder_fingerprint
from training.inference.similar_index import SimilarIndex
from training.text.data import load_tickets

K = 10
SIZES = (1_000, 10_000, 100_000)
SMOKE = {"sizes": (200, 2_000), "queries": 20, "dimensions": 32}
NOISE_PER_DIMENSION = 0.01
# HNSW settings: usearch's defaults for connectivity; search expansion raised for recall.
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 64


def real_vectors(path: Path, queries: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(stored, query) vectors of the tickets of `path`, and the encoder's p50 seconds for one
    ticket."""
    from training.train import load_base

    data = load_tickets(path)
    train_frame, test_frame = fixed_split(data)
    config = TrainConfig(mode="fast")
    labels = {head: sorted(data.frame[head].unique()) for head in data.heads}
    stored_texts = train_frame["text"].tolist()
    asked_texts = test_frame["text"].tolist()[:queries]
    tokenizer, model = load_base(config, labels, stored_texts + asked_texts)
    base = resolve_base_model(config.base_model)
    cache = EmbeddingCache(None, encoder_fingerprint(base, config.max_length, model.normalize))
    try:
        stored, _ = embed_texts(model, tokenizer, stored_texts, cache)
        asked, _ = embed_texts(model, tokenizer, asked_texts, cache)
    finally:
        cache.close()
    times = []
    for text in asked_texts[:30]:
        started = time.perf_counter()
        embed_texts(model, tokenizer, [text])
        times.append(time.perf_counter() - started)
    return stored, asked, float(np.median(times))


def random_vectors(dimensions: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, dimensions))
    stored = centres[rng.integers(20, size=500)] + rng.standard_normal((500, dimensions))
    asked = centres[rng.integers(20, size=queries)] + rng.standard_normal((queries, dimensions))
    return stored.astype(np.float32), asked.astype(np.float32)


def grown(vectors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`size` unit vectors: the real ones first, then noisy copies of random real ones."""
    rng = np.random.default_rng(seed)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    if size <= len(vectors):
        return vectors[:size].astype(np.float32)
    extra = vectors[rng.integers(len(vectors), size=size - len(vectors))]
    extra = extra + rng.normal(0, NOISE_PER_DIMENSION, extra.shape)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.vstack([vectors, extra]).astype(np.float32)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1000), float(np.percentile(seconds, 95) * 1000)


def measure(stored: np.ndarray, asked: np.ndarray) -> dict[str, dict[str, float]]:
    """Both methods on the same stored and query vectors."""
    tickets = [{"id": str(i), "labels": {}, "text": ""} for i in range(len(stored))]
    started = time.perf_counter()
    exact = SimilarIndex(stored, tickets)
    exact_build = time.perf_counter() - started
    exact_times, truth = [], []
    for query in asked:
        started = time.perf_counter()
        hits = exact.search(query, K)[0]
        exact_times.append(time.perf_counter() - started)
        truth.append({int(h["id"]) for h in hits})

    started = time.perf_counter()
    hnsw = Index(
        ndim=stored.shape[1],
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )
    hnsw.add(np.arange(len(stored)), stored, threads=0)
    hnsw_build = time.perf_counter() - started
    hnsw_times, recall = [], []
    for query, want in zip(asked, truth, strict=True):
        started = time.perf_counter()
        found = hnsw.search(query, K)
        hnsw_times.append(time.perf_counter() - started)
        recall.append(len(want & {int(key) for key in found.keys}) / len(want))
    return {
        "exact": {
            **dict(zip(("p50", "p95"), percentiles(exact_times), strict=True)),
            "recall": 1.0,
            "build_s": exact_build,
            "memory_mb": exact.vectors.nbytes / 2**20,
        },
        "hnsw": {
            **dict(zip(("p50", "p95"), percentiles(hnsw_times), strict=True)),
            "recall": float(np.mean(recall)),
            "build_s": hnsw_build,
            "memory_mb": hnsw.memory_usage / 2**20,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help=f"tickets (default {DEFAULT_DATA})")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="stored tickets")
    parser.add_argument("--queries", type=int, default=200, help="lookups per size (1-5000)")
    parser.add_argument("--smoke", action="store_true", help="random vectors, small sizes")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be whole numbers separated by commas, got {args.sizes!r}")
    if not all(10 <= s <= 2_000_000 for s in sizes):
        parser.error("--sizes must each be between 10 and 2,000,000")
    if not 1 <= args.queries <= 5000:
        parser.error(f"--queries must be between 1 and 5000, got {args.queries}")
    encoder_ms: float | None = None
    if args.smoke:
        sizes, queries = list(SMOKE["sizes"]), SMOKE["queries"]
        real, asked = random_vectors(SMOKE["dimensions"], queries)
        source = f"random vectors of {SMOKE['dimensions']} dimensions"
    else:
        path = args.data or DEFAULT_DATA
        if not path.is_file():
            print(f"skipped: dataset {path} is not here (it lives in ../shared/data)")
            return 0
        real, asked, encoder_s = real_vectors(path, args.queries)
        encoder_ms = encoder_s * 1000
        source = f"{path.name}: {len(real)} real stored tickets, {len(asked)} asking"
    print(f"{source}; k = {K}; one lookup per query\n")
    print(
        f"{'stored':>8} {'method':<6} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10} "
        f"{'build s':>8} {'memory MB':>10}"
    )
    for size in sizes:
        for method, m in measure(grown(real, size), asked).items():
            print(
                f"{size:>8} {method:<6} {m['p50']:>8.2f} {m['p95']:>8.2f} {m['recall']:>10.3f} "
                f"{m['build_s']:>8.2f} {m['memory_mb']:>10.1f}"
            )
    if encoder_ms is not None:
        print(f"\nthe encoder's own time for one ticket: p50 {encoder_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    exit_with(main())
