"""The auto-routing gate per head against one per predicted class, measured in the same runs.

    .venv/bin/python bench/gate.py [DATA] [--seeds 3] [--target-precision 0.9] ...
    .venv/bin/python bench/gate.py --smoke    # generated tickets, one seed, seconds

DATA defaults to ../shared/data/bueck_v3_4k/dataset-tickets-multi-lang3-4k.csv, split as the data
README says (80/20 stratified on queue, random_state=0). Per seed, fast mode trains once on the
80 % (the test split held out; embeddings come from the cache); both gates are chosen by the
training code on the same out-of-fold scores (training/train.py `calibrate`) and applied by the
model's own rule (training/inference/model.py `gate_threshold`) to the same test predictions. The
table gives, per head and gate, the share of tickets routed automatically and the precision reached
there, mean ± std over seeds, and for the per-class gate how many classes open.

"validation" rows decide the default without the test split: the out-of-fold scores of the 80 %
are cut in two halves (by the seed); each gate is chosen on one half and measured on the other,
both ways round, and the two halves' tickets pooled.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

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
from training.fit.calibration import class_curves, precision_curve, threshold_for
from training.inference.model import format_predictions, probabilities
from training.text.data import TicketData
from training.train import train

RULES = ("head", "class")
FIRST_SEED = 1


def gates(
    confidence: np.ndarray,
    predicted: np.ndarray,
    correct: np.ndarray,
    names: list[str],
    config: TrainConfig,
) -> dict[str, dict[str, Any]]:
    """Both gates of one head chosen on these scores, as the model directory carries them."""
    level, target = config.gate_confidence, config.target_precision
    curves = class_curves(confidence, predicted, correct, names, level)
    return {
        "head": {"threshold": threshold_for(precision_curve(confidence, correct, level), target)},
        "class": {"classes": {name: threshold_for(c, target) for name, c in curves.items()}},
    }


def routed(probs: np.ndarray, names: list[str], gate: dict[str, Any]) -> np.ndarray:
    """Which tickets a gate routes, by the model's own rule."""
    answers = format_predictions({"h": probs}, {"h": names}, 1, {"h": gate})
    return np.asarray([answer["h"]["auto_route"] for answer in answers], dtype=bool)


def measured(probs: np.ndarray, truth: np.ndarray, names: list[str], gate: dict) -> dict:
    """Tickets, routed and right among the routed, and the classes whose gate is open."""
    route = routed(probs, names, gate)
    right = probs.argmax(axis=1) == truth
    open_classes = sum(t is not None for t in gate.get("classes", {}).values())
    return {
        "tickets": len(truth),
        "routed": int(route.sum()),
        "hits": int((route & right).sum()),
        "open": open_classes,
    }


def pooled(parts: list[dict]) -> dict:
    return {key: sum(p[key] for p in parts) for key in ("tickets", "routed", "hits")} | {
        "open": float(np.mean([p["open"] for p in parts]))
    }


def run_seed(
    data: TicketData, train_frame: pd.DataFrame, test_frame: pd.DataFrame, config: TrainConfig
) -> dict[str, Any]:
    """One training; both gates on the test split and, chosen on half of the out-of-fold
    scores, on the other half (validation)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        result = train(
            data,
            config,
            Path(tmp) / "m",
            splits=inner_splits(train_frame, test_frame, config.seed),
            final_fit=False,
        )
    assert result.test_logits is not None and result.held_out is not None
    labels = result.predictor.labels
    temperature = result.predictor.model.temperature
    test_probs = probabilities(result.test_logits, temperature)
    out: dict[str, Any] = {"test": {}, "validation": {}}
    for head in HEADS:
        names = labels[head]
        calibration = result.metrics["calibration"][head]
        trained = {
            "head": {"threshold": calibration["threshold"]},
            "class": {"classes": {n: c["threshold"] for n, c in calibration["classes"].items()}},
        }
        truth = np.asarray([names.index(v) for v in test_frame[head]])
        out["test"][head] = {
            rule: measured(test_probs[head], truth, names, trained[rule]) for rule in RULES
        }
        # Validation: out-of-fold scores of the training part, chosen on one half, measured
        # on the other, both ways round.
        probs = result.held_out.probs[head]
        oof_truth = np.asarray([names.index(v) for v in result.held_out.frame[head]])
        half = np.random.default_rng(config.seed).random(len(oof_truth)) < 0.5
        parts: dict[str, list[dict]] = {rule: [] for rule in RULES}
        for chosen in (half, ~half):
            conf, pred = probs[chosen].max(axis=1), probs[chosen].argmax(axis=1)
            found = gates(conf, pred, pred == oof_truth[chosen], names, config)
            for rule in RULES:
                parts[rule].append(measured(probs[~chosen], oof_truth[~chosen], names, found[rule]))
        out["validation"][head] = {rule: pooled(parts[rule]) for rule in RULES}
    print(f"seed {config.seed}: {time.monotonic() - started:.0f} s", flush=True)
    return out


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = seeded_parser(__doc__)
    args, config = parse_seeded(parser, argv, {"mode": "fast", "seed": FIRST_SEED})
    if config.mode != "fast":
        parser.error("the gate bench compares gates on fast mode's out-of-fold scores: --mode fast")
    return args, config


def mean_std(values: list[float], percent: bool = False) -> str:
    values = [v for v in values if v == v]  # no NaN: a run that routed nothing has no precision
    if not values:
        return "n/a"
    scale, unit = (100, "%") if percent else (1, "")
    digits = 1 if percent else 3
    return f"{np.mean(values) * scale:.{digits}f}{unit} ± {np.std(values) * scale:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    if missing(args.data):
        return 0
    data, _, name = tickets(args.data, SMOKE_ROWS)
    train_frame, test_frame = fixed_split(data)
    print(f"{name}: {len(train_frame)} training rows, {len(test_frame)} test rows; target "
          f"precision {config.target_precision}; config {config.to_dict()}")  # fmt: skip
    runs = []
    for seeded in seed_configs(config, args.seeds):
        runs.append(run_seed(data, train_frame, test_frame, seeded))

    print(
        f"\n{len(runs)} seed(s), mean ± std; target precision {config.target_precision:.2f} at "
        f"{config.gate_confidence:.0%} confidence"
    )
    print(
        f"{'split':<11} {'head':<9} {'gate':<6} {'routed':>14} {'precision':>14} "
        f"{'classes open':>13} {'held':>5}"
    )
    for split in ("validation", "test"):
        for head in HEADS:
            for rule in RULES:
                rows = [run[split][head][rule] for run in runs]
                precision = [r["hits"] / r["routed"] if r["routed"] else np.nan for r in rows]
                held = sum(
                    r["routed"] >= 50 and p >= config.target_precision - 0.02
                    for r, p in zip(rows, precision, strict=True)
                )
                big = sum(r["routed"] >= 50 for r in rows)
                classes = mean_std([r["open"] for r in rows]) if rule == "class" else "-"
                print(
                    f"{split:<11} {head:<9} {rule:<6} "
                    f"{mean_std([r['routed'] / r['tickets'] for r in rows], percent=True):>14} "
                    f"{mean_std(precision):>14} {classes:>13} {f'{held}/{big}':>5}"
                )
    print("held: runs with at least 50 routed tickets at precision >= target - 0.02")
    return 0


if __name__ == "__main__":
    exit_with(main())
