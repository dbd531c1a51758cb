"""Tune training settings on the validation split only: each trial fine-tunes on the fixed
split's training part and is scored on its validation tenth; the test 20 % is never touched.

    .venv/bin/python bench/tune.py [DATA] [config flags] --trial "learning_rate=5e-5" \\
        --trial "learning_rate=1e-4,class_weighting=true" ...
    .venv/bin/python bench/tune.py --smoke    # generated tickets, SMOKE's trials, seconds

Config flags set what every trial shares (default: TrainConfig's defaults); each --trial adds
comma-separated field=value overrides (JSON values). Prints one row per trial and the best one
by mean validation macro-F1 of the two heads. --smoke: SMOKE's generated tickets (unless DATA is
given), common.SMOKE_CONFIG's small settings (flags given still win) and, without --trial, its
trials: a fast-mode one and a one-epoch fine-tune.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import (
    DEFAULT_DATA,
    HEADS,
    SMOKE_CONFIG,
    fixed_split,
    inner_splits,
    tickets_with_languages,
)

from training.cli import exit_with
from training.config import TrainConfig
from training.config_flags import add_config_flags, config_overrides
from training.errors import ConfigError
from training.train import train

SMOKE = {"rows": 200, "trials": ["mode=fast", "mode=full"]}  # --smoke: generated tickets, trials


def parse_trial(text: str) -> dict[str, object]:
    """`a=1,b=true,c=bundled:x` -> {"a": 1, "b": True, "c": "bundled:x"}."""
    overrides: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep:
            raise ConfigError(f"trial {text!r}: {part!r} is not field=value")
        try:
            overrides[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key.strip()] = raw.strip()
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help=f"tickets (default {DEFAULT_DATA})")
    parser.add_argument("--trial", action="append", default=[], help="field=value,...")
    parser.add_argument("--log", type=Path, help="append one JSON line per trial here")
    parser.add_argument("--smoke", action="store_true", help="generated tickets, small trials")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    shared = config_overrides(args)
    if args.smoke:
        shared = {**SMOKE_CONFIG, **shared}
        args.trial = args.trial or SMOKE["trials"]
    elif args.data is None:
        args.data = DEFAULT_DATA
    if args.data is not None and not args.data.is_file():
        print(f"skipped: dataset {args.data} is not here (it lives in ../shared/data)")
        return 0
    try:  # every trial is validated before the first one trains
        configs = [TrainConfig.from_dict({**shared, **parse_trial(t)}) for t in args.trial or [""]]
    except ConfigError as exc:
        parser.error(str(exc))
    data, _, name = tickets_with_languages(args.data, SMOKE["rows"])
    print(f"{name}: {data.report.rows_accepted} tickets")
    train_frame, test_frame = fixed_split(data)

    results = []
    for trial, config in zip(args.trial or ["(defaults)"], configs, strict=True):
        splits = inner_splits(train_frame, test_frame.iloc[0:0], config.seed)
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            metrics = train(data, config, Path(tmp) / "m", splits=splits).metrics
        seconds = time.monotonic() - started
        f1 = {h: metrics["validation"][h]["macro_f1"] for h in HEADS}
        row = {
            "trial": trial,
            "f1": f1,
            "mean": sum(f1.values()) / len(f1),
            "best_epoch": metrics["best_epoch"],
            "epochs_run": metrics["epochs_run"],
            "seconds": round(seconds, 1),
            "config": config.to_dict(),
        }
        results.append(row)
        print(
            f"{trial:<60} queue {f1['queue']:.3f} priority {f1['priority']:.3f} "
            f"mean {row['mean']:.3f} epoch {row['best_epoch']}/{row['epochs_run']} "
            f"{seconds:.0f}s",
            flush=True,
        )
        if args.log:
            with args.log.open("a", encoding="utf-8") as log:
                log.write(json.dumps(row) + "\n")

    print(f"\n{'trial (validation macro-F1)':<60} {'queue':>6} {'prio':>6} {'mean':>6} {'s':>6}")
    for row in sorted(results, key=lambda r: -r["mean"]):
        print(
            f"{row['trial']:<60} {row['f1']['queue']:>6.3f} {row['f1']['priority']:>6.3f}"
            f" {row['mean']:>6.3f} {row['seconds']:>6.0f}"
        )
    return 0


if __name__ == "__main__":
    exit_with(main())
