"""Full mode's fine-tune under torchrun: two CPU processes (gloo) on the tiny model learn what one
process learns from the same data and settings, within what their different dropout draws allow;
the first process alone writes the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PROBE_TEXTS, TINY_ROWS

from training.export.predict import Predictor
from training.text.sample_data import write_sample_csv

pytestmark = pytest.mark.slow  # two trainings, one of them in two processes

FLAGS = [
    "--base-model", "all-MiniLM-L6-v2", "--mode", "full", "--epochs", "2", "--max-length", "32",
    "--batch-size", "16", "--seed", "3", "--no-similar-tickets",
]  # fmt: skip


def train(data: Path, out: Path, processes: int, cache: Path) -> subprocess.CompletedProcess:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
        if processes > 1
        else [sys.executable]
    )
    env = {"TICKETSERVE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [*launcher, "-m", "training.cli", "train", str(data), "--out", str(out), *FLAGS],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def test_two_processes_learn_what_one_learns(tmp_path: Path) -> None:
    data = tmp_path / "tickets.csv"
    write_sample_csv(data, TINY_ROWS * 2, seed=4)
    one = train(data, tmp_path / "one", 1, tmp_path / "cache")
    assert one.returncode == 0, one.stderr[-3000:]
    two = train(data, tmp_path / "two", 2, tmp_path / "cache")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("model written to") == 1  # the first process reports and exports
    metrics = {
        name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two")
    }
    for head in ("queue", "priority"):
        scores = [metrics[name]["validation"][head]["macro_f1"] for name in ("one", "two")]
        assert abs(scores[0] - scores[1]) <= 0.1, (head, scores)
    one_probs, two_probs = (
        Predictor.load(tmp_path / name).predict_proba(PROBE_TEXTS) for name in ("one", "two")
    )
    gap = max(float(np.abs(one_probs[h] - two_probs[h]).max()) for h in ("queue", "priority"))
    print(f"largest probability gap on the probes, one vs two processes: {gap:.3f}")
    assert gap <= 0.15
