"""Structured fields as inputs: fit the known values of the feature columns, and the rows'
one-hot features for scikit-learn.

A ticket's fields (channel, customer tier, product, ticket type: the columns a model is trained
with as `feature_columns`) travel with it as a dict in the data frame's `fields` column. The
fitted values become a `FieldEncoder` (training/inference/model.py), which computes the same
features wherever the model runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from training.inference.model import FieldEncoder, TicketFields, field_value_key
from training.text.data import FIELDS_COLUMN

# Most values kept per column (the most frequent): an identifier-like column (a customer id)
# would otherwise grow the model by one feature per ticket.
MAX_FIELD_VALUES = 1000


def row_fields(frame: pd.DataFrame) -> list[TicketFields] | None:
    """Each row's fields, None for data without feature columns."""
    if FIELDS_COLUMN not in frame.columns:
        return None
    return frame[FIELDS_COLUMN].tolist()


def fit_fields(
    rows: Sequence[TicketFields], columns: Sequence[str], max_values: int = MAX_FIELD_VALUES
) -> FieldEncoder:
    """The values of each of `columns` seen in `rows`, the most frequent first (at most
    `max_values`), in the spelling seen most often."""
    known: dict[str, list[str]] = {}
    for column in columns:
        counts: Counter[str] = Counter()
        spellings: dict[str, Counter[str]] = {}
        for fields in rows:
            value = (fields or {}).get(column)
            if value is None or not str(value).strip():
                continue
            key = field_value_key(str(value))
            counts[key] += 1
            spellings.setdefault(key, Counter())[str(value).strip()] += 1
        ranked = sorted(counts, key=lambda k: (-counts[k], k))[:max_values]
        known[column] = [spellings[key].most_common(1)[0][0] for key in ranked]
    return FieldEncoder(known)


def field_matrix(encoder: FieldEncoder, rows: Sequence[TicketFields]) -> sparse.csr_matrix:
    """The rows' one-hot features as a sparse matrix (rows: tickets)."""
    indptr, indices = [0], []
    for fields in rows:
        indices += encoder.features(fields)
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.ones(len(indices)), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(rows), encoder.size),
    )
