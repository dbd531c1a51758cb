"""What may name a head or a feature column: the one home of the rule for the data, the
training settings, the API.

A head's name is a key of every classify answer (`answer["type"]`) and of feedback bodies, so it
is a short identifier and none of the keys those already use. A feature column (a structured
field the model reads beside the text) is a short identifier too, and none of the text's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

MAX_HEADS = 8
HEAD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
HEAD_NAME_RULE = "a letter, then up to 39 letters, digits or '_'"
RESERVED_HEAD_NAMES = frozenset(
    {"text", "row", "label", "labels", "heads", "top_k", "predicted_label", "confidence",
     "auto_route", "low_confidence", "model_label", "model_version", "prediction_id",
     "rare_token_share", "ticket_data", "subject", "body", "tickets", "allow_new_labels",
     "content_type", "row_id", "similar", "fields"}
)  # fmt: skip


def head_name_problem(name: object) -> str | None:
    """Why `name` cannot name a head, or None."""
    if problem := _identifier_problem(name):
        return f"label column {problem} cannot name a head: use {HEAD_NAME_RULE}; rename the column"
    if name in RESERVED_HEAD_NAMES:
        return f"label column {name!r} cannot name a head: answers use that key; rename it"
    return None


MAX_FEATURE_COLUMNS = 8
TEXT_COLUMNS = frozenset({"text", "ticket_text", "subject", "body", "content_type"})


def feature_column_problem(name: object) -> str | None:
    """Why `name` cannot be a feature column, or None."""
    if problem := _identifier_problem(name):
        return f"feature column {problem}: use {HEAD_NAME_RULE}"
    if name in TEXT_COLUMNS:
        return f"feature column {name!r} is the ticket's text, which the model reads anyway"
    return None


def heads_problem(names: Sequence[object]) -> str | None:
    """Why `names` cannot be the heads: 1 to MAX_HEADS distinct, usable names; or None."""
    return _names_problem(names, MAX_HEADS, "label column", head_name_problem)


def feature_columns_problem(names: Sequence[object]) -> str | None:
    """Why `names` cannot be the feature columns: 1 to MAX_FEATURE_COLUMNS distinct
    identifiers, none a text column; or None."""
    return _names_problem(names, MAX_FEATURE_COLUMNS, "feature column", feature_column_problem)


def _names_problem(
    names: Sequence[object], most: int, what: str, problem_of: Callable[[object], str | None]
) -> str | None:
    if not 1 <= len(names) <= most:
        return f"1 to {most} {what}s, got {len(names)}"
    if len(set(map(str, names))) < len(names):
        return f"a {what} is named twice in {', '.join(map(str, names))}"
    return next((problem for name in names if (problem := problem_of(name))), None)


def _identifier_problem(name: object) -> str | None:
    """`name` as shown in a message when it is no identifier of HEAD_NAME_RULE, else None."""
    if isinstance(name, str) and HEAD_NAME.fullmatch(name):
        return None
    return repr(name[:60]) if isinstance(name, str) else repr(name)
