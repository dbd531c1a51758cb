"""Property tests of the ticket loaders: any bytes give tickets or one DataError, nothing else.

The same loaders read `ticketserve train FILE` and every upload, so a crash here would be a 500
(or a traceback on the command line); a DataError is the clear message a user can act on.
"""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.text.data import DELIMITERS, DataError, parse_tickets
from training.text.text_rules import label_problem, text_problem

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Ticket-like cells: any text (surrogates and control characters included) or short labels.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
cells = st.one_of(any_text, st.sampled_from(["Billing", "IT", "high", "low", "=1+1", ""]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
records = st.lists(
    st.fixed_dictionaries(
        {"text": cells, "queue": cells},
        optional={"priority": cells, "subject": cells, "body": cells, "other": json_values},
    ),
    max_size=12,
)


def outcome(raw: bytes, fmt: str, delimiter: str = ",") -> None:
    """Parse; the only failure allowed is a DataError with a message. Accepted tickets obey
    the text and label rules."""
    try:
        data = parse_tickets(raw, fmt, source="fuzz", min_class_examples=1, delimiter=delimiter)
    except DataError as exc:
        assert str(exc).strip()
        return
    frame: pd.DataFrame = data.frame
    assert len(frame) > 0
    for text in frame["text"]:
        assert text_problem(text) is None
    for head in data.heads:
        assert frame[head].nunique() >= 2
        assert all(label_problem(label) is None for label in frame[head])


@FUZZ
@given(raw=st.binary(max_size=400), fmt=st.sampled_from(["csv", "json", "jsonl"]))
def test_any_bytes(raw: bytes, fmt: str) -> None:
    outcome(raw, fmt)


@FUZZ
@given(rows=st.lists(st.lists(cells, min_size=1, max_size=4), max_size=10),
       delimiter=st.sampled_from(DELIMITERS))  # fmt: skip
def test_csv_of_any_cells(rows: list[list[str]], delimiter: str) -> None:
    header = delimiter.join(["text", "queue", "priority"][: max(1, len(rows[0]) if rows else 1)])
    lines = [header, *(delimiter.join(row) for row in rows)]
    outcome("\n".join(lines).encode("utf-8", "surrogatepass"), "csv", delimiter)


@FUZZ
@given(items=records)
def test_json_array_of_any_records(items: list[dict]) -> None:
    outcome(json.dumps(items).encode(), "json")


@FUZZ
@given(items=records, junk=st.lists(json_values, max_size=3))
def test_json_lines_of_any_records(items: list[dict], junk: list) -> None:
    lines = [json.dumps(item) for item in [*items, *junk]]
    outcome("\n".join(lines).encode(), "jsonl")


def test_deeply_nested_json_is_a_data_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for fmt in ("json", "jsonl"):
        try:
            parse_tickets(deep, fmt)
        except DataError as exc:
            assert "nested too deeply" in str(exc)
        else:
            raise AssertionError("accepted 100,000 levels of nesting")


def test_unknown_delimiter_is_a_data_error() -> None:
    try:
        parse_tickets(b"text,queue\na,b\n", "csv", delimiter="\n")
    except DataError as exc:
        assert "delimiter must be one of" in str(exc)
    else:
        raise AssertionError("accepted a newline as the delimiter")
