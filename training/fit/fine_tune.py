"""Fine-tune the encoder with the heads (full mode): the training loop and its projected
duration.

The pipeline in training.train reads as phases (split, embed, fit the fast heads, calibrate,
evaluate, export); this loop is the one piece that holds torch optimisation state (optimizer,
schedule, gradients, the best weights so far), so it lives here, apart. The loop is the same on
CPU (fp32) and GPU (bf16 autocast).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from training.config import TrainConfig
from training.fit import distributed
from training.fit.evaluate import evaluate_heads, mean_macro_f1
from training.fit.fields import row_fields
from training.inference.model import TicketClassifier, TicketFields, predict_proba
from training.progress import Progress, Reporter

logger = logging.getLogger(__name__)


@dataclass
class EncodedSplit:
    input_ids: list[list[int]]
    targets: dict[str, torch.Tensor]
    texts: list[str]
    fields: list[TicketFields] | None = None  # per row, for a model that reads fields


def encode_split(
    tokenizer: PreTrainedTokenizerBase, frame: Any, labels: dict[str, list[str]], max_length: int
) -> EncodedSplit:
    """Tokenize once, without padding; padding happens per batch."""
    texts = frame["text"].tolist()
    ids = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    targets = {
        head: torch.tensor([names.index(v) for v in frame[head]], dtype=torch.long)
        for head, names in labels.items()
    }
    return EncodedSplit(input_ids=ids, targets=targets, texts=texts, fields=row_fields(frame))


def _batch(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    split: EncodedSplit,
    batch_ids: list[int],
    device: torch.device,
) -> dict[str, Any]:
    """Model inputs of some training rows: padded tokens and their lexical features."""
    padded = tokenizer.pad(
        {"input_ids": [split.input_ids[i] for i in batch_ids]}, return_tensors="pt"
    )
    inputs: dict[str, Any] = {
        "input_ids": padded["input_ids"].to(device),
        "attention_mask": padded["attention_mask"].to(device),
    }
    fields = [split.fields[i] for i in batch_ids] if split.fields is not None else None
    sparse = model.sparse_batch([split.texts[i] for i in batch_ids], fields, device)
    if sparse is not None:
        inputs["lexical"] = sparse
    return inputs


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
    reporter: Reporter,
    class_weighting: dict[str, bool],
) -> tuple[int, int]:
    """The fine-tuning loop; leaves the best-validation weights in `model`.

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
            weight=_class_weights(train_split, head, labels, class_weighting[head], device)
        )
        for head in labels
    }
    generator = torch.Generator().manual_seed(config.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    validation = splits["validation"]

    best_score, best_epoch, best_state, stale, step = -1.0, 0, None, 0, 0
    started = time.monotonic()
    reporter.stage("fine-tuning", total_steps)
    forward = distributed.wrap(model, device)
    for epoch in range(1, config.epochs + 1):
        model.train()
        for batch in length_grouped_batches(lengths, config.batch_size, generator):
            if len(batch) < distributed.size():
                step += 1  # a last batch too small to share: every process skips it alike
                continue
            batch_ids = distributed.share(batch)
            with autocast:
                logits = forward(**_batch(model, tokenizer, train_split, batch_ids, device))
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
            elapsed = time.monotonic() - started
            # Reading the loss waits for the GPU, so it is read only when reported.
            if step in (1, total_steps) or reporter.due():
                reporter.emit(
                    Progress(
                        epoch,
                        config.epochs,
                        step,
                        total_steps,
                        round(loss.item(), 4),
                        round(time.monotonic() - reporter.started, 1),
                        round(elapsed / step * (total_steps - step), 1),
                    ),
                    force=True,
                )

        if not len(validation):
            best_epoch = epoch
            continue
        probs = predict_proba(
            model.eval(), tokenizer, validation["text"].tolist(), fields=row_fields(validation)
        )
        score = mean_macro_f1(
            evaluate_heads({head: validation[head].tolist() for head in labels}, probs, labels)
        )
        logger.info("epoch %d: validation macro-F1 %.4f", epoch, score)
        reporter.write(f"epoch {epoch}: validation macro-F1 {score:.4f}")
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
            if config.patience and stale >= config.patience:
                logger.info("early stop after epoch %d (best %d)", epoch, best_epoch)
                break
    reporter.close()
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
        if name.startswith(("heads.", "lexical_weights.")):
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
    balanced: bool,
    device: torch.device,
) -> torch.Tensor | None:
    if not balanced:
        return None
    present = np.unique(split.targets[head].numpy())
    weights = np.ones(len(labels[head]), dtype=np.float32)
    weights[present] = compute_class_weight(
        "balanced", classes=present, y=split.targets[head].numpy()
    )
    return torch.tensor(weights, device=device)


def project_fine_tune(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    split: EncodedSplit,
    config: TrainConfig,
    device: torch.device,
) -> float:
    """Seconds the fine-tune would take: one measured forward and backward pass on a batch of
    typical length (after a warm-up pass), times the steps of all epochs."""
    rows = sorted(range(len(split.input_ids)), key=lambda i: len(split.input_ids[i]))
    middle = len(rows) // 2
    batch_ids = rows[max(0, middle - config.batch_size // 2) : middle + config.batch_size // 2]
    batch = _batch(model, tokenizer, split, batch_ids, device)
    model.train()
    timings = []
    for _ in range(2):
        began = time.monotonic()
        logits = model(**batch)
        sum(part.float().sum() for part in logits.values()).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.monotonic() - began)
    model.zero_grad(set_to_none=True)
    model.eval()
    steps = config.epochs * -(-len(rows) // config.batch_size)
    return timings[-1] * steps
