"""What a base encoder costs on a CPU: multilingual-e5-small full, trimmed, frozen, vs MiniLM.

    .venv/bin/python bench/base_encoders.py [CORPUS] [--steps N] [--threads N]
    .venv/bin/python bench/base_encoders.py --smoke    # SMOKE's sizes: every row, in seconds

CORPUS (CSV/JSON/JSONL of tickets) defaults to
../shared/data/bueck_v3_4k/dataset-tickets-multi-lang3-4k.csv when it exists, else 4,000
generated tickets; its texts (subject + newline + body, as training sees them) decide the
trimmed vocabulary and the token counts. Rows:

  (a) multilingual-e5-small as prepared (dequantised 4-bit copy, 250k-piece vocabulary)
  (b) the same with its vocabulary trimmed to the corpus (training.encoders.vocab_trim)
  (c) the full model with its word embeddings frozen (no gradient, no AdamW update)
  (d) the bundled all-MiniLM-L6-v2, for reference

A training step is one batch of 16 x 128 tokens through the two-head classifier: forward,
cross-entropy on both heads, backward, gradient clipping, AdamW step (the loop of
training.fit.fine_tune). The encoders take turns, one step each per round, so load from other
processes hits every row alike; the table gives the median of --steps rounds after one warm-up,
as wall time and as this process's CPU time (steadier on a shared machine, with --threads 1;
with several threads it also counts their spin-waiting). "train MB" is weights +
gradients + AdamW's two moments, 4 bytes each. A last line reports how the trimmed tokenizer
copes with unseen text: trimmed on 90 % of the corpus, measured on the other 10 %.
--smoke: SMOKE's generated corpus (unless CORPUS is given), steps, batch shape and threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import DEFAULT_DATA
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from training.cli import exit_with
from training.encoders.base_models import bundled_minilm_path, prepare_base_model
from training.encoders.vocab_trim import trim_vocabulary
from training.inference.model import TicketClassifier
from training.text.data import load_tickets
from training.text.sample_data import generate_tickets

BATCH, SEQUENCE, GENERATED = 16, 128, 4000  # a step's batch shape; tickets without a corpus
# --smoke: all of these; one torch thread (unless --threads), as two spin-waiting threads on a
# busy machine slow the e5 rows down several times over
SMOKE = {"steps": 1, "batch": 4, "sequence": 32, "generated": 200, "threads": 1}
LABELS = {"queue": [f"q{i}" for i in range(8)], "priority": ["high", "medium", "low"]}


@dataclass
class Encoder:
    """One row of the table: a classifier on one encoder, its optimizer and its timings."""

    name: str
    model_dir: Path
    model: TicketClassifier
    optimizer: torch.optim.Optimizer
    load_s: float
    dir_mb: float
    tokens: list[int]  # per corpus ticket, untruncated
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def train_mb(self) -> float:
        """Weights, gradients and AdamW's two moments, 4 bytes each."""
        return (4 * self.parameters + 12 * self.trainable) / 1e6


def corpus_texts(path: Path | None, generated: int) -> tuple[list[str], str]:
    """Ticket texts as training sees them (without a corpus, `generated` generated tickets),
    and where they came from."""
    if path is None:
        frame = generate_tickets(generated, seed=0)
        return (frame["subject"].fillna("") + "\n" + frame["body"]).tolist(), "generated"
    return load_tickets(path).frame["text"].tolist(), path.name


def directory_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6


def load(name: str, model_dir: Path, texts: list[str], freeze: bool = False) -> Encoder:
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = TicketClassifier.from_encoder(str(model_dir), LABELS, dropout=0.1, max_length=256)
    load_s = time.perf_counter() - started
    if freeze:  # what a freeze_embeddings option does: no gradient, no AdamW state
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01
    )
    tokens = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    size = directory_mb(model_dir)
    return Encoder(name, model_dir, model.train(), optimizer, load_s, size, tokens)


def train_step(encoder: Encoder, batch: int, sequence: int) -> None:
    """One forward + loss on both heads + backward + clipping + AdamW step, timed."""
    model = encoder.model
    generator = torch.Generator().manual_seed(len(encoder.wall))
    vocab = model.encoder.config.vocab_size
    input_ids = torch.randint(4, vocab, (batch, sequence), generator=generator)
    targets = {
        h: torch.randint(0, len(n), (batch,), generator=generator) for h, n in LABELS.items()
    }
    started, started_cpu = time.perf_counter(), time.process_time()
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    loss = sum(torch.nn.functional.cross_entropy(logits[h], targets[h]) for h in LABELS)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    encoder.optimizer.step()
    encoder.optimizer.zero_grad(set_to_none=True)
    encoder.wall.append(time.perf_counter() - started)
    encoder.cpu.append(time.process_time() - started_cpu)


def unseen_text_report(e5_dir: Path, texts: list[str], work: Path) -> str:
    """Trim on 90 % of the corpus; tokens per ticket and <unk> share on the other 10 %."""
    cut = len(texts) * 9 // 10
    result = trim_vocabulary(e5_dir, texts[:cut], work / "trim-90")
    held_out = texts[cut:]
    full = AutoTokenizer.from_pretrained(str(e5_dir))(held_out)["input_ids"]
    trimmed_tokenizer = AutoTokenizer.from_pretrained(str(result.model_dir))
    trimmed = trimmed_tokenizer(held_out)["input_ids"]
    full_tokens, trimmed_tokens = sum(map(len, full)), sum(map(len, trimmed))
    unk = sum(ids.count(trimmed_tokenizer.unk_token_id) for ids in trimmed)
    changed = sum(len(a) != len(b) for a, b in zip(full, trimmed, strict=True))
    return (
        f"unseen text (trimmed on {cut} tickets to {result.vocab_after} pieces, "
        f"{len(held_out)} held out): {trimmed_tokens / full_tokens - 1:+.1%} tokens, "
        f"<unk> {unk / trimmed_tokens:.2%} of tokens, "
        f"{changed / len(held_out):.0%} of tickets tokenized differently"
    )


def print_table(encoders: list[Encoder]) -> None:
    header = (
        f"{'encoder':<44} {'params M':>8} {'trainable M':>11} {'dir MB':>7} {'train MB':>8} "
        f"{'load s':>6} {'step s':>6} {'cpu s':>6} {'tok/ticket':>10} {'>256 tok':>8}"
    )
    print(header)
    print("-" * len(header))
    for e in encoders:
        wall, cpu = statistics.median(e.wall[1:]), statistics.median(e.cpu[1:])  # [0]: warm-up
        over = sum(n > 256 for n in e.tokens) / len(e.tokens)
        print(
            f"{e.name:<44} {e.parameters / 1e6:>8.1f} {e.trainable / 1e6:>11.1f} "
            f"{e.dir_mb:>7.0f} {e.train_mb:>8.0f} {e.load_s:>6.1f} "
            f"{wall:>6.2f} {cpu:>6.2f} {statistics.fmean(e.tokens):>10.0f} {over:>8.1%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, help="tickets file (see above)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per encoder")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--smoke", action="store_true", help="tiny corpus, batch and steps")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    sizes = {"steps": args.steps, "batch": BATCH, "sequence": SEQUENCE, "generated": GENERATED}
    if args.smoke:
        sizes = SMOKE  # --steps too: a smoke run is one round after the warm-up
        args.threads = args.threads or SMOKE["threads"]
    elif args.corpus is None and DEFAULT_DATA.is_file():
        args.corpus = DEFAULT_DATA
    hf_logging.set_verbosity_error()  # token counts are taken untruncated on purpose
    if args.threads:
        torch.set_num_threads(args.threads)
    texts, source = corpus_texts(args.corpus, sizes["generated"])
    e5_dir = prepare_base_model("multilingual-e5-small")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        trimmed = trim_vocabulary(e5_dir, texts, Path(tmp) / "trimmed")
        trim_s = time.perf_counter() - started
        encoders = [
            load("(a) e5-small full", e5_dir, texts),
            load(
                f"(b) e5-small trimmed ({trimmed.vocab_after:,} pieces)", trimmed.model_dir, texts
            ),
            load("(c) e5-small full, frozen word embeddings", e5_dir, texts, freeze=True),
            load("(d) all-MiniLM-L6-v2 (bundled)", bundled_minilm_path(), texts),
        ]
        # Round robin, so that load from other processes hits every row alike.
        for round_ in range(sizes["steps"] + 1):
            for encoder in encoders:
                train_step(encoder, sizes["batch"], sizes["sequence"])
            print(f"  round {round_} of {sizes['steps']} done", file=sys.stderr)
        unseen = unseen_text_report(e5_dir, texts, Path(tmp))
    print(
        f"corpus: {source}, {len(texts)} tickets; batch {sizes['batch']} x {sizes['sequence']} "
        f"tokens; {torch.get_num_threads()} torch threads; trimming took {trim_s:.1f} s"
    )
    print_table(encoders)
    print(unseen)
    return 0


if __name__ == "__main__":
    exit_with(main())
