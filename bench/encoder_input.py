"""Encoder input as the encoder expects it? The e5 models were trained with a "query: " prefix;
does it, or a longer or shorter truncation, give better fast-mode heads? Validation only.

    .venv/bin/python bench/encoder_input.py [--data CSV] [--shapes v3-3200,v3-de]
    .venv/bin/python bench/encoder_input.py --smoke      # generated tickets, MiniLM, seconds

For each shape (bench/robustness.py's, first seed's split) and each prefix and max length, the
training rows are embedded by the frozen encoder and the heads cross-fitted as fast mode does
(training.fit.heads.select_heads); the table shows the out-of-fold macro-F1 of the best candidate
with the embedding alone and with lexical features beside it. The test rows are never used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import DEFAULT_DATA, SMOKE_CONFIG
from robustness import shapes

from training.cli import exit_with
from training.config import TrainConfig
from training.config_flags import add_config_flags, config_overrides
from training.encoders.embeddings import embed_texts
from training.fit.heads import select_heads
from training.train import fit_features, label_indices, load_base

PREFIXES = ("", "query: ")
LENGTHS = (128, 256, 512)
# --smoke: one small shape, two short lengths, a one-point grid.
SMOKE = {
    "shapes": "sample",
    "lengths": (32, 64),
    "config": {"linear_c": [0.3], "dense_weight": [2.0]},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared v3 CSV")
    parser.add_argument("--shapes", default="v3-3200,v3-de", help="bench/robustness.py shapes")
    parser.add_argument("--smoke", action="store_true", help="generated tickets, MiniLM")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    overrides = config_overrides(args)
    lengths = LENGTHS
    if args.smoke:
        overrides = {**SMOKE_CONFIG, **SMOKE["config"], **overrides}
        args.shapes, lengths = SMOKE["shapes"], SMOKE["lengths"]
    config = TrainConfig(**overrides)
    wanted = args.shapes.split(",")
    chosen = [s for s in shapes(args.data, args.smoke, config.seed) if s.name in wanted]
    if not chosen:
        print(f"none of the shapes {args.shapes} is available here", file=sys.stderr)
        return 2
    rows = []
    for shape in chosen:
        train_frame, _ = shape.split(shape.data.frame, config.seed)
        labels = {h: sorted(shape.data.frame[h].unique()) for h in shape.data.heads}
        texts = train_frame["text"].tolist()
        for prefix in PREFIXES:
            for length in lengths:
                run = TrainConfig.from_dict({**config.to_dict(), "max_length": length})
                prefixed = [prefix + text for text in texts]
                tokenizer, model = load_base(run, labels, prefixed)
                started = time.monotonic()
                dense, _ = embed_texts(model, tokenizer, prefixed)
                seconds = time.monotonic() - started
                features = fit_features(model, run, texts, dense)
                chosen_heads = select_heads(
                    features, label_indices(train_frame, labels), labels, run
                )
                scores = {
                    head: {
                        family: max(
                            s.macro_f1 for s in selection.scored if s.candidate.features == family
                        )
                        for family in ("embedding", "both")
                    }
                    for head, selection in chosen_heads.items()
                }
                rows.append((shape.name, prefix, length, seconds, scores))
                print(f"{shape.name} {prefix!r} {length}: {scores}", flush=True)

    print(f"\nout-of-fold macro-F1 on the training rows; config {config.to_dict()}")
    print(f"{'shape':<12} {'prefix':<9} {'max_len':>7} {'embed s':>8}  per head: embedding / both")
    for name, prefix, length, seconds, scores in rows:
        cells = "  ".join(
            f"{head} {s['embedding']:.4f} / {s['both']:.4f}" for head, s in scores.items()
        )
        mean = sum(s["both"] for s in scores.values()) / len(scores)
        print(
            f"{name:<12} {prefix!r:<9} {length:>7} {seconds:>8.0f}  {cells}  mean both {mean:.4f}"
        )
    return 0


if __name__ == "__main__":
    exit_with(main())
