"""The lexical branch's features: exactly scikit-learn's TF-IDF, without scikit-learn."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from training.fit.lexical import BLOCKS, fit_lexical, lexical_matrix
from training.inference.model import LexicalFeaturizer
from training.text.sample_data import generate_tickets

TRAIN_TEXTS = [
    *generate_tickets(200, seed=3)["subject"],
    "Drucker druckt nicht, Straße 5, Größe XL",
    "a b c  d\tee\nfff  ß ẞ İstanbul ǅ",
    "Ça ne marche pas: l'imprimante est en panne",
]


def reference_vectorizers(train: list[str]) -> list[TfidfVectorizer]:
    """scikit-learn's own features: the baseline's union of the two vectorizers."""
    return [
        TfidfVectorizer(analyzer=a, ngram_range=r, sublinear_tf=True, min_df=2).fit(train)
        for a, r in BLOCKS
    ]


def reference(texts: list[str]) -> sparse.csr_matrix:
    return sparse.hstack([v.transform(texts) for v in REFERENCE]).tocsr()


FEATURIZER = fit_lexical(TRAIN_TEXTS, min_df=2)
REFERENCE = reference_vectorizers(TRAIN_TEXTS)
REFERENCE_TEXTS = [
    "My printer does not print",
    "",
    "a",
    "ab",
    "   spaced    out\ttabs\nnew lines  ",
    "Drucker Drucker Drucker Straße",
    "İstanbul ẞ ǅ",
    "Ça ne marche pas",
]


def test_features_equal_scikit_learns_tfidf() -> None:
    ours = lexical_matrix(FEATURIZER, REFERENCE_TEXTS)
    theirs = reference(REFERENCE_TEXTS)
    assert ours.shape == theirs.shape
    assert abs(ours - theirs).max() < 1e-12
    assert ours[0].nnz > 0 and ours[1].nnz == 0  # a real ticket has features, "" has none


# Words of the vocabulary, so that most drawn texts share n-grams with it, mixed with any text.
WORDS = sorted({w for t in TRAIN_TEXTS for w in t.split()})
TEXTS = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), max_size=12).map(" ".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_features_equal_scikit_learns_for_any_text(text: str) -> None:
    ours = lexical_matrix(FEATURIZER, [text])
    theirs = reference([text])
    # The same n-grams (indices) with the same weights; two empty rows are equal too, and
    # `test_features_equal_scikit_learns_tfidf` holds that real tickets are not empty.
    assert ours.shape == theirs.shape
    assert sorted(ours.indices.tolist()) == sorted(theirs.indices.tolist())
    assert np.allclose(ours.toarray(), theirs.toarray(), rtol=0, atol=1e-12)


def test_featurizer_round_trips_through_json(tmp_path) -> None:
    FEATURIZER.save(tmp_path)
    loaded = LexicalFeaturizer.load(tmp_path)
    assert loaded is not None and loaded.size == FEATURIZER.size
    before = lexical_matrix(FEATURIZER, REFERENCE_TEXTS).toarray()
    after = lexical_matrix(loaded, REFERENCE_TEXTS).toarray()
    assert np.array_equal(before, after)
    assert LexicalFeaturizer.load(tmp_path / "elsewhere") is None  # an encoder-only model


def test_max_features_caps_each_block() -> None:
    small = fit_lexical(TRAIN_TEXTS, min_df=1, max_features=50)
    assert [len(b["terms"]) for b in small.blocks] == [50, 50]
