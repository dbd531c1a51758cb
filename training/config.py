"""Training configuration: one pydantic model that validates itself and round-trips to JSON.

The shim writes it as a job spec, the CLI builds it from flags, and the exported model directory
keeps a copy, so every default is defined here and nowhere else. Each field's description and
bound are the one source of the command-line flags (training/config_flags.py), the API body and
its OpenAPI schema (shim/schemas.py) and the docs' settings table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from training.errors import ConfigError
from training.text.cleaning import (
    MASK_NAME,
    MAX_MASK_PATTERNS,
    MAX_PATTERN_CHARS,
    CleaningSettings,
    patterns_problem,
)
from training.text.data import DEFAULT_MIN_CLASS_EXAMPLES
from training.text.head_names import (
    HEAD_NAME,
    HEAD_NAME_RULE,
    MAX_FEATURE_COLUMNS,
    MAX_HEADS,
    feature_columns_problem,
    heads_problem,
)

BUNDLED_BASE_MODEL = "bundled:all-MiniLM-L6-v2"
# Built offline on first use (training/encoders/base_models.py). On the multilingual benchmark it
# beats both MiniLM and the TF-IDF baseline; the bundled MiniLM trains about twice as fast.
DEFAULT_BASE_MODEL = "multilingual-e5-small"
DEFAULT_TOP_K = 3  # labels listed per head in an answer
Mode = Literal["auto", "fast", "full"]
GateRule = Literal["head", "class"]
EncoderPrecision = Literal["fp32", "bf16"]  # training/inference/model.py
MAX_GRID = 8  # most values in one of the fast mode's candidate lists (and heads weighted)
# The encoders' position limit: longer inputs would not fit their position embeddings.
MAX_POSITIONS = 512
MAX_NAME_CHARS = 200  # longest base_model name


def _between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Any:
    """A bound as pydantic constraints (ge/gt, le/lt), read back by `interval()`."""
    return Field(**{"gt" if low_open else "ge": low, "lt" if high_open else "le": high})


def _numbers(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Any:
    """A candidate list of 1 to MAX_GRID finite numbers within the bound."""
    item = Annotated[float, Field(allow_inf_nan=False), _between(low, high, low_open, high_open)]
    return Annotated[list[item], Field(min_length=1, max_length=MAX_GRID)]  # type: ignore[valid-type]


CGrid = _numbers(1e-4, 1e4)
WeightGrid = _numbers(0, 100)
Rate = Annotated[float, Field(allow_inf_nan=False), _between(0, 1, True, True)]
Fraction = Annotated[float, Field(allow_inf_nan=False), _between(0, 1, high_open=True)]
Split = Annotated[float, Field(allow_inf_nan=False), _between(0, 0.5, high_open=True)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"\S")]
HeadNames = Annotated[
    list[Annotated[str, StringConstraints(pattern=f"^{HEAD_NAME.pattern}$")]],
    Field(min_length=1, max_length=MAX_HEADS),
]
FeatureNames = Annotated[
    list[Annotated[str, StringConstraints(pattern=f"^{HEAD_NAME.pattern}$")]],
    Field(min_length=1, max_length=MAX_FEATURE_COLUMNS),
]
HeadWeights = Annotated[
    dict[str, Annotated[float, Field(allow_inf_nan=False), _between(0, 100)]],
    Field(max_length=MAX_GRID),
]
MaskPatterns = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=MASK_NAME.pattern)],
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATTERN_CHARS)],
    ],
    Field(max_length=MAX_MASK_PATTERNS),
]


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    base_model: Name = Field(
        DEFAULT_BASE_MODEL,
        description="encoder: multilingual-e5-small, or the bundled all-MiniLM-L6-v2 (about "
        "twice as fast, less accurate); the command line also takes a model directory",
    )
    mode: Mode = Field(
        "auto",
        description="fast: frozen encoder with cached embeddings, heads fitted in seconds on "
        "[embedding + lexical features]; full: fine-tune the encoder too, starting from "
        "the fast heads (for a GPU); auto: full only on a GPU where the projection "
        "measured on its first steps fits auto_full_budget_s (training/modes.py)",
    )
    auto_full_budget_s: Annotated[int, _between(0, 7 * 24 * 3600)] = Field(
        1800, description="seconds a full fine-tune may take for auto to choose it"
    )
    lexical: bool = Field(
        True, description="word 1-2-gram and char 2-5-gram TF-IDF features beside the encoder"
    )
    lexical_min_df: Annotated[int, _between(1, 1000)] = Field(
        2, description="an n-gram must occur in this many training texts"
    )
    lexical_max_features: Annotated[int, _between(1, 5_000_000)] = Field(
        200_000, description="most frequent n-grams kept per block (word, char)"
    )
    linear_c: CGrid = Field(
        [0.1, 0.3, 1.0],
        description="fast mode: candidate C of the linear SVM, chosen per head by cross-validation",
    )
    dense_weight: WeightGrid = Field(
        [2.0, 4.0],
        description="fast mode: candidate weights of the L2-normalised embedding against the "
        "L2-normalised lexical features, for the embedding alone and beside the lexical "
        "features (the lexical features alone are always a candidate; 0 adds nothing)",
    )
    folds: Annotated[int, _between(2, 10)] = Field(
        5,
        description="fast mode chooses, calibrates and gates the heads by cross-fitting on "
        "this many folds of train + validation",
    )
    selection_rows: Annotated[int, _between(500, 10_000_000)] = Field(
        10_000,
        description="fast mode: with more rows than this, the candidates are compared on a "
        "random sample of this many, and only the chosen one is cross-fitted on every row "
        "(its out-of-fold scores calibrate and gate the head): training time stays linear",
    )
    target_precision: Annotated[float, Field(allow_inf_nan=False), _between(0, 1, True)] = Field(
        0.9,
        description="auto-routing gate: per head, the lowest confidence above which the "
        "precision's lower bound (out of fold, at gate_confidence) reaches this; where none "
        "does, the gate is closed",
    )
    gate_confidence: Annotated[
        float, Field(allow_inf_nan=False), _between(0.5, 1, high_open=True)
    ] = Field(
        0.95,
        description="auto-routing gate: confidence level of the precision's one-sided lower "
        "bound (Clopper-Pearson)",
    )
    gate: GateRule = Field(
        "head",
        description="auto-routing gate: one threshold per head, or one per predicted class, "
        "each chosen by the same rule on the tickets predicted as that class (a class that "
        "reaches target_precision at no threshold never routes)",
    )
    encoder_precision: EncoderPrecision = Field(
        "fp32",
        description="fast mode on a CPU: the frozen encoder's arithmetic when it embeds (at "
        "training and in TorchServe); bf16 is about twice as fast on a CPU with native bf16 "
        "(AVX-512 BF16, AMX, Arm BF16) at a cosine of 0.9999 to fp32 (docs/benchmarks.md); "
        "where the serving CPU lacks it, TorchServe runs the model in fp32",
    )
    max_length: Annotated[int, _between(8, MAX_POSITIONS)] = Field(
        256, description="tokens per ticket; longer ones are truncated"
    )
    epochs: Annotated[int, _between(1, 100)] = Field(
        8, description="full mode: a ceiling; training stops once validation stops improving"
    )
    batch_size: Annotated[int, _between(1, 512)] = Field(
        32, description="tickets per training step"
    )
    learning_rate: Rate = Field(1e-4, description="full mode: peak learning rate")
    head_learning_rate: Rate | None = Field(
        None, description="full mode: learning rate of the heads (none: learning_rate)"
    )
    layer_lr_decay: Annotated[float, Field(allow_inf_nan=False), _between(0, 1, True)] = Field(
        1.0,
        description="full mode: layer i of L trains at learning_rate * decay**(L - i), "
        "embeddings at decay**L; 1 trains every layer at the same rate",
    )
    weight_decay: Annotated[float, Field(allow_inf_nan=False), _between(0, 10)] = Field(
        0.01, description="full mode: AdamW weight decay"
    )
    warmup_ratio: Fraction = Field(
        0.1, description="full mode: share of the steps spent warming up"
    )
    max_grad_norm: Annotated[float, Field(allow_inf_nan=False), _between(0, 1000)] = Field(
        1.0, description="full mode: gradient clipping norm (0: none)"
    )
    dropout: Fraction = Field(0.1, description="full mode: dropout before the heads")
    patience: Annotated[int, _between(0, 100)] = Field(
        2, description="full mode: epochs without improvement before stopping"
    )
    seed: Annotated[int, _between(0, 2**32 - 1)] = Field(
        42, description="random seed of splits and training"
    )
    val_fraction: Split = Field(
        0.1,
        description="share of the tickets held out for validation (full mode's early stopping "
        "and calibration; fast mode cross-validates on train + validation together)",
    )
    test_fraction: Split = Field(
        0.1,
        description="share of the tickets held out for the test report (fast mode learns them "
        "too, after the report)",
    )
    min_class_examples: Annotated[int, _between(1, 100_000)] = Field(
        DEFAULT_MIN_CLASS_EXAMPLES,
        description="labels with fewer tickets are reported (kept, but learned poorly)",
    )
    label_columns: HeadNames | None = Field(
        None,
        description="the label columns to train, one head each under its column's name; none: "
        "every label column of the data (of a file: queue and priority, those it has)",
    )
    feature_columns: FeatureNames | None = Field(
        None,
        description="structured fields the model reads beside the text (e.g. type,channel): "
        "each value seen in training is a one-hot feature of every head; at classify time a "
        "ticket's 'fields' give them, and a value never seen (or none) is unknown",
    )
    class_weighting: bool | None = Field(
        None,
        description="balanced class weights (for macro-F1 on skewed labels); none: chosen per "
        "head on validation in fast mode, and full mode keeps each head's fast choice",
    )
    freeze_embeddings: bool = Field(False, description="full mode: keep the token embeddings fixed")
    trim_vocabulary: bool = Field(
        True,
        description="full mode: shrink a SentencePiece encoder's vocabulary to the pieces of "
        "the training texts (training/encoders/vocab_trim.py); WordPiece encoders are kept whole",
    )
    head_weights: HeadWeights = Field(
        {}, description="full mode: loss weight per head (1 unless given)"
    )
    clean_mail: bool = Field(
        True,
        description="read mail as a person does: HTML to text, the newest message of a thread "
        "only, without signature and disclaimer (docs/cleaning.md); the model applies it to "
        "every text it trains on, is evaluated on and classifies",
    )
    mask_personal_data: bool = Field(
        True,
        description="replace e-mail addresses, phone numbers, IBANs, card numbers, IP "
        "addresses, URLs with credentials and greeted names by [EMAIL], [PHONE], ... before "
        "the model reads a text; the service masks what it stores with its own default of "
        "this setting",
    )
    mask_patterns: MaskPatterns = Field(
        {},
        description="more to mask: placeholder name -> regular expression, e.g. "
        "CUSTOMER='KD-[0-9]{6}' becomes [CUSTOMER]",
    )
    similar_tickets: bool = Field(
        True,
        description="keep every training ticket's embedding, id, labels and a 280-character "
        "excerpt of its text as stored (cleaned, masked) in the model and its .mar, for "
        "similar-ticket lookups (POST /api/v1/similar)",
    )
    top_k: Annotated[int, _between(1, 100)] = Field(
        DEFAULT_TOP_K, description="labels listed per head in an answer"
    )
    num_threads: Annotated[int, _between(0, 256)] = Field(
        0, description="CPU threads for torch (0: torch decides)"
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_message(exc, values)) from None

    # Checks on raw values, before the constraints, so a message names the exact problem.
    @field_validator("label_columns", mode="before")
    @classmethod
    def _heads(cls, value: Any) -> Any:
        if isinstance(value, list) and (problem := heads_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("feature_columns", mode="before")
    @classmethod
    def _features(cls, value: Any) -> Any:
        if isinstance(value, list) and (problem := feature_columns_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("mask_patterns", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        if isinstance(value, dict) and (problem := patterns_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if shared := set(self.feature_columns or []) & set(self.label_columns or []):
            raise ValueError(
                f"feature_columns: {sorted(shared)[0]!r} is a label column; a column is "
                "either predicted or read"
            )
        if not self.lexical and not any(w > 0 for w in self.dense_weight):
            raise ValueError(
                "dense_weight needs a value above 0 when lexical is off: the heads would have "
                "no features"
            )
        return self

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
        return self.model_dump()

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, rejecting unknown keys by name."""
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


def _message(exc: ValidationError, values: dict[str, Any]) -> str:
    """A ValidationError as one sentence: unknown keys by name, else the first field's problem
    in words ("epochs must be an integer in [1, 100], got 0")."""
    errors = exc.errors()
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return f"unknown training option(s): {', '.join(unknown)}"
    error = errors[0]
    if error["type"] == "value_error":  # one of the checks above, already in words
        reason = str(error["ctx"]["error"])
        return f"{error['loc'][0]}: {reason}" if error["loc"] else reason
    name = str(error["loc"][0])
    return f"{name} must be {expected(name)}, got {values.get(name)!r}"


def default(name: str) -> Any:
    """A field's default value."""
    return TrainConfig.model_fields[name].get_default(call_default_factory=True)


def expected(name: str) -> str:
    """What a field accepts, in words: "an integer in [1, 100]", "true or false", ..."""
    info = TrainConfig.model_fields[name]
    hint, nullable = kind(info)
    if name == "base_model":
        return f"a model directory or name of 1 to {MAX_NAME_CHARS} characters"
    if get_origin(hint) is Literal:
        return f"one of {', '.join(get_args(hint))}"
    if hint is bool:
        return "true, false or null" if nullable else "true or false"
    if hint is int:
        return f"an integer in {interval(info)}"
    if hint is float:
        return f"a number in {interval(info)}" + (" or null" if nullable else "")
    if name in ("label_columns", "feature_columns"):
        most = max_items(info)
        return f"a list of 1 to {most} column names ({HEAD_NAME_RULE}) or null"
    if get_origin(hint) is list:
        return f"a list of 1 to {max_items(info)} numbers in {interval(item(info))}"
    if name == "mask_patterns":
        return (
            f"a mapping of at most {MAX_MASK_PATTERNS} names (A-Z, 0-9, _) to regular "
            f"expressions of at most {MAX_PATTERN_CHARS} characters"
        )
    return f"a mapping of at most {max_items(info)} head names to numbers in {interval(item(info))}"


def kind(info: FieldInfo) -> tuple[Any, bool]:
    """A field's type without None and its Annotated constraints, and whether None is allowed:
    `(float, True)` for `Rate | None`."""
    hint = info.annotation
    nullable = type(None) in get_args(hint)
    if nullable:
        hint = next(a for a in get_args(hint) if a is not type(None))
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    return hint, nullable


def item(info: FieldInfo) -> FieldInfo:
    """The field of a list's items or a mapping's values, with their constraints."""
    hint, _ = kind(info)
    return FieldInfo.from_annotation(get_args(hint)[-1])


def constraints(info: FieldInfo) -> list[Any]:
    """A field's constraints, those of its Annotated type (under `| None`) included."""
    found = list(info.metadata)
    hint = info.annotation
    for arg in (hint, *get_args(hint)):
        if get_origin(arg) is Annotated:
            found += FieldInfo.from_annotation(arg).metadata
    return found


def max_items(info: FieldInfo) -> int:
    return next(c.max_length for c in constraints(info) if isinstance(c, annotated_types.MaxLen))


def interval(info: FieldInfo) -> str:
    """The interval a numeric field's constraints allow, as [0, 1) or (0, 1]."""
    found = constraints(info)
    low, low_open = _limit(found, annotated_types.Ge, annotated_types.Gt)
    high, high_open = _limit(found, annotated_types.Le, annotated_types.Lt)
    return f"{'(' if low_open else '['}{_number(low)}, {_number(high)}{')' if high_open else ']'}"


def _limit(found: list[Any], closed: type, open_: type) -> tuple[float, bool]:
    for c in found:
        if isinstance(c, closed | open_):
            value = next(getattr(c, key) for key in ("ge", "gt", "le", "lt") if hasattr(c, key))
            return value, isinstance(c, open_)
    raise LookupError("the field has no such bound")


def _number(value: float) -> str:
    """1e-4 as 0.0001, 4294967295 in full (not 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
