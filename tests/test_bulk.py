"""Bulk classification from the command line: `ticketserve predict MODEL --input --output`
streams a file through the model in chunks and answers every row (training/export/bulk.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from training.cli import main
from training.export.bulk import classify_file
from training.export.predict import Predictor
from training.text.sample_data import generate_tickets


def tickets(path: Path, rows: int = 40, seed: int = 3) -> pd.DataFrame:
    frame = generate_tickets(rows, seed=seed)
    frame.loc[5, ["subject", "body"]] = ["", ""]  # no text: answered with an error
    frame.loc[9, "body"] = "> only an old quote"
    frame.loc[9, "subject"] = ""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    return frame


@pytest.mark.parametrize(("source", "target"), [("in.csv", "out.csv"), ("in.jsonl", "out.jsonl")])
def test_every_row_is_answered_in_order_as_the_predictor_answers(
    tiny_fields_model, tmp_path: Path, source: str, target: str
) -> None:
    """Chunks of 7 rows (boundaries inside the file): the same answers as the predictor on the
    whole file at once, the model's feature column read from the file, bad rows with a reason."""
    frame = tickets(tmp_path / source)
    predictor = Predictor.load(tiny_fields_model.model_dir, device="cpu")
    report = classify_file(
        predictor, tmp_path / source, tmp_path / target, chunk_rows=7, progress_bar=False
    )
    assert (report.rows, report.errors, report.classified) == (40, 2, 38)
    if target.endswith(".csv"):
        with (tmp_path / target).open(newline="") as stream:
            out = list(csv.DictReader(stream))
        labels = [row["queue"] for row in out]
        errors = {int(row["row"]): row["error"] for row in out if row["error"]}
        assert out[0]["queue_confidence"] and out[0]["priority_auto_route"] in ("True", "False")
    else:
        out = [json.loads(line) for line in (tmp_path / target).read_text().splitlines()]
        labels = [row["queue"]["label"] if "queue" in row else "" for row in out]
        errors = {row["row"]: row["error"] for row in out if "error" in row}
    assert [int(row["row"]) for row in out] == list(range(1, 41))
    assert errors.keys() == {6, 10}
    assert errors[6] == "empty text" and "nothing is left after cleaning" in errors[10]
    good = [i for i in range(40) if i not in (5, 9)]
    texts = [f"{frame['subject'][i]}\n{frame['body'][i]}" for i in good]
    fields = [{"language": frame["language"][i]} for i in good]
    expected = predictor.predict(texts, fields=fields)
    assert [labels[i] for i in good] == [answer["queue"]["label"] for answer in expected]


def test_the_command_line_classifies_a_file_and_refuses_what_it_cannot(
    tiny_model, tmp_path: Path, capsys
) -> None:
    tickets(tmp_path / "in.csv", rows=12)
    model = str(tiny_model.model_dir)
    assert main(["predict", model, "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "answers" / "out.jsonl")]) == 0  # fmt: skip
    assert "12 rows: 10 classified, 2 with an error" in capsys.readouterr().out
    assert len((tmp_path / "answers" / "out.jsonl").read_text().splitlines()) == 12
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n[1, 2]\n')
    for args, says in (
        (["--input", str(tmp_path / "in.csv")], "--input and --output go together"),
        (["x", "--input", "a.csv", "--output", "b.csv"], "not both"),
        (["--input", "a.xlsx", "--output", "b.csv"], "use a .csv or .jsonl file"),
        (["--input", str(tmp_path / "none.csv"), "--output", "b.csv"], "no such file"),
        (["--input", str(tmp_path / "bad.jsonl"), "--output", str(tmp_path / "o.csv")],
         "line 2 is not a JSON object"),
        (["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "in.csv")],
         "must not be the --input"),
        ([], "give one or more TEXTs"),
    ):  # fmt: skip
        assert main(["predict", model, *args]) != 0
        assert says in capsys.readouterr().err, args
    assert not (tmp_path / "o.csv").exists()  # nothing half-written
