"""Load an exported model directory and classify texts in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from training.config import DEFAULT_TOP_K
from training.export.export import is_model_dir
from training.inference.model import (
    TicketClassifier,
    TicketFields,
    format_predictions,
    predict_proba,
)
from training.inference.model_cleaning import ModelCleaning


class Predictor:
    """Classify texts with a trained model: one dict per text, head -> label/confidence/top_k.

    Texts are cleaned as the model directory says (training/inference/model_cleaning.py) first."""

    def __init__(
        self,
        model: TicketClassifier,
        tokenizer: PreTrainedTokenizerBase,
        top_k: int = DEFAULT_TOP_K,
        cleaning: ModelCleaning | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.cleaning = cleaning or ModelCleaning(None, None)

    @classmethod
    def load(
        cls, model_dir: str | Path, device: str | None = None, top_k: int = DEFAULT_TOP_K
    ) -> Predictor:
        if not is_model_dir(model_dir):
            raise FileNotFoundError(
                f"{model_dir} is not a trained model directory "
                "(no model.safetensors and labels.json)"
            )
        model = TicketClassifier.load(model_dir)
        model.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return cls(model, tokenizer, top_k, ModelCleaning.load(model_dir))

    @property
    def labels(self) -> dict[str, list[str]]:
        return self.model.labels

    @property
    def feature_columns(self) -> list[str]:
        """The structured fields the model reads beside the text (none: text only)."""
        return list(self.model.fields.columns) if self.model.fields is not None else []

    def predict_proba(
        self,
        texts: list[str],
        batch_size: int = 64,
        fields: list[TicketFields] | None = None,
    ) -> dict[str, Any]:
        texts = self.cleaning.texts(list(texts))
        return predict_proba(self.model, self.tokenizer, texts, batch_size, fields)

    def predict(
        self,
        texts: list[str],
        batch_size: int = 64,
        fields: list[TicketFields] | None = None,
    ) -> list[dict[str, dict[str, Any]]]:
        """One dict per text mapping each head to {label, confidence, top_k}; `fields`, each
        text's structured fields, for a model trained with feature columns."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of strings, not a single string")
        if not texts:
            return []
        return format_predictions(
            self.predict_proba(texts, batch_size, fields), self.labels, self.top_k, self.model.gate
        )
