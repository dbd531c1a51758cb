"""Drift scores of windows of live-like tickets: like the training data, and shifted.

    .venv/bin/python -u bench/drift.py [DATA] [--seeds 2] [--windows 200] [--sizes 200 500]
    .venv/bin/python -u bench/drift.py --smoke    # generated tickets, SMOKE's sizes, seconds

A model is trained (fast mode and the bundled MiniLM unless flags say otherwise) on three
quarters of the English tickets of the fixed split's 80 %; the last quarter is a hold-out it never
sees. Windows of answers are drawn (with replacement) from:
    like training (hold-out)   the hold-out: the threshold is chosen on these
    like training (test)       English tickets of the fixed split's test 20 %
    one queue                  test English tickets of the largest queue only
    one priority               test English tickets of priority high only
    other languages            test tickets in every other language
and scored by the service's own code (`shim.quality.drift.assess`). The table gives each head's mean
score (and the highest) and the share of windows above each candidate threshold. The suggested
threshold is the smallest candidate that no hold-out window of any seed reached. --smoke:
SMOKE's generated English and German tickets (unless DATA is given), seeds, windows and size,
and common.SMOKE_CONFIG's small settings (flags given still win).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from common import DEFAULT_DATA, HEADS, SMOKE_CONFIG, fixed_split, tickets_with_languages

from shim.quality.drift import assess
from shim.settings import Settings
from training.cli import exit_with
from training.config import TrainConfig
from training.config_flags import add_config_flags, config_overrides
from training.inference.model import rare_token_shares
from training.text.data import split_tickets
from training.train import train

CANDIDATES = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
LANGUAGE = "en"
# --smoke: generated tickets, models, windows per scenario, window sizes
SMOKE = {"rows": 400, "seeds": 1, "windows": 10, "sizes": [20]}
Window = list[tuple[dict[str, dict[str, float | str]], float | None]]


def answers(result: object, frame: pd.DataFrame) -> Window:
    """What the predictions log would hold for `frame`'s tickets: labels, confidences, shares."""
    texts = frame["text"].tolist()
    predicted = result.predictor.predict(texts)  # type: ignore[attr-defined]
    model, tokenizer = result.predictor.model, result.predictor.tokenizer  # type: ignore[attr-defined]
    shares = rare_token_shares(tokenizer, texts, model.max_length)
    return [
        ({h: {"label": p[h]["label"], "confidence": p[h]["confidence"]} for h in HEADS}, share)
        for p, share in zip(predicted, shares, strict=True)
    ]


def scores(
    pool: Window, reference: dict, size: int, windows: int, rng: np.random.Generator
) -> dict[str, list[float]]:
    """Per head its scores and its label and confidence distances, and the rare-token distances
    (key "rare tokens"), one per window."""
    settings = Settings(drift_window=size, drift_min_predictions=size)
    out: dict[str, list[float]] = {}
    for _ in range(windows):
        drawn = [pool[i] for i in rng.integers(0, len(pool), size)]
        drift = assess(reference, drawn, settings)
        parts = {"rare tokens": drift.rare_tokens.distance}
        for head in HEADS:
            result = drift.heads[head]
            parts |= {
                head: result.score,
                f"{head} labels": result.labels.distance,
                f"{head} confidence": result.confidence.distance,
            }
        for key, value in parts.items():
            out.setdefault(key, []).append(float(value or 0.0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help=f"tickets (default {DEFAULT_DATA})")
    parser.add_argument("--seeds", type=int, default=2, help="models to train (default 2)")
    parser.add_argument("--windows", type=int, default=200, help="windows per scenario")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500], help="window sizes")
    parser.add_argument("--smoke", action="store_true", help="generated tickets, few windows")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    overrides = {"mode": "fast", **config_overrides(args)}
    if args.smoke:
        args.seeds, args.windows, args.sizes = SMOKE["seeds"], SMOKE["windows"], SMOKE["sizes"]
        overrides = {**SMOKE_CONFIG, **overrides}
    elif args.data is None:
        args.data = DEFAULT_DATA
    if not 1 <= args.seeds <= 10 or not 10 <= args.windows <= 10_000:
        parser.error("--seeds must be in 1..10 and --windows in 10..10000")
    if any(not 10 <= s <= 100_000 for s in args.sizes):
        parser.error("--sizes must be in 10..100000")
    if args.data is not None and not args.data.is_file():
        print(f"skipped: dataset {args.data} is not here (it lives in ../shared/data)")
        return 0
    data, languages, name = tickets_with_languages(args.data, SMOKE["rows"])
    print(f"{name}: {data.report.rows_accepted} tickets")
    train_frame, test_frame = fixed_split(data)

    def language(frame: pd.DataFrame) -> np.ndarray:
        return languages.iloc[frame["row"] - 1].to_numpy()

    english = train_frame[language(train_frame) == LANGUAGE]
    test_en = test_frame[language(test_frame) == LANGUAGE]
    largest = test_en["queue"].value_counts().index[0]
    results: dict[tuple[str, int], dict[str, list[float]]] = {}
    for seed in range(args.seeds):
        config = TrainConfig.from_dict({**overrides, "seed": seed})
        inner = split_tickets(english, "queue", val_fraction=0.25, test_fraction=0.0, seed=seed)
        holdout = inner["validation"]
        splits = split_tickets(inner["train"], "queue", 0.1, 0.0, seed)
        splits["test"] = holdout.iloc[:0]
        with tempfile.TemporaryDirectory() as tmp:
            result = train(data, config, Path(tmp) / "m", splits=splits)
        reference = result.metrics["drift_reference"]
        pools = {
            "like training (hold-out)": answers(result, holdout),
            "like training (test)": answers(result, test_en),
            f"one queue ({largest})": answers(result, test_en[test_en["queue"] == largest]),
            "one priority (high)": answers(result, test_en[test_en["priority"] == "high"]),
            "other languages": answers(result, test_frame[language(test_frame) != LANGUAGE]),
        }
        rng = np.random.default_rng(seed)
        for name, pool in pools.items():
            for size in args.sizes:
                got = scores(pool, reference, size, args.windows, rng)
                slot = results.setdefault((name, size), {})
                for key, values in got.items():
                    slot.setdefault(key, []).extend(values)
        print(f"seed {seed}: {len(splits['train']) + len(splits['validation'])} training tickets")

    print(
        f"\n{args.seeds} seed(s) x {args.windows} windows; score mean (max); "
        "share of windows above each threshold"
    )
    head_cols = "".join(f" {h + ' score':>15}" for h in HEADS)
    print(f"{'scenario':<44} {'size':>5}{head_cols}  " + " ".join(f"{t:>5}" for t in CANDIDATES))
    for (name, size), by_head in results.items():
        worst = np.maximum(*(np.asarray(by_head[h]) for h in HEADS))
        cells = "".join(f" {np.mean(by_head[h]):>8.3f} ({np.max(by_head[h]):.2f})" for h in HEADS)
        above = " ".join(f"{np.mean(worst > t):>5.2f}" for t in CANDIDATES)
        print(f"{name:<44} {size:>5}{cells}  {above}")
    parts = [f"{h} {part}" for h in HEADS for part in ("labels", "confidence")] + ["rare tokens"]
    print("\nthe parts of the scores, mean distance:")
    print(f"{'scenario':<44} {'size':>5} " + " ".join(f"{p:>19}" for p in parts))
    for (name, size), by_key in results.items():
        print(f"{name:<44} {size:>5} " + " ".join(f"{np.mean(by_key[p]):>19.3f}" for p in parts))
    for size in args.sizes:
        holdout = results[("like training (hold-out)", size)]
        highest = max(max(holdout[h]) for h in HEADS)
        chosen = next((t for t in CANDIDATES if t > highest), None)
        print(f"window {size}: highest hold-out score {highest:.3f}; smallest clear: {chosen}")
    return 0


if __name__ == "__main__":
    exit_with(main())
