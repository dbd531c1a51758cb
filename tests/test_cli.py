"""The `ticketserve` command line: help, one-line errors with non-zero exits, the happy path.

Most cases call `main([...])` in this process (seconds saved per case); a few run the real
console script in a subprocess, so its entry point, exit codes and streams stay covered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from shim.cli import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch: pytest.MonkeyPatch):
    """`ticketserve ARGS...` in this process: exit status and what it printed.

    The encoder cache starts empty, as on a fresh machine: an error in the data must come out
    alone, before (and without) the one-time preparation of a default encoder.
    """
    monkeypatch.setenv("TICKETSERVE_CACHE", str(tmp_path / "empty-cache"))

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own exits (--help, usage errors)
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def subprocess_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    script = os.path.join(os.path.dirname(sys.executable), "ticketserve")
    return subprocess.run(
        [script, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def one_line_error(result: Result | subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["sample-data", "train", "evaluate", "predict"])
def test_every_subcommand_has_help(command, run):
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage: ticketserve " + command in result.stdout


def test_sample_data_writes_csv(tmp_path):
    result = subprocess_run("sample-data", str(tmp_path / "s.csv"), "--rows", "50", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "wrote 50 tickets" in result.stdout
    assert (tmp_path / "s.csv").read_text().startswith("subject,body,queue,priority,language")


def test_missing_label_column(tmp_path, run):
    (tmp_path / "t.csv").write_text("subject,body\nPrinter,jams\n")
    line = one_line_error(run("train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m")))
    assert line.startswith("ticketserve train: error: ")
    assert "no label column: expected one of queue, label, category, department, priority" in line
    assert not (tmp_path / "empty-cache" / "base-models").exists()  # nothing prepared for it
    assert not (tmp_path / "m").exists()


def test_bad_rows_are_named_by_row_number(tmp_path, run):
    (tmp_path / "t.csv").write_text(
        "subject,body,queue,priority\nA,b,X,high\n,,X,low\nC,d,,low\nE,f,Y,low\n"
    )
    line = one_line_error(run("train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m")))
    assert (
        "2 row(s) cannot be used: row 2: empty text; row 3: missing label in column "
        "'queue' (fix them, or pass --skip-bad-rows)"
    ) in line


def test_binary_file(tmp_path, run):
    (tmp_path / "t.csv").write_bytes(bytes(range(256)) * 4)
    line = one_line_error(run("train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m")))
    assert "looks like a binary file" in line


def test_bad_argument_value(tmp_path, run):
    (tmp_path / "t.csv").write_text("text,queue\na,X\nb,Y\n")
    line = one_line_error(
        run("train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), "--epochs", "0")
    )
    assert line == "ticketserve train: error: epochs must be an integer in [1, 100], got 0"


def test_missing_argument():
    result = subprocess_run("train")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "the following arguments are required: DATA, --out (see --help)" in line


def test_predict_on_a_directory_without_a_model(tmp_path, run):
    line = one_line_error(run("predict", str(tmp_path), "hello"))
    assert "is not a trained model directory" in line


def test_unknown_base_model_directory(tmp_path, run):
    (tmp_path / "t.csv").write_text("text,queue\na,X\nb,Y\n")
    line = one_line_error(
        run(
            "train",
            str(tmp_path / "t.csv"),
            "--out",
            str(tmp_path / "m"),
            "--base-model",
            str(tmp_path / "nope"),
        )
    )
    assert "is not a model directory (no config.json)" in line


def test_predict_and_evaluate_print_labels(trained_model, run):
    result = run(
        "predict", str(trained_model.model_dir), "Mein Drucker druckt seit dem Update nicht mehr"
    )
    assert result.returncode == 0, result.stderr
    assert "queue:" in result.stdout and "priority:" in result.stdout
    result = run("evaluate", str(trained_model.model_dir), str(trained_model.data_path))
    assert result.returncode == 0, result.stderr
    assert "queue" in result.stdout and "macro-F1" in result.stdout


def test_unknown_mode_is_one_line(tmp_path, run):
    (tmp_path / "t.csv").write_text("text,queue\na,X\nb,Y\n")
    line = one_line_error(
        run("train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), "--mode", "turbo")
    )
    assert "argument --mode: invalid choice: 'turbo'" in line


def test_bad_label_columns_are_one_line(tmp_path, run):
    (tmp_path / "t.csv").write_text("text,queue\na,X\nb,Y\n")
    cases = {
        "queue,type": "missing label column 'type'",
        "queue,queue": "label_columns: a label column is named twice",
    }
    for columns, says in cases.items():
        train = ["train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m")]
        line = one_line_error(run(*train, "--label-columns", columns))
        assert says in line, line


@pytest.mark.slow  # a fast-mode training
def test_fast_train_tells_the_plan_and_the_gate(tmp_path, run):
    run("sample-data", str(tmp_path / "s.csv"), "--rows", "150", "--seed", "4")
    result = subprocess_run(
        "train", str(tmp_path / "s.csv"), "--out", str(tmp_path / "m"), "--mode", "fast",
        "--base-model", "all-MiniLM-L6-v2", "--max-length", "64",
        "--label-columns", "queue,language",
        TICKETSERVE_CACHE=str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # the heads are the label columns named, in their order
    heads = json.loads((tmp_path / "m" / "labels.json").read_text())
    assert list(heads) == ["queue", "language"] and set(heads["language"]) == {"de", "en"}
    assert "mode fast (fast was asked for): expected to take about" in result.stderr
    assert "ECE before calibration" in result.stdout and "auto-routed at target" in result.stdout
    assert (tmp_path / "cache" / "embeddings.sqlite").is_file()
    assert (tmp_path / "m" / "lexical.json").is_file()


def test_clean_shows_what_the_model_reads(tmp_path, run):
    mail = tmp_path / "ticket.eml"
    mail.write_bytes(
        b"From: Anna <anna@example.com>\r\nSubject: VPN drops\r\n\r\n"
        b"Hi Anna,\r\nthe VPN drops; my IP is 10.1.2.3.\r\n\r\nBest regards\r\nAnna Miller\r\n"
        b"+49 30 1234567\r\n\r\nOn Mon, Nov 3, 2025 Support <s@example.com> wrote:\r\n> Old.\r\n"
    )
    result = run("clean", str(mail))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "VPN drops\nHi [NAME],\nthe VPN drops; my IP is [IP].\n"
    mbox = tmp_path / "folder.mbox"
    mbox.write_bytes(b"From a@b Mon\n" + mail.read_bytes() + b"From c@d Tue\nSubject: Two\n\nx\n")
    assert run("clean", str(mbox)).stdout.count("--- message") == 2
    page = tmp_path / "page.html"
    page.write_text("<p>Printer <b>jams</b></p><blockquote>old</blockquote>")
    assert run("clean", str(page)).stdout == "Printer jams\n"
    assert "not a trained model directory" in one_line_error(
        run("clean", str(page), "--model", str(tmp_path))
    )
    assert "cannot read" in one_line_error(run("clean", str(tmp_path / "missing.eml")))


def test_the_quick_exit_keeps_the_status_and_runs_atexit_handlers(tmp_path):
    """`ticketserve` and `python -m training.*` end through training.cli.exit_with (no final
    collection): the status is the command's, and what atexit flushes is flushed."""
    log = tmp_path / "flushed.log"
    script = (
        "import atexit, logging, sys\n"
        "from training.cli import exit_with\n"
        f"logging.basicConfig(filename={str(log)!r}, level=logging.INFO)\n"
        "logging.info('written before the exit')\n"
        "atexit.register(print, 'atexit ran')\n"
        "exit_with(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == "atexit ran"
    assert "written before the exit" in log.read_text()
