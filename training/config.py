"""Training configuration: one dataclass that validates itself and round-trips to JSON.

The shim writes it as a job spec, the CLI builds it from flags, and the exported model directory
keeps a copy, so every default is defined here and nowhere else.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

BUNDLED_BASE_MODEL = "bundled:all-MiniLM-L6-v2"
# Built offline on first use (training/base_models.py). On the multilingual benchmark it beats
# both MiniLM and the TF-IDF baseline; the bundled MiniLM trains about twice as fast.
DEFAULT_BASE_MODEL = "multilingual-e5-small"
DEFAULT_HEADS = ("queue", "priority")
MODES = ("auto", "fast", "full")
Mode = Literal["auto", "fast", "full"]
MAX_GRID = 8  # most values in one of the fast mode's candidate lists
# The encoders' position limit: longer inputs would not fit their position embeddings.
MAX_POSITIONS = 512

# Every integer setting and its bounds: a client's request can hold the machine no longer
# than these allow (and a seed must fit numpy's 32 bits).
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "max_length": (8, MAX_POSITIONS),
    "epochs": (1, 100),
    "batch_size": (1, 512),
    "top_k": (1, 100),
    "patience": (0, 100),
    "seed": (0, 2**32 - 1),
    "min_class_examples": (1, 100_000),
    "num_threads": (0, 256),
    "auto_full_budget_s": (0, 7 * 24 * 3600),
    "lexical_min_df": (1, 1000),
    "lexical_max_features": (1, 5_000_000),
    "folds": (2, 10),
}


class UserError(ValueError):
    """Input a user can fix (file, flag, setting); the message alone says what and where.

    The command line prints it as one line without a traceback.
    """


class ConfigError(UserError):
    """A configuration value is unusable; the message names the field and the value."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one fine-tuning run."""

    base_model: str = DEFAULT_BASE_MODEL
    # fast: the encoder stays frozen, its embeddings are cached, and the heads are fitted on
    # [embedding + lexical features] in seconds. full: the encoder is fine-tuned too, starting
    # from the fast heads. auto: full only on a GPU when the projected fine-tune (measured on
    # its first steps) fits in auto_full_budget_s; fast otherwise (training/modes.py).
    mode: Mode = "auto"
    auto_full_budget_s: int = 1800
    # The lexical branch: word 1-2-gram and char 2-5-gram TF-IDF features beside the encoder.
    lexical: bool = True
    lexical_min_df: int = 2  # an n-gram must occur in this many training texts
    lexical_max_features: int = 200_000  # per block (word, char): the most frequent n-grams
    # fast mode's candidates, chosen per head on validation macro-F1: the linear SVM's C, and the
    # weight of the (L2-normalised) embedding against the (L2-normalised) lexical features.
    linear_c: list[float] = field(default_factory=lambda: [0.3, 1.0])
    dense_weight: list[float] = field(default_factory=lambda: [2.0, 4.0])
    # fast mode cross-fits the heads on this many folds of train + validation (training/heads.py)
    folds: int = 5
    # The auto-routing gate: per head, the lowest confidence reaching this validation precision.
    target_precision: float = 0.9
    max_length: int = 256
    epochs: int = 8  # a ceiling: training stops early once validation stops improving
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float | None = None  # None: same as learning_rate
    # Layer-wise decay: layer i of L trains at learning_rate * decay**(L - i), embeddings at
    # decay**L; 1.0 trains every layer at the same rate.
    layer_lr_decay: float = 1.0
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    patience: int = 2
    seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    min_class_examples: int = 5
    # Balanced class weights (for macro-F1 on skewed labels); null: chosen per head on validation
    # in fast mode, and full mode keeps each head's fast choice.
    class_weighting: bool | None = None
    freeze_embeddings: bool = False
    # Shrink a SentencePiece encoder's vocabulary to the pieces of the training texts before
    # fine-tuning (see training/vocab_trim.py); WordPiece encoders such as MiniLM are kept whole.
    trim_vocabulary: bool = True
    head_weights: dict[str, float] = field(default_factory=dict)
    top_k: int = 3
    num_threads: int = 0  # 0: let torch decide

    def __post_init__(self) -> None:
        if self.head_learning_rate is not None:
            _require(
                "head_learning_rate",
                self.head_learning_rate,
                _is_number(self.head_learning_rate) and 0 < self.head_learning_rate < 1,
                "a number in (0, 1) or null",
            )
        _require(
            "learning_rate",
            self.learning_rate,
            _is_number(self.learning_rate) and 0 < self.learning_rate < 1,
            "a number in (0, 1)",
        )
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            _require(name, value, _is_number(value) and value >= 0, "a non-negative number")
        _require(
            "layer_lr_decay",
            self.layer_lr_decay,
            _is_number(self.layer_lr_decay) and 0 < self.layer_lr_decay <= 1,
            "a number in (0, 1]",
        )
        for name in ("warmup_ratio", "dropout"):
            value = getattr(self, name)
            _require(name, value, _is_number(value) and 0 <= value < 1, "a number in [0, 1)")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            _require(name, value, _is_number(value) and 0 <= value < 0.5, "a number in [0, 0.5)")
        _require(
            "base_model",
            self.base_model,
            isinstance(self.base_model, str) and self.base_model.strip() != "",
            "a model directory or name",
        )
        _require("mode", self.mode, self.mode in MODES, f"one of {', '.join(MODES)}")
        for name, (low, high) in INTEGER_RANGES.items():
            value = getattr(self, name)
            _require(name, value, _is_int(value) and low <= value <= high, f"an integer in "
                     f"[{low}, {high}]")  # fmt: skip
        for name, low, high in (("linear_c", 1e-4, 1e4), ("dense_weight", 0.0, 100.0)):
            value = getattr(self, name)
            _require(
                name,
                value,
                isinstance(value, list)
                and 1 <= len(value) <= MAX_GRID
                and all(_is_number(v) and low <= v <= high for v in value),
                f"a list of 1 to {MAX_GRID} numbers in [{low:g}, {high:g}]",
            )
        _require(
            "target_precision",
            self.target_precision,
            _is_number(self.target_precision) and 0 < self.target_precision <= 1,
            "a number in (0, 1]",
        )
        _require(
            "class_weighting",
            self.class_weighting,
            self.class_weighting is None or isinstance(self.class_weighting, bool),
            "true, false or null",
        )
        for name in ("lexical", "freeze_embeddings", "trim_vocabulary"):
            value = getattr(self, name)
            _require(name, value, isinstance(value, bool), "true or false")
        _require(
            "head_weights",
            self.head_weights,
            isinstance(self.head_weights, dict)
            and len(self.head_weights) <= MAX_GRID
            and all(
                isinstance(k, str) and _is_number(v) and 0 <= v <= 100
                for k, v in self.head_weights.items()
            ),
            f"a mapping of at most {MAX_GRID} head names to numbers in [0, 100]",
        )

    def class_weighting_options(self) -> list[bool]:
        """Balanced class weights or not: the fixed choice, else both, preferred first."""
        return [True, False] if self.class_weighting is None else [self.class_weighting]

    def head_weight(self, head: str) -> float:
        """Loss weight of one head (1.0 unless configured)."""
        return float(self.head_weights.get(head, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read training configuration {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"training configuration {path} must be a JSON object")
        return cls.from_dict(values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
