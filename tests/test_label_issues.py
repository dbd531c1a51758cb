"""Suspected label errors: the ranking on synthetic scores with planted flips, the stored file's
match against a data file, and the row ids and corrected rows of a training job's data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.fit import label_issues
from training.job import load_job_data


def planted(rows: int = 2000, classes: int = 5, flips: float = 0.05, seed: int = 0):
    """Scores of a decent classifier (right class 0.6-0.95) and labels with planted flips."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(classes, size=rows)
    probs = rng.dirichlet(np.ones(classes), size=rows) * 0.2
    probs[np.arange(rows), truth] += rng.uniform(0.6, 0.95, size=rows)
    probs /= probs.sum(axis=1, keepdims=True)
    given = truth.copy()
    flipped = rng.random(rows) < flips
    given[flipped] = (truth[flipped] + rng.integers(1, classes, size=flipped.sum())) % classes
    return given, probs, flipped, truth


def test_planted_flips_are_found_most_suspect_first() -> None:
    given, probs, flipped, _ = planted()
    found = label_issues.flag_issues(given, probs)
    hits = flipped[found.rows]
    assert hits.mean() >= 0.9  # precision
    assert hits.sum() / flipped.sum() >= 0.5  # recall
    scores = found.score[found.rows]
    assert np.all(np.diff(scores) >= 0)  # the most suspect first


def test_clean_labels_flag_little() -> None:
    _, probs, _, truth = planted(flips=0.0)
    assert len(label_issues.flag_issues(truth, probs).rows) <= 0.01 * len(truth)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="labels for probabilities"):
        label_issues.flag_issues(np.zeros(3, dtype=int), np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="class indices below 2"):
        label_issues.flag_issues(np.array([0, 2]), np.full((2, 2), 0.5))
    assert len(label_issues.flag_issues(np.zeros(0, dtype=int), np.zeros((0, 3))).rows) == 0


def test_a_class_nobody_is_given_is_no_problem() -> None:
    given, probs, flipped, _ = planted(classes=4)
    wider = np.hstack([probs * 0.99, np.full((len(probs), 1), 0.01)])  # class 4: never given
    found = label_issues.flag_issues(given, wider)
    assert flipped[found.rows].mean() >= 0.9


def test_head_report_is_bounded_and_names_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(label_issues, "MAX_STORED", 10)
    given, probs, _, _ = planted(rows=3000, flips=0.3)
    names = ["a", "b", "c", "d", "e"]
    frame = pd.DataFrame(
        {"text": [f"ticket {i} " + "x" * 400 for i in range(3000)], "row": range(1, 3001)}
    )
    frame["queue"] = [names[g] for g in given]
    report = label_issues.head_report(frame, "queue", names, probs)
    assert report["flagged"] > 10 == len(report["issues"])
    assert sum(report["per_class"].values()) == report["flagged"]
    first = report["issues"][0]
    assert first["row_id"] == str(int(frame["row"][int(first["row_id"]) - 1]))
    assert len(first["text"]) <= label_issues.EXCERPT_CHARS
    assert first["suggested"] != first["given"]


def test_stored_issues_are_found_in_the_data_by_text() -> None:
    frame = pd.DataFrame({"text": ["one", "two", "three"], "row": [1, 2, 3], "q": ["a", "b", "a"]})
    probs = np.array([[0.001, 0.999], [0.5, 0.5], [0.99, 0.01]])
    head = label_issues.head_report(frame, "q", ["a", "b"], probs)
    stored = label_issues.report({"q": head}, "x")
    stored["heads"]["q"]["issues"] = [
        {"text_sha256": label_issues.text_sha256(t), "given": g, "text": t}
        for t, g in (("one", "a"), ("two", "b"), ("gone", "a"))
    ]
    found, changed, missing = label_issues.in_data(stored, "q", ["two", "one"], ["a", "a"], [7, 9])
    assert [issue["row"] for issue in found] == [9]
    assert (changed, missing) == (1, 1)


def test_job_rows_keep_their_ids_and_corrected_rows_are_left_out(tmp_path: Path) -> None:
    upload = tmp_path / "abc123.jsonl"
    rows = [{"text": f"ticket {i}", "queue": "A" if i % 2 else "B"} for i in range(1, 7)]
    upload.write_text("".join(json.dumps(r) + "\n" for r in rows))
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(json.dumps({"text": "ticket 3", "queue": "B"}) + "\n")
    data = load_job_data(
        [upload, feedback], 1, superseded={"abc123.jsonl": [3]}, feedback_ids=["f00d"]
    )
    ids = dict(zip(data.frame["row_id"], data.frame["queue"], strict=True))
    assert "abc123:3" not in ids
    assert ids["abc123:4"] == "B" and ids["feedback:f00d"] == "B"
    assert len(ids) == 6


def test_cli_lists_the_models_issues_in_its_data(
    tiny_model, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from shim.cli import main

    stored = label_issues.load(tiny_model.model_dir)
    assert stored is not None and set(stored["heads"]) == {"queue", "priority"}
    assert "Suspected label errors" in (tiny_model.model_dir / "report.md").read_text()
    code = main(["label-issues", str(tiny_model.model_dir), str(tiny_model.data_path), "--json"])
    assert code == 0
    listed = json.loads(capsys.readouterr().out)
    kept = stored["heads"]["queue"]["issues"]
    assert [i["row_id"] for i in listed] == [i["row_id"] for i in kept[:20]]
    assert all(str(i["row"]) == i["row_id"] for i in listed)  # the file's row numbers
    assert main(["label-issues", str(tiny_model.model_dir), str(tiny_model.data_path)]) == 0
    assert "rows flagged" in capsys.readouterr().out
    for args, message in (
        (["--head", "nope"], "the model's heads are queue, priority"),
        (["--limit", "0"], "--limit must be between 1 and 500"),
    ):
        command = ["label-issues", str(tiny_model.model_dir), str(tiny_model.data_path), *args]
        assert main(command) == 1
        assert message in capsys.readouterr().err
    assert main(["label-issues", str(tmp_path), str(tiny_model.data_path)]) == 1
    assert "not a trained model directory" in capsys.readouterr().err
