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


def lexical_matrix(featurizer: LexicalFeaturizer, texts: Sequence[str]) -> sparse.csr_matrix:
    """The texts' features as a sparse matrix (rows: texts), for scikit-learn estimators."""
    indptr, indices, values = [0], [], []
    for text in texts:
        ids, weights = featurizer.features(text)
        indices += ids
        values += weights
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(values), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(texts), featurizer.size),
    )
