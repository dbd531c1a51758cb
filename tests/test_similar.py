"""Similar tickets: the index a model directory keeps (training/inference/similar_index.py), as
training writes it for both modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from handlers.ticket_requests import MAX_SIMILAR
from training.inference.model import TicketClassifier, forward_texts, predict_logits
from training.inference.similar_index import (
    EXCERPT_CHARS,
    MAX_K,
    TICKETS_FILE,
    VECTORS_FILE,
    SimilarIndex,
    excerpt,
    write_index,
)
from training.text.data import load_tickets


def tickets(n: int) -> list[dict]:
    return [{"id": str(i + 1), "labels": {"queue": f"q{i % 3}"}, "text": f"t{i}"} for i in range(n)]


def test_the_limit_is_the_handler_s() -> None:
    assert MAX_K == MAX_SIMILAR


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 60),
    queries=st.integers(1, 5),
    k=st.integers(1, MAX_K),
    seed=st.integers(0, 2**16),
)
def test_search_is_exact_cosine_top_k(rows: int, queries: int, k: int, seed: int) -> None:
    """Against a full sort of cosine similarities: the same tickets in the same order."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, 8)).astype(np.float32) * rng.uniform(0.1, 9, (rows, 1))
    index = SimilarIndex(vectors, tickets(rows))
    asked = rng.standard_normal((queries, 8)).astype(np.float32)
    found = index.search(asked, k)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for query, hits in zip(asked, found, strict=True):
        cosine = unit @ (query / np.linalg.norm(query))
        assert len(hits) == min(k, rows)
        expected = np.sort(cosine)[::-1][: len(hits)]
        assert [h["similarity"] for h in hits] == pytest.approx(expected, abs=1e-4)
        for hit in hits:
            assert hit["similarity"] == pytest.approx(cosine[int(hit["id"]) - 1], abs=1e-4)
            assert hit["labels"] == {"queue": f"q{(int(hit['id']) - 1) % 3}"}


def test_written_and_loaded_it_finds_each_stored_ticket_first(tmp_path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((50, 16)).astype(np.float32)
    write_index(tmp_path, vectors, tickets(50))
    assert np.load(tmp_path / VECTORS_FILE).dtype == np.float16
    assert json.loads((tmp_path / TICKETS_FILE).read_text())["format"] == 1
    index = SimilarIndex.load(tmp_path)
    assert index is not None and len(index) == 50
    for i, hits in enumerate(index.search(vectors, 2)):
        assert hits[0]["id"] == str(i + 1) and hits[0]["similarity"] == pytest.approx(1, abs=1e-3)


def test_bad_k_and_dimensions_are_refused_and_no_index_is_none(tmp_path) -> None:
    index = SimilarIndex(np.eye(3, dtype=np.float32), tickets(3))
    for k in (0, MAX_K + 1):
        with pytest.raises(ValueError, match="k must be between 1 and 20"):
            index.search(np.ones(3), k)
    with pytest.raises(ValueError, match="4 dimensions, the index 3"):
        index.search(np.ones(4), 1)
    with pytest.raises(ValueError, match="3 tickets for vectors of shape"):
        write_index(tmp_path, np.ones((2, 3)), tickets(3))
    assert SimilarIndex.load(tmp_path) is None
    assert SimilarIndex(np.zeros((0, 3), dtype=np.float32), []).search(np.ones(3), 5) == [[]]


def test_excerpt_is_bounded_and_one_line() -> None:
    assert excerpt("a\n\n b\tc") == "a b c"
    long = excerpt("word " * 200)
    assert len(long) == EXCERPT_CHARS and long.endswith("…")


def _stored(model_dir) -> tuple[SimilarIndex, list[dict]]:
    index = SimilarIndex.load(model_dir)
    assert index is not None
    return index, index.tickets


# The fine-tuned model is a slow fixture; a name looked up at run time is not marked by conftest.
@pytest.mark.parametrize(
    "model", ["tiny_model", pytest.param("trained_model", marks=pytest.mark.slow)]
)
def test_training_stores_every_ticket_under_the_shipped_encoder(model: str, request) -> None:
    """Fast mode (frozen encoder: the cached embeddings) and full mode (the fine-tuned encoder
    embeds again): every uploaded row is stored with its id, labels and text as cleaned, and
    each stored ticket's own text finds it first."""
    trained = request.getfixturevalue(model)
    index, stored = _stored(trained.model_dir)
    data = load_tickets(trained.data_path)
    assert trained.metrics["similar_tickets"] == len(stored) == len(data.frame)
    by_id = {t["id"]: t for t in stored}
    assert set(by_id) == {str(int(r)) for r in data.frame["row"]}
    sample = data.frame.sample(12, random_state=0)
    for _, row in sample.iterrows():
        ticket = by_id[str(int(row["row"]))]
        assert ticket["labels"] == {"queue": row["queue"], "priority": row["priority"]}
        assert ticket["text"] == excerpt(row["text"])
    model_obj = TicketClassifier.load(trained.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir)
    texts = sample["text"].tolist()
    logits, pooled = forward_texts(model_obj, tokenizer, texts)
    for head, values in predict_logits(model_obj, tokenizer, texts).items():
        np.testing.assert_allclose(logits[head], values, atol=1e-5)
    for row, hits in zip(sample.itertuples(), index.search(pooled, 3), strict=True):
        assert hits[0]["similarity"] == pytest.approx(1, abs=2e-3)
        # a duplicate text may come first; it is the same text either way
        assert by_id[hits[0]["id"]]["text"] == excerpt(row.text)
