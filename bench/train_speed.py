"""Training time and macro-F1: the tutorial's recipe against ours, same encoder, data and epochs.

    .venv/bin/python bench/train_speed.py [DATA] [--rows N] [--epochs E] [config flags]
    .venv/bin/python bench/train_speed.py --smoke    # SMOKE's generated tickets, one epoch

tutorial: Hugging Face `Trainer`, `padding="max_length"`, one sequence-classification model per
          head (queue, then priority), the encoder as it comes.
ours:     `training.train.train`: one shared encoder with two heads, dynamic padding,
          length-grouped batches and (for a SentencePiece encoder such as the default
          multilingual-e5-small) the vocabulary trimmed to the training texts.

Both train on the same rows (a stratified 80 % of a seeded subset of DATA) for the same epochs
with the same base encoder, max length, batch size, learning rate, weight decay and warm-up (the
TrainConfig defaults unless flags say otherwise), and are scored on the same 20 %; each time
includes loading the encoder and predicting the test rows. DATA defaults to the shared
multilingual dataset; where it is absent, generated sample tickets are used. --smoke: generated
tickets (unless DATA is given), SMOKE's rows and common.SMOKE_CONFIG's small settings (flags
given still win).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from common import DEFAULT_DATA, HEADS, SMOKE_CONFIG, tickets_with_languages
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from training.cli import exit_with
from training.config import TrainConfig
from training.config_flags import add_config_flags, config_overrides
from training.encoders.base_models import resolve_base_model
from training.text.data import TicketData
from training.train import train

SMOKE = {"rows": 120}  # --smoke: training + test tickets


def load(path: Path | None, rows: int, seed: int) -> tuple[TicketData, str]:
    """`rows` tickets of `path`, or generated ones where it is not given or not here."""
    found = path if path is not None and path.is_file() else None
    data, _, name = tickets_with_languages(found, max(rows, 200), seed)
    if rows < len(data.frame):
        data.frame, _ = train_test_split(
            data.frame, train_size=rows, random_state=seed, stratify=data.frame["queue"]
        )
    return data, name


def tutorial(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame, config: TrainConfig, work: Path
) -> dict[str, np.ndarray]:
    """One AutoModelForSequenceClassification per head, Trainer, padding to max_length."""
    base = resolve_base_model(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)

    def encode(frame: pd.DataFrame, labels: list[int] | None) -> list[dict[str, Any]]:
        # What the tutorial's `Dataset.map(tokenize)` yields: every row padded to max_length.
        encoded = tokenizer(
            frame["text"].tolist(),
            padding="max_length",
            truncation=True,
            max_length=config.max_length,
        )
        columns = list(encoded)
        rows = [dict(zip(columns, v, strict=True)) for v in zip(*encoded.values(), strict=True)]
        for row, label in zip(rows, labels or [], strict=False):
            row["label"] = label
        return rows

    steps = -(-len(train_frame) // config.batch_size) * config.epochs
    predictions = {}
    for head in HEADS:
        names = sorted(train_frame[head].unique())
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(names))
        args = TrainingArguments(
            output_dir=str(work / head),
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            warmup_steps=int(config.warmup_ratio * steps),
            seed=config.seed,
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            bf16=torch.cuda.is_available(),
            disable_tqdm=True,
        )
        index = {name: i for i, name in enumerate(names)}
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=encode(train_frame, [index[v] for v in train_frame[head]]),
        )
        trainer.train()
        logits = trainer.predict(encode(test_frame, None)).predictions
        predictions[head] = np.asarray(names)[logits.argmax(axis=1)]
    return predictions


def ours(
    data: TicketData,
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    config: TrainConfig,
    work: Path,
) -> dict[str, np.ndarray]:
    """One two-head model; no validation split, so both recipes see exactly the same rows."""
    splits = {"train": train_frame, "validation": train_frame.iloc[0:0], "test": test_frame}
    result = train(data, config, work / "ours", splits=splits, final_fit=False)
    answers = result.predictor.predict(test_frame["text"].tolist())
    return {head: np.asarray([a[head]["label"] for a in answers]) for head in HEADS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help=f"tickets (default {DEFAULT_DATA})")
    parser.add_argument("--rows", type=int, default=800, help="subset size (default 800)")
    parser.add_argument("--smoke", action="store_true", help="generated tickets, one epoch")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("accelerate") is None:
        print("bench/train_speed.py needs accelerate: make install (the dev tools)")
        return 2
    # The recipes compared are fine-tunes: ours in full mode unless --mode says otherwise.
    overrides = {"mode": "full", **config_overrides(args)}
    if args.smoke:
        args.rows = SMOKE["rows"]
        overrides = {**SMOKE_CONFIG, **overrides}
    elif args.data is None:
        args.data = DEFAULT_DATA
    config = TrainConfig(**overrides)
    if config.num_threads:  # for both recipes, not only ours (train() sets it when it starts)
        torch.set_num_threads(config.num_threads)
    hf_logging.set_verbosity_error()
    data, name = load(args.data, args.rows, config.seed)
    train_frame, test_frame = train_test_split(
        data.frame, test_size=0.2, random_state=config.seed, stratify=data.frame["queue"]
    )
    print(
        f"{name}: {len(train_frame)} training / {len(test_frame)} test tickets, "
        f"{config.epochs} epoch(s), max_length {config.max_length}, batch {config.batch_size}, "
        f"{config.base_model}, torch threads {torch.get_num_threads()}"
    )
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, run in (
            ("tutorial (Trainer, max_length padding, 2 models)", lambda: tutorial(
                train_frame, test_frame, config, Path(tmp))),
            ("ours (1 two-head model, dynamic padding)", lambda: ours(
                data, train_frame, test_frame, config, Path(tmp))),
        ):  # fmt: skip
            started = time.monotonic()
            predicted = run()
            seconds = time.monotonic() - started
            f1 = {
                h: f1_score(test_frame[h], predicted[h], average="macro", zero_division=0)
                for h in HEADS
            }
            rows[recipe] = (seconds, f1)
            print(f"  {recipe}: {seconds:.0f}s", flush=True)

    print(f"\n{'recipe':<52} {'seconds':>8} {'queue F1':>9} {'prio F1':>9}")
    for recipe, (seconds, f1) in rows.items():
        print(f"{recipe:<52} {seconds:>8.0f} {f1['queue']:>9.3f} {f1['priority']:>9.3f}")
    (slow, _), (fast, _) = rows.values()
    print(f"speed-up ours vs tutorial: {slow / fast:.2f}x")
    return 0


if __name__ == "__main__":
    exit_with(main())
