"""Training configuration: one dataclass that validates itself and round-trips to JSON.

The shim writes it as a job spec, the CLI builds it from flags, and the exported model directory
keeps a copy, so every default is defined here and nowhere else.
"""

from __future__ import annotations

import json
import math
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from training.cleaning import (
    MAX_MASK_PATTERNS,
    MAX_PATTERN_CHARS,
    CleaningSettings,
    patterns_problem,
)
from training.head_names import (
    HEAD_NAME_RULE,
    MAX_HEADS,
    feature_columns_problem,
    heads_problem,
)

BUNDLED_BASE_MODEL = "bundled:all-MiniLM-L6-v2"
# Built offline on first use (training/base_models.py). On the multilingual benchmark it beats
# both MiniLM and the TF-IDF baseline; the bundled MiniLM trains about twice as fast.
DEFAULT_BASE_MODEL = "multilingual-e5-small"
DEFAULT_TOP_K = 3  # labels listed per head in an answer
DEFAULT_MIN_CLASS_EXAMPLES = 5  # rarer labels are reported: they will be learned poorly
Mode = Literal["auto", "fast", "full"]
GateRule = Literal["head", "class"]
MAX_GRID = 8  # most values in one of the fast mode's candidate lists (and heads weighted)
# The encoders' position limit: longer inputs would not fit their position embeddings.
MAX_POSITIONS = 512
MAX_NAME_CHARS = 200  # longest base_model name


class UserError(ValueError):
    """Input a user can fix (file, flag, setting); the message alone says what and where.

    The command line prints it as one line without a traceback.
    """


class ConfigError(UserError):
    """A configuration value is unusable; the message names the field and the value."""


@dataclass(frozen=True)
class Bound:
    """The interval a number must lie in; open ends exclude the endpoint."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return (
            f"{'(' if self.low_open else '['}{_number(self.low)}, "
            f"{_number(self.high)}{')' if self.high_open else ']'}"
        )

    def limits(self) -> dict[str, float]:
        """As pydantic's Field keywords (ge/gt, le/lt)."""
        return {
            "gt" if self.low_open else "ge": self.low,
            "lt" if self.high_open else "le": self.high,
        }


def about(help: str, bound: Bound | None = None) -> dict[str, Any]:
    """A TrainConfig field's help text and bound: the one source of the CLI flags, the API
    body's schema and the docs table (training/config_flags.py, shim/schemas.py)."""
    return {"help": help, "bound": bound}


def _range(low: float, high: float) -> Bound:
    """A closed interval."""
    return Bound(low, high)


_FRACTION = Bound(0, 1, high_open=True)
_RATE = Bound(0, 1, low_open=True, high_open=True)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run."""

    base_model: str = field(
        default=DEFAULT_BASE_MODEL,
        metadata=about(
            "encoder: multilingual-e5-small, or the bundled all-MiniLM-L6-v2 (about twice as "
            "fast, less accurate); the command line also takes a model directory"
        ),
    )
    mode: Mode = field(
        default="auto",
        metadata=about(
            "fast: frozen encoder with cached embeddings, heads fitted in seconds on "
            "[embedding + lexical features]; full: fine-tune the encoder too, starting from "
            "the fast heads (for a GPU); auto: full only on a GPU where the projection "
            "measured on its first steps fits auto_full_budget_s (training/modes.py)"
        ),
    )
    auto_full_budget_s: int = field(
        default=1800,
        metadata=about(
            "seconds a full fine-tune may take for auto to choose it", _range(0, 7 * 24 * 3600)
        ),
    )
    lexical: bool = field(
        default=True,
        metadata=about("word 1-2-gram and char 2-5-gram TF-IDF features beside the encoder"),
    )
    lexical_min_df: int = field(
        default=2,
        metadata=about("an n-gram must occur in this many training texts", _range(1, 1000)),
    )
    lexical_max_features: int = field(
        default=200_000,
        metadata=about("most frequent n-grams kept per block (word, char)", _range(1, 5_000_000)),
    )
    linear_c: list[float] = field(
        default_factory=lambda: [0.1, 0.3, 1.0],
        metadata=about(
            "fast mode: candidate C of the linear SVM, chosen per head by cross-validation",
            _range(1e-4, 1e4),
        ),
    )
    dense_weight: list[float] = field(
        default_factory=lambda: [2.0, 4.0],
        metadata=about(
            "fast mode: candidate weights of the L2-normalised embedding against the "
            "L2-normalised lexical features, for the embedding alone and beside the lexical "
            "features (the lexical features alone are always a candidate; 0 adds nothing)",
            _range(0, 100),
        ),
    )
    folds: int = field(
        default=5,
        metadata=about(
            "fast mode chooses, calibrates and gates the heads by cross-fitting on this many "
            "folds of train + validation",
            _range(2, 10),
        ),
    )
    target_precision: float = field(
        default=0.9,
        metadata=about(
            "auto-routing gate: per head, the lowest confidence above which the precision's "
            "lower bound (out of fold, at gate_confidence) reaches this; where none does, the "
            "gate is closed",
            Bound(0, 1, low_open=True),
        ),
    )
    gate_confidence: float = field(
        default=0.95,
        metadata=about(
            "auto-routing gate: confidence level of the precision's one-sided lower bound "
            "(Clopper-Pearson)",
            Bound(0.5, 1, high_open=True),
        ),
    )
    gate: GateRule = field(
        default="head",
        metadata=about(
            "auto-routing gate: one threshold per head, or one per predicted class, each chosen "
            "by the same rule on the tickets predicted as that class (a class that reaches "
            "target_precision at no threshold never routes)"
        ),
    )
    max_length: int = field(
        default=256,
        metadata=about("tokens per ticket; longer ones are truncated", _range(8, MAX_POSITIONS)),
    )
    epochs: int = field(
        default=8,
        metadata=about(
            "full mode: a ceiling; training stops once validation stops improving", _range(1, 100)
        ),
    )
    batch_size: int = field(default=32, metadata=about("tickets per training step", _range(1, 512)))
    learning_rate: float = field(
        default=1e-4, metadata=about("full mode: peak learning rate", _RATE)
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata=about("full mode: learning rate of the heads (none: learning_rate)", _RATE),
    )
    layer_lr_decay: float = field(
        default=1.0,
        metadata=about(
            "full mode: layer i of L trains at learning_rate * decay**(L - i), embeddings at "
            "decay**L; 1 trains every layer at the same rate",
            Bound(0, 1, low_open=True),
        ),
    )
    weight_decay: float = field(
        default=0.01, metadata=about("full mode: AdamW weight decay", _range(0, 10))
    )
    warmup_ratio: float = field(
        default=0.1, metadata=about("full mode: share of the steps spent warming up", _FRACTION)
    )
    max_grad_norm: float = field(
        default=1.0, metadata=about("full mode: gradient clipping norm (0: none)", _range(0, 1000))
    )
    dropout: float = field(
        default=0.1, metadata=about("full mode: dropout before the heads", _FRACTION)
    )
    patience: int = field(
        default=2,
        metadata=about("full mode: epochs without improvement before stopping", _range(0, 100)),
    )
    seed: int = field(
        default=42, metadata=about("random seed of splits and training", _range(0, 2**32 - 1))
    )
    val_fraction: float = field(
        default=0.1,
        metadata=about(
            "share of the tickets held out for validation (full mode's early stopping and "
            "calibration; fast mode cross-validates on train + validation together)",
            Bound(0, 0.5, high_open=True),
        ),
    )
    test_fraction: float = field(
        default=0.1,
        metadata=about(
            "share of the tickets held out for the test report (fast mode learns them too, "
            "after the report)",
            Bound(0, 0.5, high_open=True),
        ),
    )
    min_class_examples: int = field(
        default=DEFAULT_MIN_CLASS_EXAMPLES,
        metadata=about(
            "labels with fewer tickets are reported (kept, but learned poorly)",
            _range(1, 100_000),
        ),
    )
    label_columns: list[str] | None = field(
        default=None,
        metadata=about(
            "the label columns to train, one head each under its column's name; none: every "
            "label column of the data (of a file: queue and priority, those it has)"
        ),
    )
    feature_columns: list[str] | None = field(
        default=None,
        metadata=about(
            "structured fields the model reads beside the text (e.g. type,channel): each "
            "value seen in training is a one-hot feature of every head; at classify time a "
            "ticket's 'fields' give them, and a value never seen (or none) is unknown"
        ),
    )
    class_weighting: bool | None = field(
        default=None,
        metadata=about(
            "balanced class weights (for macro-F1 on skewed labels); none: chosen per head on "
            "validation in fast mode, and full mode keeps each head's fast choice"
        ),
    )
    freeze_embeddings: bool = field(
        default=False, metadata=about("full mode: keep the token embeddings fixed")
    )
    trim_vocabulary: bool = field(
        default=True,
        metadata=about(
            "full mode: shrink a SentencePiece encoder's vocabulary to the pieces of the "
            "training texts (training/vocab_trim.py); WordPiece encoders are kept whole"
        ),
    )
    head_weights: dict[str, float] = field(
        default_factory=dict,
        metadata=about("full mode: loss weight per head (1 unless given)", _range(0, 100)),
    )
    clean_mail: bool = field(
        default=True,
        metadata=about(
            "read mail as a person does: HTML to text, the newest message of a thread only, "
            "without signature and disclaimer (docs/cleaning.md); the model applies it to "
            "every text it trains on, is evaluated on and classifies"
        ),
    )
    mask_personal_data: bool = field(
        default=True,
        metadata=about(
            "replace e-mail addresses, phone numbers, IBANs, card numbers, IP addresses, URLs "
            "with credentials and greeted names by [EMAIL], [PHONE], ... before the model reads "
            "a text; the service masks what it stores with its own default of this setting"
        ),
    )
    mask_patterns: dict[str, str] = field(
        default_factory=dict,
        metadata=about(
            "more to mask: placeholder name -> regular expression, e.g. CUSTOMER='KD-[0-9]{6}' "
            "becomes [CUSTOMER]"
        ),
    )
    similar_tickets: bool = field(
        default=True,
        metadata=about(
            "keep every training ticket's embedding, id, labels and a 280-character excerpt "
            "of its text as stored (cleaned, masked) in the model and its .mar, for similar-"
            "ticket lookups (POST /api/v1/similar)"
        ),
    )
    top_k: int = field(
        default=DEFAULT_TOP_K, metadata=about("labels listed per head in an answer", _range(1, 100))
    )
    num_threads: int = field(
        default=0, metadata=about("CPU threads for torch (0: torch decides)", _range(0, 256))
    )

    def __post_init__(self) -> None:
        hints = get_type_hints(TrainConfig)
        for f in fields(self):
            value = getattr(self, f.name)
            if not accepts(hints[f.name], f.metadata["bound"], value):
                raise ConfigError(f"{f.name} must be {expected(f)}, got {value!r}")
        if self.label_columns is not None and (problem := heads_problem(self.label_columns)):
            raise ConfigError(f"label_columns: {problem}")
        if self.feature_columns is not None:
            if problem := feature_columns_problem(self.feature_columns):
                raise ConfigError(f"feature_columns: {problem}")
            if shared := set(self.feature_columns) & set(self.label_columns or []):
                raise ConfigError(
                    f"feature_columns: {sorted(shared)[0]!r} is a label column; a column is "
                    "either predicted or read"
                )
        if problem := patterns_problem(self.mask_patterns):
            raise ConfigError(f"mask_patterns: {problem}")
        if not self.lexical and not any(w > 0 for w in self.dense_weight):
            raise ConfigError(
                "dense_weight needs a value above 0 when lexical is off: the heads would have "
                "no features"
            )

    def class_weighting_options(self) -> list[bool]:
        """Balanced class weights or not: the fixed choice, else both, preferred first."""
        return [True, False] if self.class_weighting is None else [self.class_weighting]

    def head_weight(self, head: str) -> float:
        """Loss weight of one head (1.0 unless configured)."""
        return float(self.head_weights.get(head, 1.0))

    def cleaning(self) -> CleaningSettings:
        """How this model cleans the texts it reads (written into its card)."""
        return CleaningSettings(
            clean_mail=self.clean_mail,
            mask_personal_data=self.mask_personal_data,
            mask_patterns=dict(self.mask_patterns),
        )

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


def expected(f: Field[Any]) -> str:
    """What a field accepts, in words: "an integer in [1, 100]", "true or false", ..."""
    hint = get_type_hints(TrainConfig)[f.name]
    bound = f.metadata["bound"]
    nullable = type(None) in get_args(hint)
    base = non_null(hint)
    if f.name == "base_model":
        return f"a model directory or name of 1 to {MAX_NAME_CHARS} characters"
    if get_origin(base) is Literal:
        return f"one of {', '.join(get_args(base))}"
    if base is bool:
        return "true, false or null" if nullable else "true or false"
    if base is int:
        return f"an integer in {bound}"
    if base is float:
        return f"a number in {bound}" + (" or null" if nullable else "")
    if get_origin(base) is list and get_args(base)[0] is str:
        return f"a list of 1 to {MAX_HEADS} column names ({HEAD_NAME_RULE}) or null"
    if get_origin(base) is list:
        return f"a list of 1 to {MAX_GRID} numbers in {bound}"
    if is_pattern_map(base):
        return (
            f"a mapping of at most {MAX_MASK_PATTERNS} names (A-Z, 0-9, _) to regular "
            f"expressions of at most {MAX_PATTERN_CHARS} characters"
        )
    return f"a mapping of at most {MAX_GRID} head names to numbers in {bound}"


def accepts(hint: Any, bound: Bound | None, value: Any) -> bool:
    """Whether `value` fits a field of type `hint` within `bound`."""
    if value is None:
        return type(None) in get_args(hint)
    hint = non_null(hint)
    if get_origin(hint) is Literal:
        return value in get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str) and len(value.strip()) > 0 and len(value) <= MAX_NAME_CHARS
    if hint is int:
        return _is_int(value) and value in bound
    if hint is float:
        return _is_number(value) and value in bound
    if get_origin(hint) is list and get_args(hint)[0] is str:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if get_origin(hint) is list:
        return (
            isinstance(value, list)
            and 1 <= len(value) <= MAX_GRID
            and all(_is_number(v) and v in bound for v in value)
        )
    if is_pattern_map(hint):
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    return (
        isinstance(value, dict)
        and len(value) <= MAX_GRID
        and all(isinstance(k, str) and _is_number(v) and v in bound for k, v in value.items())
    )


def is_pattern_map(hint: Any) -> bool:
    """`dict[str, str]`: names to regular expressions (mask_patterns)."""
    return get_origin(hint) is dict and get_args(hint) == (str, str)


def non_null(hint: Any) -> Any:
    """`float` for `float | None`; other types as they are."""
    if type(None) not in get_args(hint):
        return hint
    return next(a for a in get_args(hint) if a is not type(None))


def _number(value: float) -> str:
    """1e-4 as 0.0001, 4294967295 in full (not 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
