"""Suspected label errors against planted ones: flip 5 % of the training labels, flag, compare.

    .venv/bin/python bench/label_issues.py [DATA] [--seeds 3] [--flip-rate 0.05] ...
    .venv/bin/python bench/label_issues.py --smoke    # generated tickets, one seed, seconds

DATA defaults to ../shared/data/bueck_v3_4k/dataset-tickets-multi-lang3-4k.csv, split as the data
README says (80/20 stratified on queue, random_state=0). Per seed, each head's label of a random
`--flip-rate` of the training rows is replaced by another of its labels, drawn uniformly; fast
mode trains on them (test split held out) and training/fit/label_issues.py flags rows at its default
cut-off. The table gives, per head, the precision and recall of the flagged rows against the
flipped ones, and the test macro-F1 of the model trained on every row and of one trained again
without the flagged rows (flagged on any head), both in this run. The default cut-off was chosen
on flips of another seed (1000) in the training part; the test split plays no part in it.

For time, the fast mode's candidate grid is narrowed to C 1 and embedding weight 4 (the queue
head's choice with the full grid on this data); `--linear-c` / `--dense-weight` widen it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import (
    HEADS,
    SMOKE_ROWS,
    fixed_split,
    inner_splits,
    missing,
    parse_seeded,
    seed_configs,
    seeded_parser,
)
from common import tickets_with_languages as tickets

from training.cli import exit_with
from training.config import TrainConfig
from training.fit.label_issues import flag_issues
from training.text.data import TicketData
from training.train import train

GRID = {"mode": "fast", "linear_c": [1.0], "dense_weight": [4.0]}
FIRST_SEED = 1  # seeds 1, 2, 3; the cut-off was tuned on flips of seed 1000


def flip_labels(
    frame: pd.DataFrame, labels: dict[str, list[str]], rate: float, seed: int
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A copy of `frame` with each head's label of a random `rate` of rows changed to another
    label (uniformly); and per head, which rows were flipped."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    flipped = {}
    for head in labels:
        mask = rng.random(len(out)) < rate
        values = out[head].tolist()
        for i in np.flatnonzero(mask):
            others = [name for name in labels[head] if name != values[i]]
            values[i] = others[rng.integers(len(others))]
        out[head] = values
        flipped[head] = mask
    return out, flipped


def run_seed(
    data: TicketData, train_frame: pd.DataFrame, test_frame: pd.DataFrame, config: TrainConfig,
    rate: float,
) -> dict[str, dict[str, float]]:  # fmt: skip
    labels = {head: sorted(data.frame[head].unique()) for head in HEADS}
    noisy, flipped = flip_labels(train_frame, labels, rate, config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        first = train(
            data, config, Path(tmp) / "all", splits=inner_splits(noisy, test_frame, config.seed),
            final_fit=False,
        )  # fmt: skip
        held = first.held_out
        assert held is not None
        # The held-out rows are the training rows, in the order of the splits.
        position = {row: i for i, row in enumerate(noisy["row"])}
        order = np.asarray([position[row] for row in held.frame["row"]])
        flagged_any = np.zeros(len(noisy), dtype=bool)
        out: dict[str, dict[str, float]] = {}
        for head in HEADS:
            given = np.asarray([labels[head].index(v) for v in held.frame[head]])
            rows = order[flag_issues(given, held.probs[head]).rows]
            flagged = np.zeros(len(noisy), dtype=bool)
            flagged[rows] = True
            flagged_any |= flagged
            hits = int((flagged & flipped[head]).sum())
            out[head] = {
                "flipped": int(flipped[head].sum()),
                "flagged": int(flagged.sum()),
                "precision": hits / flagged.sum() if flagged.any() else float("nan"),
                "recall": hits / flipped[head].sum() if flipped[head].any() else float("nan"),
                "f1_all": first.metrics["test"][head]["macro_f1"],
            }
        kept = noisy[~flagged_any]
        second = train(
            data, config, Path(tmp) / "kept", splits=inner_splits(kept, test_frame, config.seed),
            final_fit=False,
        )  # fmt: skip
        for head in HEADS:
            out[head]["f1_dropped"] = second.metrics["test"][head]["macro_f1"]
            out[head]["dropped"] = int(flagged_any.sum())
        print(f"seed {config.seed}: {time.monotonic() - started:.0f} s", flush=True)
    return out


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = seeded_parser(__doc__)
    parser.add_argument("--flip-rate", type=float, default=0.05, help="share of labels flipped")
    args, config = parse_seeded(parser, argv, {**GRID, "seed": FIRST_SEED})
    if not 0 < args.flip_rate < 0.5:
        parser.error(f"--flip-rate must be in (0, 0.5), got {args.flip_rate}")
    return args, config


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v == v]  # no NaN: a seed that flagged nothing has no precision
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "n/a"


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    if missing(args.data):
        return 0
    data, _, name = tickets(args.data, SMOKE_ROWS)
    train_frame, test_frame = fixed_split(data)
    print(f"{name}: {len(train_frame)} training rows, {len(test_frame)} test rows; flip rate "
          f"{args.flip_rate:.0%}; config {config.to_dict()}")  # fmt: skip
    runs = []
    for seeded in seed_configs(config, args.seeds):
        runs.append(run_seed(data, train_frame, test_frame, seeded, args.flip_rate))

    print(f"\n{len(runs)} seed(s), mean ± std; flagged at the default cut-off")
    print(
        f"{'head':<9} {'flipped':>8} {'flagged':>8} {'precision':>13} {'recall':>13} "
        f"{'test F1 all':>13} {'test F1 dropped':>15}"
    )
    for head in HEADS:
        rows = [run[head] for run in runs]
        print(
            f"{head:<9} {np.mean([r['flipped'] for r in rows]):>8.0f} "
            f"{np.mean([r['flagged'] for r in rows]):>8.0f} "
            f"{mean_std([r['precision'] for r in rows]):>13} "
            f"{mean_std([r['recall'] for r in rows]):>13} "
            f"{mean_std([r['f1_all'] for r in rows]):>13} "
            f"{mean_std([r['f1_dropped'] for r in rows]):>15}"
        )
    dropped = np.mean([run[HEADS[0]]["dropped"] for run in runs])
    print(f"rows dropped for the second training (flagged on any head): {dropped:.0f} on average")
    return 0


if __name__ == "__main__":
    exit_with(main())
