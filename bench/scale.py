"""How fast-mode training scales with the number of tickets, and what an optimised CPU encoder
path (bench/cpu_encoder.py's) changes at that size.

Usage:
    .venv/bin/python bench/scale.py --rows 5000 [--json scale.json]   # generated tickets
    .venv/bin/python bench/scale.py FILE --rows 5000                    # N rows of a file
    .venv/bin/python bench/scale.py --smoke                             # the bundled MiniLM

1. Training: `ticketserve train --mode fast` with the default settings (or --base-model,
   --max-length, --encoder-precision) on the N tickets, in a child process with an empty
   embedding cache: its wall seconds, seconds per 1,000 tickets, peak resident memory, and the
   model's own test macro-F1 per head (from its held-out split, before the final fit on every
   row).
2. The encoder, on --embed-rows of the same tickets: PyTorch fp32 (the default path of training
   and serving) against --optimised (default: torch bf16, the product's `encoder_precision:
   bf16`; any path of bench/cpu_encoder.py, run with the same arguments): the embedding
   speed-up, and a fast-mode
   head fitted on each path's embeddings: the share of test labels the int8 head gives as the
   fp32 head does, and the macro-F1 of both.

The printed table has one row per run; `--json` writes it with at least `rows`,
`train_seconds`, `embed_speedup`, `label_agreement` (the mean over heads) and `peak_rss_mb`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cpu_encoder
from common import HEADS, SMOKE_CONFIG

from training.cli import exit_with
from training.text.data import load_tickets
from training.text.sample_data import generate_tickets

REFERENCE = "torch fp32"
SMOKE = {"rows": 200, "embed_rows": 100}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, help="a ticket file (default: generated)")
    parser.add_argument("--rows", type=int, default=5000, help="tickets to train on (5000)")
    parser.add_argument(
        "--embed-rows", type=int, default=1000, help="tickets of the encoder comparison (1000)"
    )
    parser.add_argument("--base-model", help="the encoder (default: training's default)")
    parser.add_argument("--max-length", type=int, help="tokens per ticket (default: training's)")
    parser.add_argument(
        "--encoder-precision", choices=("fp32", "bf16"), help="training's (default: its own)"
    )
    parser.add_argument(
        "--optimised",
        default="torch bf16",
        choices=[p for p in cpu_encoder.PATHS if p != REFERENCE],
        help="the encoder path compared with torch fp32 (default: torch bf16)",
    )
    parser.add_argument("--json", type=Path, help="write the table's row here")
    parser.add_argument("--smoke", action="store_true", help="small, the bundled MiniLM")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.embed_rows = SMOKE["rows"], SMOKE["embed_rows"]
        args.base_model = args.base_model or SMOKE_CONFIG["base_model"]
        args.max_length = args.max_length or SMOKE_CONFIG["max_length"]
    if not 100 <= args.rows <= 1_000_000:
        parser.error(f"--rows must be between 100 and 1000000, got {args.rows}")
    if not 100 <= args.embed_rows <= min(args.rows, 100_000):
        parser.error(f"--embed-rows must be between 100 and --rows, got {args.embed_rows}")
    if args.data is not None and not args.data.is_file():
        parser.error(f"{args.data}: no such file")
    return args


def write_tickets(args: argparse.Namespace, path: Path) -> None:
    """N tickets as CSV: a seeded sample of the file's rows, else generated ones."""
    if args.data is None:
        generate_tickets(args.rows, seed=1).to_csv(path, index=False)
        return
    frame = load_tickets(args.data).frame
    if len(frame) < args.rows:
        sys.exit(f"{args.data} has {len(frame)} usable tickets; --rows asks for {args.rows}")
    frame.sample(n=args.rows, random_state=0).to_csv(path, index=False)


def train(args: argparse.Namespace, data: Path, work: Path) -> dict:
    """Fast-mode training in a child process: seconds, its peak RSS and its test macro-F1."""
    command = [sys.executable, "-m", "training.cli", "train", str(data), "--out",
               str(work / "model"), "--mode", "fast"]  # fmt: skip
    if args.base_model:
        command += ["--base-model", args.base_model]
    if args.max_length:
        command += ["--max-length", str(args.max_length)]
    if args.encoder_precision:
        command += ["--encoder-precision", args.encoder_precision]
    env = {**os.environ, "TICKETSERVE_CACHE": str(work / "cache")}  # nothing embedded before
    started = time.monotonic()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    # ru_maxrss of the children is the largest of them (KiB on Linux): the training process.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    metrics = json.loads((work / "model" / "metrics.json").read_text())
    test = metrics.get("test") or {}
    f1 = {head: test[head]["macro_f1"] for head in HEADS if head in test}
    return {"train_seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb), "test_f1": f1}


def encoders(args: argparse.Namespace, data: Path, work: Path) -> dict:
    """bench/cpu_encoder.py's fp32 and --optimised rows on --embed-rows tickets."""
    out = work / "encoders.json"
    argv = [str(data), "--rows", str(args.embed_rows), "--json", str(out), "--threads",
            str(os.cpu_count() or 1), "--paths", f"{REFERENCE},{args.optimised}"]  # fmt: skip
    if args.base_model:
        argv += ["--base-model", args.base_model]
    if args.max_length:
        argv += ["--max-length", str(args.max_length)]
    if cpu_encoder.main(argv) != 0:
        sys.exit("the encoder comparison failed")
    found = {row["path"]: row for row in json.loads(out.read_text())}
    reference, optimised = found[REFERENCE], found[args.optimised]
    heads = [h for h in HEADS if f"{h}_unchanged" in optimised]
    return {
        "optimised": args.optimised,
        "embed_ms_fp32": reference["ms_per_ticket"],
        "embed_ms_optimised": optimised["ms_per_ticket"],
        "embed_speedup": optimised["speedup"],
        "label_agreement": round(sum(optimised[f"{h}_unchanged"] for h in heads) / len(heads), 4),
        "f1_fp32": {h: reference[f"{h}_f1"] for h in heads},
        "f1_optimised": {h: optimised[f"{h}_f1"] for h in heads},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    data = work / "tickets.csv"
    write_tickets(args, data)
    print(f"{args.rows} tickets ({args.data or 'generated'}), fast mode", file=sys.stderr)
    row = {"rows": args.rows, "encoder_precision": args.encoder_precision or "default"}
    row.update(train(args, data, work))
    row["seconds_per_1000"] = round(row["train_seconds"] / args.rows * 1000, 1)
    row.update(encoders(args, data, work))
    print_table(row)
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return 0


def print_table(row: dict) -> None:
    heads = list(row["f1_fp32"])
    columns = ["rows", "train s", "s per 1,000", "peak RSS MB", "test F1 (trained)",
               "embed ms fp32 / optimised", "speed-up", "labels same", "head F1 fp32",
               "head F1 optimised"]  # fmt: skip
    f1 = "/".join(f"{row['test_f1'].get(h, float('nan')):.3f}" for h in heads)
    cells = [
        f"{row['rows']:,}",
        f"{row['train_seconds']:.0f}",
        f"{row['seconds_per_1000']:.1f}",
        f"{row['peak_rss_mb']:,}",
        f1,
        f"{row['embed_ms_fp32']:.1f} / {row['embed_ms_optimised']:.1f}",
        f"{row['embed_speedup']:.2f}x",
        f"{row['label_agreement']:.1%}",
        "/".join(f"{row['f1_fp32'][h]:.3f}" for h in heads),
        "/".join(f"{row['f1_optimised'][h]:.3f}" for h in heads),
    ]
    print(
        f"\ntraining's encoder precision: {row['encoder_precision']}; optimised path: "
        f"{row['optimised']}; macro-F1 per head: {'/'.join(heads)}"
    )
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    exit_with(main())
