"""Tests for the synthetic ticket generator in training.text.sample_data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from training.text.sample_data import TEMPLATES, generate_tickets, write_sample_csv

QUEUES = {
    "Technical Support",
    "Billing and Payments",
    "Account Access",
    "Hardware",
    "Returns and Exchanges",
    "Sales and Pre-Sales",
    "Human Resources",
}
UMLAUTS = set("äöüÄÖÜß")


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return generate_tickets(600, seed=0)


def test_same_seed_gives_identical_frame() -> None:
    pd.testing.assert_frame_equal(generate_tickets(150, seed=7), generate_tickets(150, seed=7))


def test_different_seeds_differ() -> None:
    assert not generate_tickets(150, seed=0).equals(generate_tickets(150, seed=1))


@pytest.mark.parametrize("rows", [1, 2, 37])
def test_columns_and_row_count(rows: int) -> None:
    frame = generate_tickets(rows)
    assert list(frame.columns) == ["subject", "body", "queue", "priority", "language"]
    assert len(frame) == rows


def test_label_sets_and_languages(sample: pd.DataFrame) -> None:
    assert set(sample["queue"]) == QUEUES
    assert set(sample["priority"]) == {"high", "medium", "low"}
    assert set(sample["language"]) == {"en", "de"}
    assert 0.4 < (sample["language"] == "de").mean() < 0.6


def test_class_balance_is_plausible(sample: pd.DataFrame) -> None:
    priority = sample["priority"].value_counts(normalize=True)
    assert 0.2 < priority["high"] < 0.4
    assert 0.35 < priority["medium"] < 0.55
    assert 0.15 < priority["low"] < 0.35
    queues = sample["queue"].value_counts()
    assert queues.max() < 2.5 * queues.min()


def test_text_fields(sample: pd.DataFrame) -> None:
    assert (sample["body"].str.len() > 20).all()
    # A few empty subjects on purpose, but not many; no template slot left unfilled.
    assert 0 < (sample["subject"] == "").mean() < 0.1
    text = sample["subject"] + " " + sample["body"]
    assert not text.str.contains(r"[{}]").any()


def test_template_tables_are_complete() -> None:
    assert set(TEMPLATES) == QUEUES
    for queue, by_language in TEMPLATES.items():
        assert set(by_language) == {"en", "de"}, queue
        for table in by_language.values():
            # Subjects pair up with openings by position, so the two must stay aligned.
            assert len(table.subjects) == len(table.openings) >= 8, queue
            assert len(table.details) >= 4, queue


def test_duplicates_are_rare(sample: pd.DataFrame) -> None:
    assert sample.duplicated(["subject", "body"]).mean() < 0.02


def test_german_text_has_umlauts(sample: pd.DataFrame) -> None:
    german = sample.loc[sample["language"] == "de", ["subject", "body"]].agg(" ".join, axis=1)
    with_umlaut = german.map(lambda text: bool(UMLAUTS & set(text)))
    assert with_umlaut.mean() > 0.5
    assert UMLAUTS - set("ÄÖ") <= set("".join(german))


def test_write_sample_csv_round_trips(tmp_path: Path) -> None:
    target = tmp_path / "tickets.csv"
    assert write_sample_csv(target, rows=80, seed=3) == 80
    assert list(tmp_path.iterdir()) == [target]
    loaded = pd.read_csv(target, keep_default_na=False, dtype=str)
    pd.testing.assert_frame_equal(loaded, generate_tickets(80, seed=3))
    assert len(pd.read_csv(target)) == 80


def test_write_sample_csv_overwrites_and_accepts_str_path(tmp_path: Path) -> None:
    target = tmp_path / "tickets.csv"
    target.write_text("old content\n", encoding="utf-8")
    assert write_sample_csv(str(target), rows=5) == 5
    assert len(pd.read_csv(target)) == 5
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("rows", [0, -3])
def test_non_positive_rows_raise(rows: int, tmp_path: Path) -> None:
    message = f"rows must be >= 1, got {rows}"
    with pytest.raises(ValueError, match=message):
        generate_tickets(rows)
    with pytest.raises(ValueError, match=message):
        write_sample_csv(tmp_path / "tickets.csv", rows)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_are_learnable_but_not_trivial(seed: int) -> None:
    frame = generate_tickets(600, seed=seed)
    text = (frame["subject"] + " " + frame["body"]).tolist()
    vectorizer = TfidfVectorizer(sublinear_tf=True)
    train, test = vectorizer.fit_transform(text[:480]), vectorizer.transform(text[480:])

    def accuracy(column: str) -> float:
        model = LogisticRegression(max_iter=1000).fit(train, frame[column][:480])
        return float((model.predict(test) == frame[column][480:].to_numpy()).mean())

    queue_accuracy = accuracy("queue")
    assert 0.8 < queue_accuracy < 1.0
    assert accuracy("priority") > 0.6
