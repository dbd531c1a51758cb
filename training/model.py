"""The two-head ticket classifier: a shared encoder, mean pooling, one linear head per label.

This file is copied verbatim into every .mar (as `ticket_model.py`), so a served archive keeps
working after the project changes. Import only torch, transformers, safetensors, numpy and the
standard library here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerBase

WEIGHTS_FILE = "model.safetensors"
LABELS_FILE = "labels.json"
MODEL_FILE = "ticket_model.json"


class TicketClassifier(nn.Module):
    """Encoder + mean pooling + dropout + one linear head per label column."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        labels: dict[str, list[str]],
        dropout: float = 0.1,
        max_length: int = 256,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.labels = {head: list(names) for head, names in labels.items()}
        self.dropout_p = dropout
        self.max_length = max_length
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({h: nn.Linear(hidden, len(n)) for h, n in labels.items()})

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any
    ) -> dict[str, torch.Tensor]:
        """Logits per head, shape (batch, classes of that head)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        pooled = self.dropout(pooled)
        return {head: layer(pooled) for head, layer in self.heads.items()}

    @classmethod
    def from_encoder(
        cls, base_model: str, labels: dict[str, list[str]], dropout: float, max_length: int
    ) -> TicketClassifier:
        """A fresh classifier on a pretrained encoder (local directory or hub name)."""
        return cls(AutoModel.from_pretrained(base_model), labels, dropout, max_length)

    def save(self, directory: str | Path) -> None:
        """Write weights (safetensors), encoder config, labels and head settings."""
        directory = Path(directory)
        self.encoder.config.save_pretrained(directory)
        save_model(self, str(directory / WEIGHTS_FILE))
        _write_json(directory / LABELS_FILE, self.labels)
        _write_json(
            directory / MODEL_FILE,
            {
                "dropout": self.dropout_p,
                "max_length": self.max_length,
                "pooling": "mean",
                "heads": list(self.labels),
            },
        )

    @classmethod
    def load(
        cls, directory: str | Path, attn_implementation: str | None = None
    ) -> TicketClassifier:
        """Load a saved classifier without touching the base model it was trained from."""
        directory = Path(directory)
        settings = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
        labels = json.loads((directory / LABELS_FILE).read_text(encoding="utf-8"))
        config = AutoConfig.from_pretrained(directory)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        encoder = AutoModel.from_config(config, **kwargs)
        model = cls(encoder, labels, settings["dropout"], settings["max_length"])
        load_model(model, str(directory / WEIGHTS_FILE))
        return model.eval()


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Tokenize a batch at once, padded to its longest text, and move it to the device."""
    batch = tokenizer(
        texts,
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_token_type_ids=False,
    )
    if device.type == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return dict(batch)


@torch.inference_mode()
def predict_proba(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Class probabilities per head, rows in the order of `texts`.

    Texts are sorted by length so each batch pads little; results come to the host once per batch.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks: dict[str, list[np.ndarray]] = {head: [] for head in model.labels}
    for start in range(0, len(order), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        logits = model(**encode(tokenizer, batch, model.max_length, device))
        probs = torch.cat([logits[h].float().softmax(-1) for h in model.labels], dim=-1).cpu()
        split = torch.split(probs, [len(n) for n in model.labels.values()], dim=-1)
        for head, part in zip(model.labels, split, strict=True):
            chunks[head].append(part.numpy())
    inverse = np.argsort(np.asarray(order, dtype=np.int64))
    return {
        head: (
            np.concatenate(parts)[inverse]
            if parts
            else np.zeros((0, len(model.labels[head])), dtype=np.float32)
        )
        for head, parts in chunks.items()
    }


def format_predictions(
    probs: dict[str, np.ndarray], labels: dict[str, list[str]], top_k: int = 3
) -> list[dict[str, dict[str, Any]]]:
    """One dict per text: head -> {label, confidence, top_k: [[label, probability], ...]}."""
    count = len(next(iter(probs.values())))
    results: list[dict[str, dict[str, Any]]] = [{} for _ in range(count)]
    for head, matrix in probs.items():
        names = labels[head]
        k = min(top_k, len(names))
        ranked = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
        for row, best in enumerate(ranked):
            top = [[names[j], round(float(matrix[row, j]), 6)] for j in best]
            results[row][head] = {"label": top[0][0], "confidence": top[0][1], "top_k": top}
    return results


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
