"""Our fine-tuned two-head model against a TF-IDF + LinearSVC baseline, on the same fixed split.

    .venv/bin/python bench/accuracy.py [DATA] [--base-model M] [--epochs N] ... [--check]

DATA defaults to ../shared/data/bueck_v3_4k/dataset-tickets-multi-lang3-4k.csv. The split is the
data README's: 80/20 stratified on queue, random_state=0, text = subject + newline + body (the
`answer` column is never used). Our model trains on the 80 % (early stopping on a validation
tenth of it) and both are scored on the same 20 %. The last line reads
`queue macro-F1 ours X baseline Y | priority macro-F1 ours X baseline Y`; with --check the exit
code is non-zero unless ours beats the baseline on both heads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from common import (
    DEFAULT_DATA,
    HEADS,
    add_config_flags,
    config_overrides,
    fixed_split,
    inner_splits,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

from training.config import TrainConfig
from training.data import TicketData, load_tickets
from training.train import train


def baseline(train_frame: pd.DataFrame, test_frame: pd.DataFrame) -> dict[str, pd.Series]:
    """TF-IDF (word 1-2 + char_wb 2-5, sublinear, min_df=2) + LinearSVC(C=0.5), per head."""
    predictions = {}
    for head in HEADS:
        model = make_pipeline(
            make_union(
                TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
                ),
            ),
            LinearSVC(C=0.5),
        )
        model.fit(train_frame["text"], train_frame[head])
        predictions[head] = pd.Series(model.predict(test_frame["text"]), index=test_frame.index)
    return predictions


def timed_baseline(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame
) -> tuple[dict[str, pd.Series], float]:
    started = time.monotonic()
    return baseline(train_frame, test_frame), time.monotonic() - started


def ours(
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    data: TicketData,
    config: TrainConfig,
    out_dir: Path,
) -> dict[str, pd.Series]:
    """Fine-tune one two-head model on the training part; predict the test part."""
    splits = inner_splits(train_frame, test_frame, config.seed)
    result = train(data, config, out_dir, progress_bar=True, splits=splits)
    validation = result.metrics.get("validation", {})
    print(
        f"best epoch {result.metrics['best_epoch']} of {result.metrics['epochs_run']}, "
        "validation macro-F1 "
        + ", ".join(f"{h} {validation[h]['macro_f1']:.3f}" for h in HEADS if h in validation)
    )
    answers = result.predictor.predict(test_frame["text"].tolist())
    return {
        head: pd.Series([a[head]["label"] for a in answers], index=test_frame.index)
        for head in HEADS
    }


def scores(truth: pd.DataFrame, predicted: dict[str, pd.Series]) -> dict[str, tuple[float, float]]:
    return {
        head: (
            accuracy_score(truth[head], predicted[head]),
            f1_score(truth[head], predicted[head], average="macro", zero_division=0),
        )
        for head in HEADS
    }


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--check", action="store_true", help="fail unless ours beats baseline")
    parser.add_argument("--baseline-only", action="store_true", help="skip the fine-tune")
    parser.add_argument("--out", type=Path, help="keep the trained model here")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    return args, TrainConfig(**config_overrides(args))


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: dataset {args.data} is not here (it lives in ../shared/data)")
        return 0
    data = load_tickets(args.data)
    languages = pd.read_csv(args.data, dtype=str, keep_default_na=False)["language"]
    print(f"{args.data.name}: {data.report.rows_accepted} tickets, config {config.to_dict()}")
    train_frame, test_frame = fixed_split(data)

    # The baseline is single-threaded CPU work: it runs in its own process while ours trains.
    with ProcessPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(timed_baseline, train_frame, test_frame)
        rows = {}
        if not args.baseline_only:
            started = time.monotonic()
            with tempfile.TemporaryDirectory() as tmp:
                out = args.out or Path(tmp) / "m"
                predicted = ours(train_frame, test_frame, data, config, out)
            ours_row = (scores(test_frame, predicted), time.monotonic() - started)
        base, base_seconds = pending.result()
    rows["baseline (TF-IDF + LinearSVC)"] = (scores(test_frame, base), base_seconds)
    if not args.baseline_only:
        rows[f"ours ({config.base_model})"] = ours_row

    majority = {h: test_frame[h].value_counts(normalize=True).iloc[0] for h in HEADS}
    print(
        f"\n{'model':<44} {'queue acc':>9} {'queue F1':>9} {'prio acc':>9} {'prio F1':>9}"
        f" {'seconds':>8}"
    )
    for name, (s, seconds) in rows.items():
        print(
            f"{name:<44} {s['queue'][0]:>9.3f} {s['queue'][1]:>9.3f} {s['priority'][0]:>9.3f}"
            f" {s['priority'][1]:>9.3f} {seconds:>8.0f}"
        )
    print(f"{'majority class':<44} {majority['queue']:>9.3f} {'':>9} {majority['priority']:>9.3f}")
    if args.baseline_only:
        return 0

    test_languages = languages.iloc[test_frame["row"] - 1].to_numpy()
    print("\nours, accuracy per language:")
    for lang in sorted(set(test_languages)):
        mask = test_languages == lang
        accs = [accuracy_score(test_frame[h][mask], predicted[h][mask]) for h in HEADS]
        print(f"  {lang}: queue {accs[0]:.3f}  priority {accs[1]:.3f}  ({mask.sum()} tickets)")

    mine, theirs = rows[f"ours ({config.base_model})"][0], rows["baseline (TF-IDF + LinearSVC)"][0]
    print(
        " | ".join(f"{h} macro-F1 ours {mine[h][1]:.3f} baseline {theirs[h][1]:.3f}" for h in HEADS)
    )
    beaten = all(mine[h][1] > theirs[h][1] for h in HEADS)
    return 0 if beaten or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
