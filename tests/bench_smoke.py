"""The smoke run of every benchmark in bench/: its command and the tables it must print
(tests/test_bench_*.py run them, split in two files so that the test processes share them).

Each case runs the script as a user does, from the repository root in a subprocess, with its
smoke flag: generated tickets instead of the shared dataset (a smoke run never reads
../shared/data, so a fresh clone behaves like a machine that has it), one seed, one round, a
few hundred tickets, and where it trains, the bundled encoder on short texts. The tables'
numbers are not checked (seconds of training on a few hundred tickets); the run must exit 0 and
print each table's header. No timing is asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# Command, then a pattern per table it must print: its header line, words apart by any spaces.
CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "accuracy_fields": (
        [PYTHON, "bench/accuracy.py", "--smoke", "--feature-columns", "language"],
        (r"ours \+ fields language ", r"ours, text only \(same seeds\)"),
    ),
    "label_issues": (
        [PYTHON, "bench/label_issues.py", "--smoke"],
        (r"head +flipped +flagged +precision +recall +test F1 all +test F1 dropped",),
    ),
    "gate": (
        [PYTHON, "bench/gate.py", "--smoke"],
        (r"split +head +gate +routed +precision +classes open +held",),
    ),
    "similar": (
        [PYTHON, "bench/similar.py", "--smoke"],
        (r"stored +method +p50 ms +p95 ms +recall@10 +build s +memory MB",),
    ),
    "cpu_encoder": (
        [PYTHON, "bench/cpu_encoder.py", "--smoke"],
        (re.escape("| path | ms/ticket | speed-up | cosine | queue same | queue F1 |"),),
    ),
    "scale": (
        [PYTHON, "bench/scale.py", "--smoke"],
        (re.escape("| rows | train s | s per 1,000 | peak RSS MB | test F1 (trained) |"),),
    ),
    "drift": (
        [PYTHON, "bench/drift.py", "--smoke"],
        (r"scenario +size +queue score +priority score", r"scenario +size +queue labels"),
    ),
    "base_encoders": (
        [PYTHON, "bench/base_encoders.py", "--smoke"],
        (r"encoder +params M +trainable M +dir MB +train MB",),
    ),
    "soak": (
        [PYTHON, "bench/soak.py", "--smoke"],
        (re.escape("| process | RSS at start (MB) | RSS at end (MB) | growth |"),),
    ),
    "connectors": (
        [PYTHON, "bench/connector_latency.py", "--smoke"],
        (re.escape("| measure | measured | target | met |"),),
    ),
    "encoder_input": (
        [PYTHON, "bench/encoder_input.py", "--smoke"],
        (r"shape +prefix +max_len +embed s",),
    ),
    "robustness": (
        [PYTHON, "bench/robustness.py", "--smoke"],
        (r"shape +head +train +baseline +ticketserve", r"shape +head +old: routed"),
    ),
    "cleaning": (
        [PYTHON, "bench/cleaning.py", "--smoke"],
        (
            re.escape("| text | queue macro-F1 | priority macro-F1 | queue agreement |"),
            re.escape("| kind | values | recall | target |"),
            re.escape("| step | tickets | ms per ticket |"),
            re.escape("| target | measured |"),
        ),
    ),
    # The GPU server kits, built and run here in a temporary directory (CPU without a GPU). The
    # serving kit's run is the smoke run of bench/serve.py (`make bench`: TorchServe, the
    # in-process pass and pipeline(), on the kit's model); the accuracy kit's, that of
    # bench/tune.py, bench/accuracy.py and bench/train_speed.py (each with --smoke, on the kit's
    # copy of the bundled encoder).
    "gpu_check": (
        ["bash", "bench/gpu_check.sh", "smoke"],
        (r"mode +conc +tick/call +calls +tickets/s",),
    ),
    "gpu_accuracy": (
        ["bash", "bench/gpu_accuracy.sh", "smoke"],
        (
            r"trial \(validation macro-F1\) +queue",
            r"model +queue acc +queue F1",
            r"recipe +seconds +queue F1",
        ),
    ),
}


# Scripts whose smoke run is another case's: the GPU server kits run them.
RUN_BY = {
    "serve.py": "gpu_check",
    "tune.py": "gpu_accuracy",
    "accuracy.py": "gpu_accuracy",
    "train_speed.py": "gpu_accuracy",
}
# Modules the scripts import, not run on their own.
LIBRARIES = ("common.py", "dirty_mail.py")

# Those that start the service or TorchServe, or build a GPU server kit; the others train and
# measure in process.
SERVING = ("soak", "connectors", "gpu_check", "gpu_accuracy")


def run_smoke(name: str) -> None:
    """Run one benchmark's smoke command; it must exit 0 and print each of its tables."""
    command, headers = CASES[name]
    # The shell scripts run their Python steps with the interpreter running the tests.
    env = {**os.environ, "PYTHON": PYTHON, "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    shown = f"stdout:\n{result.stdout}\nstderr (end):\n{result.stderr[-5000:]}"
    assert result.returncode == 0, shown
    for header in headers:
        assert re.search(header, result.stdout), f"no line matching {header!r}\n{shown}"
