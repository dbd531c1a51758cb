"""Training configuration: one dataclass that validates itself and round-trips to JSON.

The shim writes it as a job spec, the CLI builds it from flags, and the exported model directory
keeps a copy, so every default is defined here and nowhere else.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

BUNDLED_BASE_MODEL = "bundled:all-MiniLM-L6-v2"
# Built offline on first use (training/base_models.py). On the multilingual benchmark it beats
# both MiniLM and the TF-IDF baseline; the bundled MiniLM trains about twice as fast.
DEFAULT_BASE_MODEL = "multilingual-e5-small"
DEFAULT_HEADS = ("queue", "priority")


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
    class_weighting: bool = False
    freeze_embeddings: bool = False
    # Shrink a SentencePiece encoder's vocabulary to the pieces of the training texts before
    # fine-tuning (see training/vocab_trim.py); WordPiece encoders such as MiniLM are kept whole.
    trim_vocabulary: bool = True
    head_weights: dict[str, float] = field(default_factory=dict)
    top_k: int = 3
    num_threads: int = 0  # 0: let torch decide

    def __post_init__(self) -> None:
        for name in ("max_length", "epochs", "batch_size", "top_k"):
            value = getattr(self, name)
            _require(name, value, _is_int(value) and value >= 1, "a positive integer")
        for name in ("patience", "seed", "min_class_examples", "num_threads"):
            value = getattr(self, name)
            _require(name, value, _is_int(value) and value >= 0, "a non-negative integer")
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
        for name in ("class_weighting", "freeze_embeddings", "trim_vocabulary"):
            value = getattr(self, name)
            _require(name, value, isinstance(value, bool), "true or false")
        _require(
            "head_weights",
            self.head_weights,
            isinstance(self.head_weights, dict)
            and all(
                isinstance(k, str) and _is_number(v) and v >= 0
                for k, v in self.head_weights.items()
            ),
            "a mapping of head name to a non-negative number",
        )

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
