"""Every data rule of training.text.data, with the message a user sees."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from training.text.data import (
    Columns,
    DataError,
    load_tickets,
    parse_label_columns,
    parse_tickets,
    read_table,
    split_tickets,
    validate,
)
from training.text.head_names import MAX_HEADS

HEADER = "subject,body,queue,priority\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def rows(n: int, queue: str = "Billing", priority: str = "high") -> str:
    return "".join(f"Subject {i},Body number {i},{queue},{priority}\n" for i in range(n))


def test_csv_subject_and_body_are_joined(tmp_path):
    data = load_tickets(
        write(
            tmp_path,
            "t.csv",
            HEADER + "Printer,It jams,HW,high\nInvoice,Charged twice,Billing,low\n",
        )
    )
    assert data.frame["text"].tolist() == ["Printer\nIt jams", "Invoice\nCharged twice"]
    assert data.heads == ("queue", "priority")


def test_empty_subject_uses_body_alone(tmp_path):
    data = load_tickets(write(tmp_path, "t.csv", HEADER + ",It jams,HW,high\nX,Y,B,low\n"))
    assert data.frame["text"].tolist()[0] == "It jams"


@pytest.mark.parametrize("column", ["text", "ticket_text"])
def test_single_text_column(tmp_path, column):
    data = load_tickets(write(tmp_path, "t.csv", f"{column},queue\nhello,A\nworld,B\n"))
    assert data.frame["text"].tolist() == ["hello", "world"]


@pytest.mark.parametrize("alias", ["label", "category", "department"])
def test_queue_aliases(tmp_path, alias):
    data = load_tickets(write(tmp_path, "t.csv", f"text,{alias}\nhello,A\nworld,B\n"))
    assert data.heads == ("queue",)
    assert data.frame["queue"].tolist() == ["A", "B"]


def test_configured_column_names(tmp_path):
    path = write(tmp_path, "t.csv", "Beschreibung,Team,Dringlichkeit\na,X,hoch\nb,Y,niedrig\n")
    data = load_tickets(path, Columns(text="Beschreibung", queue="Team", priority="Dringlichkeit"))
    assert data.frame[["text", "queue", "priority"]].values.tolist() == [
        ["a", "X", "hoch"],
        ["b", "Y", "niedrig"],
    ]


def test_configured_column_missing_is_named(tmp_path):
    path = write(tmp_path, "t.csv", "text,queue\na,X\nb,Y\n")
    with pytest.raises(
        DataError, match="missing queue label column 'Team'; found columns 'text', 'queue'"
    ):
        load_tickets(path, Columns(queue="Team"))


def test_only_queue_gives_one_head(tmp_path):
    data = load_tickets(write(tmp_path, "t.csv", "text,queue\na,X\nb,Y\n"))
    assert data.heads == ("queue",)
    assert "priority" not in data.frame


def test_label_columns_are_the_heads_in_their_order(tmp_path):
    path = write(
        tmp_path, "t.csv", "text,queue,type,priority\na,X,Incident,high\nb,Y,Request,low\n"
    )
    data = load_tickets(path, Columns(labels=parse_label_columns("type,queue")))
    assert data.heads == ("type", "queue")
    assert data.frame[["text", "type", "queue"]].values.tolist() == [
        ["a", "Incident", "X"],
        ["b", "Request", "Y"],
    ]
    assert "priority" not in data.frame and list(data.report.label_counts) == ["type", "queue"]
    # a column that is an alias of the queue is a head of its own name when named
    data = load_tickets(path, Columns(labels=("priority",)))
    assert data.heads == ("priority",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queue,,type", "give column names separated by commas"),
        ("queue, queue", "a label column is named twice"),
        (",".join(f"h{i}" for i in range(MAX_HEADS + 1)), f"1 to {MAX_HEADS} label columns"),
        ("model_version", "answers use that key"),
        ("Ticket Type", "use a letter, then up to 39 letters, digits or '_'"),
        ("1st", "use a letter"),
        ("x" * 41, "up to 39"),
    ],
)
def test_bad_label_columns_are_named(text, message):
    with pytest.raises(DataError, match=f"^--label-columns: .*{message}"):
        parse_label_columns(text, "--label-columns")


def test_label_columns_must_exist_and_exclude_queue_and_priority_columns(tmp_path):
    path = write(tmp_path, "t.csv", "text,queue\na,X\nb,Y\n")
    with pytest.raises(DataError, match="missing label column 'type'"):
        load_tickets(path, Columns(labels=("queue", "type")))
    with pytest.raises(DataError, match="name the label columns, or the queue/priority"):
        load_tickets(path, Columns(labels=("queue",), queue="queue"))
    with pytest.raises(DataError, match="cannot name a head"):
        load_tickets(path, Columns(labels=("text",)))  # checked however Columns was made


def test_literal_backslash_n_is_unescaped(tmp_path):
    data = load_tickets(write(tmp_path, "t.csv", "text,queue\nline one\\nline two,X\nb,Y\n"))
    assert data.frame["text"][0] == "line one\nline two"


def test_label_spelling_is_normalised_to_most_common_form(tmp_path):
    content = "text,queue\na,Billing\nb, billing \nc,Billing\nd,Sales\ne,SALES  \nf,Sales\n"
    data = load_tickets(write(tmp_path, "t.csv", content))
    assert data.frame["queue"].tolist() == ["Billing"] * 3 + ["Sales"] * 3
    assert data.report.label_counts["queue"] == {"Billing": 3, "Sales": 3}


def test_rows_with_empty_text_or_missing_label_are_rejected_by_row(tmp_path):
    content = HEADER + "a,b,X,high\n,,X,high\nc,d,,low\ne,f,Y,\ng,h,Y,low\n"
    data = load_tickets(write(tmp_path, "t.csv", content))
    rejected = [(r.row, r.reason) for r in data.report.rejected]
    assert rejected == [
        (2, "empty text"),
        (3, "missing label in column 'queue'"),
        (4, "missing label in column 'priority'"),
    ]
    assert data.report.rows_accepted == 2
    assert data.frame["row"].tolist() == [1, 5]


def test_exact_duplicates_are_dropped_and_reported(tmp_path):
    content = "text,queue\nsame,X\nother,Y\nsame,X\nsame,x\n"
    data = load_tickets(write(tmp_path, "t.csv", content))
    assert data.frame["text"].tolist() == ["same", "other"]
    assert data.report.duplicates_dropped == [3, 4]
    assert "dropped 2 exact duplicate(s): row 3, 4" in data.report.warnings


def test_identical_texts_with_conflicting_labels_are_reported(tmp_path):
    data = load_tickets(write(tmp_path, "t.csv", "text,queue\nsame,X\nother,Y\nsame,Y\n"))
    assert data.report.conflicts == [
        "rows 1, 3: identical text with conflicting queue labels ['X', 'Y']"
    ]


def test_small_classes_are_warned_about(tmp_path):
    content = "text,queue\n" + "".join(f"t{i},Big\n" for i in range(6)) + "s,Small\n"
    data = load_tickets(write(tmp_path, "t.csv", content), min_class_examples=5)
    assert (
        "queue label 'Small' has only 1 example(s) (fewer than 5); it will be learned poorly"
        in data.report.warnings
    )
    assert not any("'Big'" in w for w in data.report.warnings)


def test_missing_label_column_error(tmp_path):
    path = write(tmp_path, "t.csv", "subject,body,team\na,b,X\n")
    with pytest.raises(
        DataError,
        match="no label column: expected one of queue, label, "
        "category, department, priority; found columns "
        "'subject', 'body', 'team'",
    ):
        load_tickets(path)


def test_missing_text_column_error(tmp_path):
    path = write(tmp_path, "t.csv", "title,queue\na,X\n")
    with pytest.raises(
        DataError,
        match="no text column: expected 'text' or 'ticket_text', or "
        "'subject' \\+ 'body'; found columns 'title', 'queue'",
    ):
        load_tickets(path)


def test_ambiguous_label_columns_error(tmp_path):
    path = write(tmp_path, "t.csv", "text,queue,category\na,X,Y\n")
    with pytest.raises(
        DataError,
        match=r"columns \['queue', 'category'\] could all be the "
        "queue label",
    ):
        load_tickets(path)


def test_wrong_delimiter_error(tmp_path):
    path = write(tmp_path, "t.csv", "subject;body;queue\na;b;X\n")
    with pytest.raises(DataError, match="seems to be separated by ';', not ','"):
        load_tickets(path)


def test_other_delimiter_when_configured(tmp_path):
    data = load_tickets(write(tmp_path, "t.csv", "text;queue\na;X\nb;Y\n"), delimiter=";")
    assert data.frame["queue"].tolist() == ["X", "Y"]


def test_undecodable_bytes_error(tmp_path):
    path = write(tmp_path, "t.csv", "text,queue\nStra\xdfe,X\n".encode("latin-1"))
    with pytest.raises(
        DataError, match="not UTF-8 text \\(byte 0xdf at offset 15\\); export the file as UTF-8"
    ):
        load_tickets(path)


def test_binary_file_error(tmp_path):
    path = write(tmp_path, "t.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DataError, match="looks like a binary file, not CSV text"):
        load_tickets(path)


@pytest.mark.parametrize("content", ["", "  \n"])
def test_empty_file_error(tmp_path, content):
    with pytest.raises(DataError, match="t.csv: the file is empty"):
        load_tickets(write(tmp_path, "t.csv", content))


def test_header_only_error(tmp_path):
    with pytest.raises(DataError, match="the file has a header but no rows"):
        load_tickets(write(tmp_path, "t.csv", "text,queue\n"))


def test_unknown_file_type_error(tmp_path):
    with pytest.raises(DataError, match="unsupported file type '.xlsx'; use .csv, .json"):
        load_tickets(write(tmp_path, "t.xlsx", "whatever"))


def test_missing_file_error(tmp_path):
    with pytest.raises(DataError, match="nope.csv: cannot read file: No such file"):
        load_tickets(tmp_path / "nope.csv")


def test_all_rows_rejected_error(tmp_path):
    with pytest.raises(DataError, match=r"no usable rows \(row 1: empty text; row 2: empty"):
        load_tickets(write(tmp_path, "t.csv", "text,queue\n,X\n ,Y\n"))


def test_single_label_error(tmp_path):
    with pytest.raises(
        DataError, match="column 'queue' has a single label 'X'; a classifier needs at least two"
    ):
        load_tickets(write(tmp_path, "t.csv", "text,queue\na,X\nb,X\n"))


def test_malformed_csv_error(tmp_path):
    with pytest.raises(DataError, match="malformed CSV: .*line 3"):
        load_tickets(write(tmp_path, "t.csv", "text,queue\na,X\nb,Y,extra,more\n"))


def test_json_array(tmp_path):
    items = [
        {"subject": "s", "body": "b", "department": "X", "priority": "high"},
        {"subject": "t", "body": "c", "department": "Y", "priority": None},
        {"subject": "u", "body": "d", "department": "Y", "priority": "low"},
    ]
    data = load_tickets(write(tmp_path, "t.json", json.dumps(items)))
    assert data.frame["text"].tolist() == ["s\nb", "u\nd"]
    assert [(r.row, r.reason) for r in data.report.rejected] == [
        (2, "missing label in column 'priority'")
    ]


def test_json_must_be_an_array_of_objects(tmp_path):
    with pytest.raises(DataError, match="expected a JSON array of ticket objects, got a dict"):
        load_tickets(write(tmp_path, "t.json", '{"text": "a"}'))
    with pytest.raises(DataError, match="item 2 is a str, expected an object"):
        load_tickets(write(tmp_path, "t.json", '[{"text": "a", "queue": "X"}, "oops"]'))


def test_invalid_json_error_names_the_place(tmp_path):
    with pytest.raises(DataError, match="invalid JSON at line 2 column 1"):
        load_tickets(write(tmp_path, "t.json", '[{"text": "a"},\n]'))


def test_json_lines(tmp_path):
    content = '{"text": "a", "queue": "X"}\n\n{"text": "b", "queue": "Y"}\n'
    data = load_tickets(write(tmp_path, "t.jsonl", content))
    assert data.frame["text"].tolist() == ["a", "b"]


def test_json_lines_bad_line_is_named(tmp_path):
    content = '{"text": "a", "queue": "X"}\n{"text": "b", "queue": \n'
    with pytest.raises(DataError, match="t.jsonl: line 2: invalid JSON"):
        load_tickets(write(tmp_path, "t.jsonl", content))


def test_parse_bytes_names_the_source():
    with pytest.raises(DataError, match="upload: the file is empty"):
        parse_tickets(b"", "csv", source="upload")


def frame(n_per_class: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, n in n_per_class.items() for _ in range(n)]
    return pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "queue": labels})


def test_split_is_80_10_10_deterministic_and_stratified():
    data = frame({"A": 50, "B": 30, "C": 20})
    first = split_tickets(data, "queue", seed=3)
    again = split_tickets(data, "queue", seed=3)
    other = split_tickets(data, "queue", seed=4)
    assert {k: len(v) for k, v in first.items()} == {"train": 80, "validation": 10, "test": 10}
    for name in first:
        assert first[name]["text"].tolist() == again[name]["text"].tolist()
    assert first["test"]["text"].tolist() != other["test"]["text"].tolist()
    assert first["test"]["queue"].value_counts().to_dict() == {"A": 5, "B": 3, "C": 2}
    all_texts = pd.concat([part["text"] for part in first.values()])
    assert sorted(all_texts) == sorted(data["text"])


def test_split_works_when_a_class_is_too_small_to_stratify():
    data = frame({"A": 40, "B": 15, "Tiny": 1})
    parts = split_tickets(data, "queue", seed=0)
    assert sum(len(p) for p in parts.values()) == 56
    assert len(parts["test"]) == 6 and len(parts["validation"]) == 6


def test_split_of_tiny_dataset_falls_back_to_shuffle():
    parts = split_tickets(frame({"A": 3, "B": 2, "C": 2, "D": 1}), "queue", seed=0)
    assert sum(len(p) for p in parts.values()) == 8
    assert len(parts["train"]) >= 6


def test_invisible_overlong_and_formula_rows_are_rejected_by_name():
    rows = [
        {"text": "Printer broken", "queue": "IT", "priority": "high"},
        {"text": "\u200b\u200b\u2060", "queue": "IT", "priority": "low"},
        {"text": "x" * 60, "queue": "IT", "priority": "low"},
        {"text": "Refund please", "queue": '=HYPERLINK("http://evil","x")', "priority": "low"},
        {"text": "Invoice twice", "queue": "Billing", "priority": "@SUM(A1)"},
        {"text": "Invoice wrong", "queue": "Billing", "priority": "low"},
    ]
    raw = json.dumps(rows).encode()
    data = validate(read_table(raw, "json"), "upload", Columns(), 1, max_text_chars=50)
    reasons = {r.row: r.reason for r in data.report.rejected}
    assert reasons[2] == "the text has no visible characters"
    assert reasons[3] == "the text has 60 characters; at most 50 are accepted"
    assert "starts like a spreadsheet formula" in reasons[4] and "'queue'" in reasons[4]
    assert "starts like a spreadsheet formula" in reasons[5] and "'priority'" in reasons[5]
    assert data.report.rows_accepted == 2


def test_lone_surrogates_become_replacement_characters():
    raw = b'{"text": "ok \\ud800", "queue": "IT"}\n{"text": "fine", "queue": "H\\udc00R"}\n'
    frame = read_table(raw, "jsonl")
    assert list(frame["text"]) == ["ok \ufffd", "fine"]
    assert list(frame["queue"]) == ["IT", "H\ufffdR"]
