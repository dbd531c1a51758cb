"""Fine-tune the two-head classifier: split, tokenize once, train with early stopping, export.

Phases run in a fixed, visible order (seed -> split -> labels -> tokenize -> train -> evaluate ->
export); each is a function. The loop is the same on CPU (fp32) and GPU (bf16 autocast).
"""

from __future__ import annotations

import logging
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from training.base_models import resolve_base_model
from training.config import ConfigError, TrainConfig
from training.data import TicketData, split_tickets
from training.evaluate import evaluate_heads, mean_macro_f1
from training.export import export_model
from training.model import TicketClassifier, predict_proba
from training.predict import Predictor
from training.vocab_trim import is_trimmable, trim_vocabulary

logger = logging.getLogger(__name__)

# Progress goes out at most this often (and for the first and last step).
REPORT_INTERVAL_S = 0.5


@dataclass
class Progress:
    """One optimisation step, as reported to the CLI's bar and to the service's job record."""

    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    elapsed_s: float
    eta_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    predictor: Predictor  # the in-memory model as it was exported


@dataclass
class EncodedSplit:
    input_ids: list[list[int]]
    targets: dict[str, torch.Tensor]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(
    data: TicketData,
    config: TrainConfig,
    out_dir: str | Path,
    progress: ProgressCallback | None = None,
    progress_bar: bool = False,
    splits: dict[str, pd.DataFrame] | None = None,
) -> TrainResult:
    """Fine-tune on `data` and export a model directory to `out_dir`.

    `splits` (train/validation/test frames of `data`) replaces the configured random split, for
    benchmarks with a fixed test set.
    """
    started = time.monotonic()
    set_seed(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = pick_device()
    if splits is None:
        splits = split_tickets(
            data.frame, data.heads[0], config.val_fraction, config.test_fraction, config.seed
        )
    labels = {head: sorted(data.frame[head].unique().tolist()) for head in data.heads}
    corpus = pd.concat([splits["train"]["text"], splits["validation"]["text"]]).tolist()
    tokenizer, model = load_base(config, labels, corpus)
    model.to(device)
    train_split = encode_split(tokenizer, splits["train"], labels, config.max_length)
    logger.info(
        "training on %d tickets, %d validation, %d test, device %s",
        *(len(splits[s]) for s in ("train", "validation", "test")),
        device,
    )

    best_epoch, epochs_run = fit(
        model, tokenizer, train_split, splits, labels, config, device, progress, progress_bar
    )
    train_seconds = time.monotonic() - started

    metrics: dict[str, Any] = {
        "base_model": config.base_model,
        "train_seconds": round(train_seconds, 1),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "splits": {name: len(frame) for name, frame in splits.items()},
    }
    for split in ("validation", "test"):
        frame = splits[split]
        if len(frame):
            probs = predict_proba(model.eval(), tokenizer, frame["text"].tolist())
            targets = {head: frame[head].tolist() for head in labels}
            metrics[split] = evaluate_heads(targets, probs, labels)
    if "test" not in metrics:
        # A dataset too small for a test split still gets a report, from validation.
        metrics["test"] = metrics.get("validation", {})
    path = export_model(model.cpu(), tokenizer, config, metrics, out_dir)
    return TrainResult(path, metrics, Predictor(model, tokenizer, config.top_k))


def load_base(
    config: TrainConfig, labels: dict[str, list[str]], corpus: list[str]
) -> tuple[PreTrainedTokenizerBase, TicketClassifier]:
    """Tokenizer and a fresh classifier on the configured base encoder, its vocabulary trimmed
    to the `corpus` texts where the config asks for it and the tokenizer allows it."""
    base = resolve_base_model(config.base_model)
    try:
        with tempfile.TemporaryDirectory(prefix="ticketserve-trim-") as scratch:
            if config.trim_vocabulary and is_trimmable(Path(base)):
                trimmed = trim_vocabulary(base, corpus, Path(scratch) / "encoder")
                logger.info(
                    "vocabulary trimmed to the training texts: %d of %d pieces",
                    trimmed.vocab_after,
                    trimmed.vocab_before,
                )
                base = str(trimmed.model_dir)
            # Both load fully into memory, so the scratch copy can go.
            tokenizer = AutoTokenizer.from_pretrained(base)
            model = TicketClassifier.from_encoder(base, labels, config.dropout, config.max_length)
    except OSError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load base model {config.base_model!r}: {first_line}") from exc
    return tokenizer, model


def encode_split(
    tokenizer: PreTrainedTokenizerBase, frame: Any, labels: dict[str, list[str]], max_length: int
) -> EncodedSplit:
    """Tokenize once, without padding; padding happens per batch."""
    ids = tokenizer(
        frame["text"].tolist(),
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    targets = {
        head: torch.tensor([names.index(v) for v in frame[head]], dtype=torch.long)
        for head, names in labels.items()
    }
    return EncodedSplit(input_ids=ids, targets=targets)


def length_grouped_batches(
    lengths: list[int], batch_size: int, generator: torch.Generator
) -> Iterator[list[int]]:
    """Shuffle, sort within mega-batches by length, shuffle the batches (as HF's sampler)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    mega = batch_size * 50
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    for i in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[i]


def fit(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    train_split: EncodedSplit,
    splits: dict[str, Any],
    labels: dict[str, list[str]],
    config: TrainConfig,
    device: torch.device,
    progress: ProgressCallback | None,
    progress_bar: bool,
) -> tuple[int, int]:
    """The optimisation loop; leaves the best-validation weights in `model`.

    Returns (best epoch, epochs run).
    """
    lengths = [len(ids) for ids in train_split.input_ids]
    steps_per_epoch = -(-len(lengths) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = build_optimizer(model, config)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
    losses = {
        head: torch.nn.CrossEntropyLoss(
            weight=_class_weights(train_split, head, labels, config, device)
        )
        for head in labels
    }
    generator = torch.Generator().manual_seed(config.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    validation = splits["validation"]

    best_score, best_epoch, best_state, stale, step = -1.0, 0, None, 0, 0
    reported_at = -REPORT_INTERVAL_S
    started = time.monotonic()
    bar = tqdm(total=total_steps, desc="training", unit="step", disable=not progress_bar)
    for epoch in range(1, config.epochs + 1):
        model.train()
        for batch_ids in length_grouped_batches(lengths, config.batch_size, generator):
            batch = tokenizer.pad(
                {"input_ids": [train_split.input_ids[i] for i in batch_ids]}, return_tensors="pt"
            )
            with autocast:
                logits = model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                )
                loss = sum(
                    config.head_weight(head)
                    * losses[head](
                        logits[head].float(), train_split.targets[head][batch_ids].to(device)
                    )
                    for head in labels
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            elapsed = time.monotonic() - started
            # Reading the loss waits for the GPU, so it is read only when reported.
            if step in (1, total_steps) or elapsed - reported_at >= REPORT_INTERVAL_S:
                reported_at = elapsed
                report = Progress(
                    epoch,
                    config.epochs,
                    step,
                    total_steps,
                    round(loss.item(), 4),
                    round(elapsed, 1),
                    round(elapsed / step * (total_steps - step), 1),
                )
                bar.set_postfix(epoch=epoch, loss=f"{report.loss:.3f}")
                if progress:
                    progress(report)

        if not len(validation):
            best_epoch = epoch
            continue
        probs = predict_proba(model.eval(), tokenizer, validation["text"].tolist())
        score = mean_macro_f1(
            evaluate_heads({head: validation[head].tolist() for head in labels}, probs, labels)
        )
        logger.info("epoch %d: validation macro-F1 %.4f", epoch, score)
        if progress_bar:
            bar.write(f"epoch {epoch}: validation macro-F1 {score:.4f}")
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
            if config.patience and stale >= config.patience:
                logger.info("early stop after epoch %d (best %d)", epoch, best_epoch)
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return best_epoch, epoch


def build_optimizer(model: TicketClassifier, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with its own learning rate for the heads, optionally decaying layer by layer
    towards the embeddings; no weight decay on biases and LayerNorm."""
    if config.freeze_embeddings:
        # The embedding matrix is most of a small encoder's weights: freezing it saves its
        # gradient and optimizer update every step, and keeps rare-token vectors pretrained.
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    head_lr = config.head_learning_rate or config.learning_rate
    layers = model.encoder.config.num_hidden_layers
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("heads."):
            lr = head_lr
        else:
            depth = _layer_index(name, layers)
            lr = config.learning_rate * config.layer_lr_decay ** (layers - depth)
        decay = 0.0 if param.ndim < 2 or "LayerNorm" in name else config.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    return torch.optim.AdamW(
        [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
    )


def _layer_index(name: str, layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i, `layers` for anything above them."""
    match = re.search(r"\.layer\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return 0 if ".embeddings." in name else layers


def _class_weights(
    split: EncodedSplit,
    head: str,
    labels: dict[str, list[str]],
    config: TrainConfig,
    device: torch.device,
) -> torch.Tensor | None:
    if not config.class_weighting:
        return None
    present = np.unique(split.targets[head].numpy())
    weights = np.ones(len(labels[head]), dtype=np.float32)
    weights[present] = compute_class_weight(
        "balanced", classes=present, y=split.targets[head].numpy()
    )
    return torch.tensor(weights, device=device)
