"""Which CPU inference path embeds tickets fastest without changing the answers.

Usage:
    .venv/bin/python bench/cpu_encoder.py              # 2,000 of v3's tickets, the default encoder
    .venv/bin/python bench/cpu_encoder.py --rows 4000 --json out.json
    .venv/bin/python bench/cpu_encoder.py --smoke      # generated tickets, the bundled MiniLM

Every candidate embeds the same tickets in the same run, on `--threads` CPU threads, in batches
of 32 ordered by length (as fast-mode training does):

- torch fp32: the product's default (`training.encoders.embeddings.embed_texts` without a cache);
- torch bf16: the product's `encoder_precision: bf16` (the same code under bf16 autocast, fast on
  CPUs with native bf16: AVX-512 BF16, AMX, Arm BF16);
- torch int8: PyTorch's dynamic quantisation of the encoder's Linear layers;
- ONNX fp32: the encoder exported to ONNX, run by ONNX Runtime;
- ONNX int8: that graph with ONNX Runtime's dynamic quantisation (int8 weights, one scale per
  tensor), and the same with one scale per output channel.

For each: seconds per 1,000 tickets (after a warm-up batch), the speed-up over torch fp32, the
mean cosine of its embeddings to torch fp32's, the time to build it from the weights and its
size on disk; and what a head makes of it. The head is the fast mode's usual winner, written out
here so that every path gets the same one: a class-balanced LinearSVC (C=1) per label over
[word 1-2 + char 2-5 TF-IDF n-grams, 4 x the L2-normalised embedding], fitted on the train
split's embeddings of that path. Reported: the share of test tickets whose label is the one the
torch fp32 head gives, and the test macro-F1. Split: the data README's (80/20 stratified on the
queue, random_state=0) on the rows taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import DEFAULT_DATA, HEADS, fixed_split, missing
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.pipeline import make_union
from sklearn.svm import LinearSVC
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from training.cli import exit_with
from training.encoders.base_models import resolve_base_model
from training.encoders.embeddings import embed_texts
from training.inference.model import TicketClassifier
from training.text.data import TicketData, load_tickets
from training.text.sample_data import write_sample_csv

BATCH = 32
SMOKE = {"rows": 160, "base_model": "all-MiniLM-L6-v2", "max_length": 64}
DENSE_WEIGHT = 4.0
Embed = Callable[[Sequence[str]], np.ndarray]
PATHS = (
    "torch fp32",
    "torch bf16",
    "torch int8",
    "ONNX fp32",
    "ONNX int8",
    "ONNX int8 per channel",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="a ticket file")
    parser.add_argument("--rows", type=int, default=2000, help="tickets taken (default 2000)")
    parser.add_argument("--base-model", default="multilingual-e5-small", help="the encoder")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per ticket")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every path")
    parser.add_argument("--smoke", action="store_true", help="generated tickets, MiniLM, seconds")
    parser.add_argument("--json", type=Path, help="write the table's rows here")
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"the paths to measure, comma-separated (default all: {', '.join(PATHS)})",
    )
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if unknown := set(args.paths) - set(PATHS):
        parser.error(f"--paths: unknown {', '.join(sorted(unknown))}; known: {', '.join(PATHS)}")
    if not 100 <= args.rows <= 100_000:
        parser.error(f"--rows must be between 100 and 100000, got {args.rows}")
    if not 1 <= args.threads <= 256:
        parser.error(f"--threads must be between 1 and 256, got {args.threads}")
    if args.smoke:
        args.rows, args.base_model, args.max_length = (
            SMOKE["rows"],
            SMOKE["base_model"],
            SMOKE["max_length"],
        )
    return args


def tickets(args: argparse.Namespace, work: Path) -> TicketData:
    path = args.data
    if args.smoke:
        path = work / "tickets.csv"
        write_sample_csv(path, rows=args.rows, seed=1)
    data = load_tickets(path)
    taken = data.frame.sample(n=min(args.rows, len(data.frame)), random_state=0)
    return replace(data, frame=taken.reset_index(drop=True))


class Encoder(torch.nn.Module):
    """The encoder's last hidden state from ids and mask: the graph ONNX is exported from."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(base: Path, tokenizer: PreTrainedTokenizerBase, work: Path) -> tuple[Path, float]:
    """The encoder as ONNX (fp32) and the seconds it took. Eager attention: the exported graph
    must apply the mask (a traced SDPA path may leave an all-ones mask out)."""
    started = time.monotonic()
    encoder = AutoModel.from_pretrained(base, attn_implementation="eager").eval()
    sample = tokenizer(["a short one", "and a somewhat longer second text"], padding=True,
                       return_tensors="pt", return_token_type_ids=False)  # fmt: skip
    path = work / "encoder.onnx"
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(encoder),
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            opset_version=17,
            dynamo=False,
        )
    return path, time.monotonic() - started


def quantize_onnx(source: Path, per_channel: bool) -> tuple[Path, float]:
    """The graph with int8 weights (one scale per tensor, or per output channel) and the
    seconds it took."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.monotonic()
    target = source.with_name(f"encoder.int8{'.channel' if per_channel else ''}.onnx")
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel)
    return target, time.monotonic() - started


def onnx_embedder(
    path: Path, tokenizer: PreTrainedTokenizerBase, max_length: int, threads: int
) -> Embed:
    """Mean-pooled, L2-normalised embeddings from ONNX Runtime, as `TicketClassifier.pool`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 0), dtype=np.float32)
        rows = by_length(tokenizer, texts, max_length)
        for start in range(0, len(rows), BATCH):
            chosen = rows[start : start + BATCH]
            batch = tokenizer([texts[i] for i in chosen], padding="longest", truncation=True,
                              max_length=max_length, return_tensors="np",
                              return_token_type_ids=False)  # fmt: skip
            ids, mask = batch["input_ids"].astype(np.int64), batch["attention_mask"]
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask.astype(np.int64)})
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden[0] * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
            if out.shape[1] == 0:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[chosen] = pooled
        return out

    return embed


def by_length(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int) -> list[int]:
    counts = [
        len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]
    ]
    return sorted(range(len(texts)), key=counts.__getitem__)


def torch_embedder(model: TicketClassifier, tokenizer: PreTrainedTokenizerBase) -> Embed:
    def embed(texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            return embed_texts(model, tokenizer, list(texts), batch_size=BATCH)[0]

    return embed


def timed(embed: Embed, texts: list[str]) -> tuple[np.ndarray, float]:
    """Embeddings of `texts` and seconds per 1,000, after one warm-up batch."""
    embed(texts[:BATCH])
    started = time.monotonic()
    vectors = embed(texts)
    return vectors, (time.monotonic() - started) / len(texts) * 1000


def head_labels(
    lexical: tuple[sparse.csr_matrix, sparse.csr_matrix],
    dense: tuple[np.ndarray, np.ndarray],
    target: np.ndarray,
) -> np.ndarray:
    """The stand-in fast head's test labels (see the module's docstring)."""
    train, test = (
        sparse.hstack([words, sparse.csr_matrix(DENSE_WEIGHT * unit(vectors))]).tocsr()
        for words, vectors in zip(lexical, dense, strict=True)
    )
    head = LinearSVC(C=1.0, class_weight="balanced", max_iter=5000)
    return head.fit(train, target).predict(test)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and missing(args.data):
        return 1
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="cpu-encoder-"))
    data = tickets(args, work)
    train_frame, test_frame = fixed_split(data)
    heads = [h for h in HEADS if h in data.frame.columns]
    texts = train_frame["text"].tolist() + test_frame["text"].tolist()
    base = resolve_base_model(args.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    labels = {h: sorted(data.frame[h].unique()) for h in heads}
    model = TicketClassifier.from_encoder(str(base), labels, 0.0, args.max_length, normalize=True)
    model.eval()
    print(f"{len(texts)} tickets ({len(train_frame)} train, {len(test_frame)} test), "
          f"{args.base_model}, max_length {args.max_length}, {args.threads} threads")  # fmt: skip

    # torch fp32 always: it is what the others are compared with.
    candidates: list[tuple[str, Embed, float, float]] = []  # name, embed, build s, size MB
    candidates.append(("torch fp32", torch_embedder(model, tokenizer), 0.0, size_mb(base)))
    if "torch bf16" in args.paths:
        bf16 = TicketClassifier.from_encoder(
            str(base), labels, 0.0, args.max_length, normalize=True
        ).eval()
        bf16.encoder_precision = "bf16"
        candidates.append(("torch bf16", torch_embedder(bf16, tokenizer), 0.0, size_mb(base)))
    if "torch int8" in args.paths:
        started = time.monotonic()
        quantized = torch.ao.quantization.quantize_dynamic(
            TicketClassifier.from_encoder(str(base), labels, 0.0, args.max_length, normalize=True),
            {torch.nn.Linear},
            dtype=torch.qint8,
        ).eval()
        candidates.append(
            ("torch int8", torch_embedder(quantized, tokenizer), time.monotonic() - started, 0.0)
        )
    if any(name.startswith("ONNX") for name in args.paths):
        fp32_path, export_s = export_onnx(base, tokenizer, work)
        onnx_paths = [("ONNX fp32", fp32_path, export_s)]
        for name, per_channel in (("ONNX int8", False), ("ONNX int8 per channel", True)):
            if name in args.paths:
                path, quantize_s = quantize_onnx(fp32_path, per_channel=per_channel)
                onnx_paths.append((name, path, export_s + quantize_s))
        for name, path, seconds in onnx_paths:
            if name in args.paths:
                embed = onnx_embedder(path, tokenizer, args.max_length, args.threads)
                candidates.append((name, embed, seconds, path.stat().st_size / 2**20))

    words = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    )
    lexical = (words.fit_transform(train_frame["text"]), words.transform(test_frame["text"]))
    split = len(train_frame)
    rows, reference, reference_labels, reference_seconds = [], None, {}, 0.0
    for name, embed, build_s, size in candidates:
        vectors, seconds = timed(embed, texts)
        if reference is None:
            reference, reference_seconds = vectors, seconds
        row = {
            "path": name,
            "ms_per_ticket": round(seconds, 2),
            "speedup": round(reference_seconds / seconds, 2),
            "cosine": round(float(np.mean(np.sum(unit(vectors) * unit(reference), axis=1))), 4),
            "build_s": round(build_s, 1),
            "size_mb": round(size, 1),
        }
        for head in heads:
            predicted = head_labels(
                lexical, (vectors[:split], vectors[split:]), train_frame[head].to_numpy()
            )
            reference_labels.setdefault(head, predicted)
            truth = test_frame[head].to_numpy()
            row[f"{head}_unchanged"] = round(float(np.mean(predicted == reference_labels[head])), 4)
            row[f"{head}_f1"] = round(f1_score(truth, predicted, average="macro"), 4)
        rows.append(row)
        print(f"{name}: {seconds:.1f} ms per ticket", file=sys.stderr)
    print_table(rows, heads)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


def size_mb(directory: Path) -> float:
    return sum(f.stat().st_size for f in Path(directory).glob("*.safetensors")) / 2**20


def print_table(rows: list[dict], heads: list[str]) -> None:
    columns = ["path", "ms/ticket", "speed-up", "cosine"]
    for head in heads:
        columns += [f"{head} same", f"{head} F1"]
    columns += ["build s", "MB"]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [row["path"], f"{row['ms_per_ticket']:.1f}", f"{row['speedup']:.2f}x",
                 f"{row['cosine']:.4f}"]  # fmt: skip
        for head in heads:
            cells += [f"{row[f'{head}_unchanged']:.1%}", f"{row[f'{head}_f1']:.3f}"]
        cells += [f"{row['build_s']:.0f}", f"{row['size_mb']:.0f}" if row["size_mb"] else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    exit_with(main())
