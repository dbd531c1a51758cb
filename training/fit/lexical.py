"""Fit the lexical branch: word and character n-gram TF-IDF vocabularies with scikit-learn.

The fitted vocabulary and idf become a `LexicalFeaturizer` (training/inference/model.py), which
computes the same features without scikit-learn wherever the model runs (a test holds the two
equal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from training.inference.model import LexicalFeaturizer

# The blocks of the baseline every help desk could run: word 1-2-grams and char_wb 2-5-grams.
BLOCKS = (("word", (1, 2)), ("char_wb", (2, 5)))


def fit_lexical(
    texts: Sequence[str], min_df: int = 2, max_features: int | None = None
) -> LexicalFeaturizer:
    """TF-IDF vocabularies of `texts`: n-grams in at least `min_df` texts, at most
    `max_features` per block (the most frequent)."""
    blocks = []
    for analyzer, ngram_range in BLOCKS:
        vectorizer = TfidfVectorizer(
            analyzer=analyzer,
            ngram_range=ngram_range,
            sublinear_tf=True,
            min_df=min(min_df, len(texts)),
            max_features=max_features,
            dtype=np.float64,
        )
        vectorizer.fit(texts)
        terms = vectorizer.get_feature_names_out().tolist()
        blocks.append(
            {
                "analyzer": analyzer,
                "ngram_range": list(ngram_range),
                "terms": terms,
                "idf": vectorizer.idf_.tolist(),
            }
        )
    return LexicalFeaturizer(blocks)


def lexical_matrix(
    featurizer: LexicalFeaturizer, texts: Sequence[str], chunk: int = 1000
) -> sparse.csr_matrix:
    """The texts' features as a sparse matrix (rows: texts), for scikit-learn estimators.

    Built `chunk` texts at a time, each chunk packed into arrays at once: Python lists of every
    row's indices and values (boxed numbers) peaked at 3.0 GB for 50,000 short tickets, the
    packed chunks at 1.2 GB (the vocabulary's fit included)."""
    parts = []
    for start in range(0, len(texts), chunk):
        indptr, indices, values = [0], [], []
        for text in texts[start : start + chunk]:
            ids, weights = featurizer.features(text)
            indices += ids
            values += weights
            indptr.append(len(indices))
        parts.append(
            sparse.csr_matrix(
                (
                    np.asarray(values, dtype=np.float64),
                    np.asarray(indices, dtype=np.int32),
                    np.asarray(indptr, dtype=np.int32),
                ),
                shape=(len(indptr) - 1, featurizer.size),
            )
        )
    if not parts:
        return sparse.csr_matrix((0, featurizer.size), dtype=np.float64)
    return parts[0] if len(parts) == 1 else sparse.vstack(parts, format="csr")
