"""The ticket classifier: a shared encoder and a lexical branch, one linear head per label.

Each head scores a ticket as `W_dense · pooled + W_lexical · [tfidf, fields] + b`, divided by the
head's temperature: `pooled` is the encoder's mean-pooled (optionally L2-normalised) embedding,
`tfidf` the ticket's word and character n-gram TF-IDF vector, `fields` the one-hot vector of its
structured fields (channel, ticket type...: the feature columns a model was trained with). The
lexical weights live in an `EmbeddingBag` (a sparse linear layer), so they travel in
model.safetensors with the encoder; the n-gram vocabulary and idf travel as lexical.json, the
fields' known values as fields.json. A model directory without lexical.json is an encoder-only
model, as before; one without fields.json reads text only.

This file is copied verbatim into every .mar (as `ticket_model.py`), so a served archive keeps
working after the project changes. Import only torch, transformers, safetensors, numpy and the
standard library here.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
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
LEXICAL_FILE = "lexical.json"
FIELDS_FILE = "fields.json"
# One ticket's structured fields: column name -> value (None, or a column missing: unknown).
TicketFields = Mapping[str, Any] | None

LexicalBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # indices, weights, offsets
# A word the tokenizer splits into this many pieces or more (or maps to its unknown token) is one
# its vocabulary barely knows: English words rarely, words of a language it never saw often.
RARE_PIECES = 3
# The frozen encoder's arithmetic on a CPU: fp32, or bf16 under autocast (matrix products in
# bfloat16, normalisations and the pooling in float32; the weights stay float32).
ENCODER_PRECISIONS = ("fp32", "bf16")
# /proc/cpuinfo flags of CPUs that compute bf16 natively (x86: AVX-512 BF16, AMX; Arm: BF16).
# Elsewhere bf16 is emulated and slower than fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


class LexicalFeaturizer:
    """TF-IDF over a fixed n-gram vocabulary, computed exactly as scikit-learn's
    `TfidfVectorizer(lowercase=True, sublinear_tf=True, norm="l2")` does for the `word` (token
    pattern `\\b\\w\\w+\\b`) and `char_wb` analyzers; blocks are concatenated (a FeatureUnion).

    Fitting lives in training/fit/lexical.py; this class only applies a fitted vocabulary.
    """

    WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")

    def __init__(self, blocks: list[dict[str, Any]]) -> None:
        self.blocks = blocks
        self._index: list[dict[str, int]] = []
        self._idf: list[np.ndarray] = []
        self._start: list[int] = []
        start = 0
        for block in blocks:
            if block["analyzer"] not in ("word", "char_wb"):
                raise ValueError(f"unknown lexical analyzer {block['analyzer']!r}")
            self._index.append({term: i for i, term in enumerate(block["terms"])})
            self._idf.append(np.asarray(block["idf"], dtype=np.float64))
            self._start.append(start)
            start += len(block["terms"])
        self.size = start

    def features(self, text: str) -> tuple[list[int], list[float]]:
        """Global feature indices and TF-IDF values of one text (each block L2-normalised)."""
        indices: list[int] = []
        values: list[float] = []
        lowered = text.lower()
        for block, index, idf, start in zip(
            self.blocks, self._index, self._idf, self._start, strict=True
        ):
            low, high = block["ngram_range"]
            grams = (
                _word_ngrams(self.WORD_PATTERN.findall(lowered), low, high)
                if block["analyzer"] == "word"
                else _char_wb_ngrams(lowered, low, high)
            )
            counts = Counter(index[g] for g in grams if g in index)
            if not counts:
                continue
            ids = sorted(counts)
            weights = np.asarray([1.0 + math.log(counts[i]) for i in ids]) * idf[ids]
            weights /= np.sqrt(np.dot(weights, weights))
            indices += [start + i for i in ids]
            values += weights.tolist()
        return indices, values

    def save(self, directory: str | Path) -> None:
        _write_json(Path(directory) / LEXICAL_FILE, {"format": 1, "blocks": self.blocks})

    @classmethod
    def load(cls, directory: str | Path) -> LexicalFeaturizer | None:
        """The featurizer of a model directory, or None for an encoder-only model."""
        path = Path(directory) / LEXICAL_FILE
        if not path.is_file():
            return None
        return cls(json.loads(path.read_text(encoding="utf-8"))["blocks"])


class FieldEncoder:
    """Structured fields as one-hot features: one per (column, value) seen in training. A value
    never seen, an empty one or a column not sent is "unknown": no feature, never an error.
    Columns match by name without regard to case; values as labels do (case and spacing aside).

    Fitting lives in training/fit/fields.py; this class only applies the known values.
    """

    def __init__(self, columns: dict[str, list[str]]) -> None:
        self.columns = {column: list(values) for column, values in columns.items()}
        self._index: dict[str, dict[str, int]] = {}
        start = 0
        for column, values in self.columns.items():
            self._index[column.casefold()] = {
                field_value_key(v): start + i for i, v in enumerate(values)
            }
            start += len(values)
        self.size = start

    def features(self, fields: TicketFields) -> list[int]:
        """The feature indices of one ticket's fields (each weighs 1), ascending."""
        found = set()
        for name, value in (fields or {}).items():
            index = self._index.get(str(name).casefold())
            if index is not None and value is not None:
                position = index.get(field_value_key(str(value)))
                if position is not None:
                    found.add(position)
        return sorted(found)

    def save(self, directory: str | Path) -> None:
        _write_json(Path(directory) / FIELDS_FILE, {"format": 1, "columns": self.columns})

    @classmethod
    def load(cls, directory: str | Path) -> FieldEncoder | None:
        """The fields of a model directory, or None for a model that reads text only."""
        path = Path(directory) / FIELDS_FILE
        if not path.is_file():
            return None
        return cls(json.loads(path.read_text(encoding="utf-8"))["columns"])


def field_value_key(value: str) -> str:
    """How field values compare: case and runs of spaces aside."""
    return " ".join(value.split()).casefold()


def _word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), high + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


def _char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams inside word boundaries, padded with one space (scikit-learn's char_wb)."""
    grams = []
    for word in text.split():
        word = f" {word} "
        for n in range(low, high + 1):
            grams += [word[i : i + n] for i in range(max(1, len(word) - n + 1))]
            if len(word) <= n:  # a word no longer than n counts once, whole
                break
    return grams


class TicketClassifier(nn.Module):
    """Encoder + mean pooling (+ L2 norm) + dropout, optional lexical branch, one head per label.

    `temperature[head]` divides that head's logits into probabilities (fitted on validation);
    `gate[head]` holds the lowest confidence that reached the target precision on validation:
    the head's `threshold`, or with `classes` one per predicted class (`gate_threshold`).
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
        labels: dict[str, list[str]],
        dropout: float = 0.1,
        max_length: int = 256,
        lexical: LexicalFeaturizer | None = None,
        normalize: bool = False,
        temperature: dict[str, float] | None = None,
        gate: dict[str, dict[str, Any]] | None = None,
        fields: FieldEncoder | None = None,
        encoder_precision: str = "fp32",
    ) -> None:
        super().__init__()
        if encoder_precision not in ENCODER_PRECISIONS:
            raise ValueError(f"unknown encoder precision {encoder_precision!r}")
        self.encoder = encoder
        self.encoder_precision = encoder_precision
        self.labels = {head: list(names) for head, names in labels.items()}
        self.dropout_p = dropout
        # Never past the encoder's position embeddings, whatever a (older) model file says.
        self.max_length = min(max_length, position_limit(encoder))
        self.normalize = normalize
        self.temperature = {head: float((temperature or {}).get(head, 1.0)) for head in labels}
        self.gate = dict(gate or {})
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({h: nn.Linear(hidden, len(n)) for h, n in labels.items()})
        self.set_lexical(lexical, fields)

    def set_lexical(
        self, lexical: LexicalFeaturizer | None, fields: FieldEncoder | None = None
    ) -> None:
        """Give the model a lexical branch over `lexical`'s n-gram features and then `fields`'
        one-hot features (zero weights), or none when it has neither."""
        self.lexical = lexical
        self.fields = fields
        self.lexical_weights = None
        size = self.lexical_size + (fields.size if fields is not None else 0)
        if size:
            classes = sum(map(len, self.labels.values()))
            device = self.heads[next(iter(self.labels))].weight.device
            self.lexical_weights = nn.EmbeddingBag(size, classes, mode="sum", device=device)
            nn.init.zeros_(self.lexical_weights.weight)

    @property
    def lexical_size(self) -> int:
        """The n-gram features' rows of the lexical table; the fields' rows follow them."""
        return self.lexical.size if self.lexical is not None else 0

    def sparse_batch(
        self, texts: Sequence[str], fields: Sequence[TicketFields] | None, device: torch.device
    ) -> LexicalBatch | None:
        """`EmbeddingBag` inputs of a batch (flat indices, weights, per-text offsets): each
        text's n-gram TF-IDF, then its fields' one-hot features; None without a lexical branch."""
        if self.lexical_weights is None:
            return None
        indices: list[int] = []
        values: list[float] = []
        offsets: list[int] = []
        for i, text in enumerate(texts):
            offsets.append(len(indices))
            if self.lexical is not None:
                ids, weights = self.lexical.features(text)
                indices += ids
                values += weights
            if self.fields is not None:
                ids = self.fields.features(fields[i] if fields is not None else None)
                indices += [self.lexical_size + j for j in ids]
                values += [1.0] * len(ids)
        return (
            torch.tensor(indices, dtype=torch.long, device=device),
            torch.tensor(values, dtype=torch.float32, device=device),
            torch.tensor(offsets, dtype=torch.long, device=device),
        )

    def label_offset(self, head: str) -> int:
        """Where `head`'s classes start among all heads' classes (the lexical table's columns)."""
        heads = list(self.labels)
        return sum(len(self.labels[h]) for h in heads[: heads.index(head)])

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The ticket embedding the heads see (before dropout). With `encoder_precision` bf16
        on a CPU the encoder runs under bf16 autocast and its output is pooled in float32."""
        bf16 = self.encoder_precision == "bf16" and input_ids.device.type == "cpu"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
        if bf16:
            hidden = hidden.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        if self.normalize:
            pooled = nn.functional.normalize(pooled.float(), dim=-1).to(hidden.dtype)
        return pooled

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        lexical: LexicalBatch | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        """Logits per head, shape (batch, classes of that head), before the temperature."""
        return self.head_logits(self.pool(input_ids, attention_mask), lexical)

    def head_logits(
        self, pooled: torch.Tensor, lexical: LexicalBatch | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits per head from pooled embeddings and (when the model has one) the lexical batch."""
        pooled = self.dropout(pooled)
        logits = {head: layer(pooled) for head, layer in self.heads.items()}
        if self.lexical_weights is None:
            return logits
        if lexical is None:
            raise ValueError("this model has a lexical branch: pass the lexical batch")
        indices, weights, offsets = lexical
        table = self.lexical_weights.weight
        sparse = self.lexical_weights(indices, offsets, per_sample_weights=weights.to(table.dtype))
        parts = torch.split(sparse, [len(n) for n in self.labels.values()], dim=-1)
        return {
            head: logits[head] + part.to(logits[head].dtype)
            for head, part in zip(self.labels, parts, strict=True)
        }

    @classmethod
    def from_encoder(
        cls,
        base_model: str,
        labels: dict[str, list[str]],
        dropout: float,
        max_length: int,
        normalize: bool = False,
    ) -> TicketClassifier:
        """A fresh classifier on a pretrained encoder (local directory or hub name)."""
        encoder = AutoModel.from_pretrained(base_model)
        return cls(encoder, labels, dropout, max_length, normalize=normalize)

    def settings(self) -> dict[str, Any]:
        return {
            "dropout": self.dropout_p,
            "max_length": self.max_length,
            "pooling": "mean",
            "normalize": self.normalize,
            "heads": list(self.labels),
            "lexical": self.lexical is not None,
            "fields": list(self.fields.columns) if self.fields is not None else [],
            "temperature": self.temperature,
            "gate": self.gate,
            "encoder_precision": self.encoder_precision,
        }

    def save(self, directory: str | Path) -> None:
        """Write weights (safetensors), encoder config, labels, lexical vocabulary, settings."""
        directory = Path(directory)
        self.encoder.config.save_pretrained(directory)
        save_model(self, str(directory / WEIGHTS_FILE))
        _write_json(directory / LABELS_FILE, self.labels)
        _write_json(directory / MODEL_FILE, self.settings())
        if self.lexical is not None:
            self.lexical.save(directory)
        if self.fields is not None:
            self.fields.save(directory)

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
        model = cls(
            encoder,
            labels,
            settings["dropout"],
            settings["max_length"],
            lexical=LexicalFeaturizer.load(directory),
            normalize=settings.get("normalize", False),
            temperature=settings.get("temperature"),
            gate=settings.get("gate"),
            fields=FieldEncoder.load(directory),
            encoder_precision=settings.get("encoder_precision", "fp32"),
        )
        load_model(model, str(directory / WEIGHTS_FILE))
        return model.eval()


def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (False where its flags cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return bool(NATIVE_BF16_FLAGS & set(value.split()))
    return False


def position_limit(encoder: PreTrainedModel) -> int:
    """The longest input (in tokens) the encoder's position embeddings can take."""
    config = encoder.config
    limit = int(getattr(config, "max_position_embeddings", 512))
    # RoBERTa-style encoders (XLM-R, e5) number positions from the padding index + 1.
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= int(config.pad_token_id or 0) + 1
    return limit


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


def model_inputs(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    device: torch.device,
    fields: Sequence[TicketFields] | None = None,
) -> dict[str, Any]:
    """Everything `model(**inputs)` needs for a batch of texts (and their fields, when the
    model reads any): tokens and lexical features."""
    inputs: dict[str, Any] = encode(tokenizer, texts, model.max_length, device)
    sparse = model.sparse_batch(texts, fields, device)
    if sparse is not None:
        inputs["lexical"] = sparse
    return inputs


@torch.inference_mode()
def predict_logits(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int = 64,
    fields: Sequence[TicketFields] | None = None,
) -> dict[str, np.ndarray]:
    """Raw logits per head (before the temperature), rows in the order of `texts` (`fields`:
    each text's structured fields, for a model that reads them)."""
    return forward_texts(model, tokenizer, texts, batch_size, fields)[0]


@torch.inference_mode()
def forward_texts(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int = 64,
    fields: Sequence[TicketFields] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw logits per head and the pooled embeddings (what a similar-ticket lookup compares),
    rows in the order of `texts`.

    Texts are sorted by length so each batch pads little; results come to the host once per batch.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    widths = [len(n) for n in model.labels.values()]
    chunks: list[np.ndarray] = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch_fields = [fields[i] for i in rows] if fields is not None else None
        inputs = model_inputs(model, tokenizer, [texts[i] for i in rows], device, batch_fields)
        pooled = model.pool(inputs["input_ids"], inputs["attention_mask"])
        logits = model.head_logits(pooled, inputs.get("lexical"))
        flat = [logits[h].float() for h in model.labels] + [pooled.float()]
        chunks.append(torch.cat(flat, dim=-1).cpu().numpy())
    hidden = model.encoder.config.hidden_size
    empty = np.zeros((0, sum(widths) + hidden), dtype=np.float32)
    flat = np.concatenate(chunks) if chunks else empty
    flat = flat[np.argsort(np.asarray(order, dtype=np.int64))]
    *heads, pooled_rows = np.split(flat, np.cumsum(widths), axis=1)
    return dict(zip(model.labels, heads, strict=True)), pooled_rows


def probabilities(
    logits: dict[str, np.ndarray], temperature: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Softmax of each head's logits divided by its temperature (1 when not given)."""
    out = {}
    for head, values in logits.items():
        scaled = values.astype(np.float64) / (temperature or {}).get(head, 1.0)
        scaled -= scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        out[head] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def predict_proba(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int = 64,
    fields: Sequence[TicketFields] | None = None,
) -> dict[str, np.ndarray]:
    """Calibrated class probabilities per head, rows in the order of `texts`."""
    logits = predict_logits(model, tokenizer, texts, batch_size, fields)
    return probabilities(logits, model.temperature)


def rare_token_shares(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> list[float | None]:
    """Per text, the share of its words (as the tokenizer splits words) that became the unknown
    token or RARE_PIECES pieces or more, over the tokens the model sees. None per text for a
    tokenizer without word alignment (a slow one)."""
    if not texts or not tokenizer.is_fast:
        return [None] * len(texts)
    batch = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    unknown = tokenizer.unk_token_id
    shares: list[float | None] = []
    for i, ids in enumerate(batch["input_ids"]):
        pieces: Counter[int] = Counter()
        rare: set[int] = set()
        for word, token in zip(batch.word_ids(i), ids, strict=True):
            if word is not None:
                pieces[word] += 1
                if token == unknown or pieces[word] >= RARE_PIECES:
                    rare.add(word)
        shares.append(round(len(rare) / len(pieces), 6) if pieces else 0.0)
    return shares


def format_predictions(
    probs: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    top_k: int,
    gate: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """One dict per text: head -> {label, confidence, top_k: [[label, probability], ...]}, plus
    `auto_route` (confidence clears the head's gate threshold) for heads with a gate."""
    count = len(next(iter(probs.values())))
    results: list[dict[str, dict[str, Any]]] = [{} for _ in range(count)]
    for head, matrix in probs.items():
        names = labels[head]
        k = min(top_k, len(names))
        ranked = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
        head_gate = (gate or {}).get(head)
        for row, best in enumerate(ranked):
            top = [[names[j], round(float(matrix[row, j]), 6)] for j in best]
            answer: dict[str, Any] = {"label": top[0][0], "confidence": top[0][1], "top_k": top}
            if head_gate is not None:
                # training.fit.calibration.clears_gate's rule (an archive cannot import it).
                threshold = gate_threshold(head_gate, top[0][0])
                answer["auto_route"] = threshold is not None and top[0][1] >= threshold
            results[row][head] = answer
    return results


def gate_threshold(head_gate: dict[str, Any], label: str) -> float | None:
    """The confidence an answer `label` must reach to be routed automatically under a head's
    gate: with a threshold per class (`classes`), that class's (None, or a class missing from
    it: never routed); otherwise the head's. The one home of this rule: the handler, the
    in-process Predictor and the model card all read it here."""
    if "classes" in head_gate:
        return head_gate["classes"].get(label)
    return head_gate.get("threshold")


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
