"""Train the ticket classifier: split, embed, fit the lexical branch and the heads, calibrate,
export.

Phases run in a fixed, visible order (seed -> split -> labels -> encoder -> mode -> embed with the
frozen encoder (cached) -> lexical vocabulary -> heads chosen by cross-fitting and refitted ->
[full: fine-tune] -> calibrate and gate -> evaluate -> [fast: the heads refitted on every row]
-> export); each is a function. The full mode's fine-tuning loop, and the projection of its
duration that the mode choice weighs, live in training.fit.fine_tune.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from training.config import TrainConfig
from training.encoders.base_models import resolve_base_model
from training.encoders.embeddings import EmbeddingCache, embed_texts, encoder_fingerprint
from training.encoders.vocab_trim import is_trimmable, trim_vocabulary
from training.errors import ConfigError
from training.export.export import export_model
from training.export.predict import Predictor
from training.fit import distributed, label_issues
from training.fit.calibration import (
    class_curves,
    class_gate,
    class_report,
    fit_temperature,
    gate_promise,
    gate_report,
    precision_curve,
)
from training.fit.drift import reference as drift_reference
from training.fit.evaluate import (
    evaluate_heads,
    expected_calibration_error,
    reliability_bins,
)
from training.fit.fields import field_matrix, fit_fields, row_fields
from training.fit.fine_tune import encode_split, fit, project_fine_tune
from training.fit.heads import (
    Features,
    HeadSelection,
    LinearHead,
    fit_head,
    fit_units,
    install_head,
    select_heads,
)
from training.fit.lexical import fit_lexical, lexical_matrix
from training.inference import similar_index
from training.inference.model import (
    TicketClassifier,
    TicketFields,
    gate_threshold,
    native_bf16,
    predict_logits,
    probabilities,
    rare_token_shares,
)
from training.inference.model_cleaning import ModelCleaning
from training.modes import choose_mode
from training.progress import PlanCallback, ProgressCallback, Reporter
from training.text.data import TicketData, split_tickets

logger = logging.getLogger(__name__)

FIT_RATE = "head_fit_seconds_per_unit"


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    predictor: Predictor  # the in-memory model as it was exported
    # Raw test-split logits per head, from the model before it learned the test rows.
    test_logits: dict[str, np.ndarray] | None = None
    # The rows that have calibrated held-out probabilities (label_issues.py), and those.
    held_out: HeldOut | None = None


@dataclass
class HeldOut:
    """Calibrated probabilities of rows from models that never learned them, per head."""

    frame: pd.DataFrame
    probs: dict[str, np.ndarray]
    source: str


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
    embedding_cache: str | Path | None = None,
    on_plan: PlanCallback | None = None,
    final_fit: bool = True,
) -> TrainResult:
    """Train on `data` in the configured mode and export a model directory to `out_dir`.

    `splits` (train/validation/test frames of `data`) replaces the configured random split, for
    benchmarks with a fixed test set. `embedding_cache` is the SQLite file of cached embeddings
    (default: in the ticketserve cache). `on_plan` hears the chosen mode and the expected
    duration before the long work starts. `final_fit` (fast mode): after the test report, refit
    the heads on every row, the test split included; a benchmark that scores the returned
    predictor on its own test split turns it off.
    """
    started = time.monotonic()
    set_seed(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = pick_device()
    distributed.start(device)
    main = distributed.is_main()
    if splits is None:
        splits = split_tickets(
            data.frame, data.heads[0], config.val_fraction, config.test_fraction, config.seed
        )
    labels = {head: sorted(data.frame[head].unique().tolist()) for head in data.heads}
    train_texts = splits["train"]["text"].tolist()
    validation_texts = splits["validation"]["text"].tolist()
    base = resolve_base_model(config.base_model)
    tokenizer, model = load_base(config, labels, train_texts + validation_texts)
    model.to(device)
    train_split = encode_split(tokenizer, splits["train"], labels, config.max_length)
    logger.info(
        "training on %d tickets, %d validation, %d test, device %s",
        *(len(splits[s]) for s in ("train", "validation", "test")),
        device,
    )
    plan = choose_mode(
        config, device, lambda: project_fine_tune(model, tokenizer, train_split, config, device)
    )
    logger.info("mode %s: %s", plan.mode, plan.reason)
    if distributed.active() and plan.mode != "full":
        raise ConfigError(
            f"torchrun runs full mode's fine-tune on several processes; this run is in {plan.mode} "
            "mode: run it as one process, or with --mode full"
        )
    # Only the first of several processes reports.
    reporter = Reporter(
        progress if main else None, progress_bar and main, started, plan, on_plan if main else None
    )

    # fast: the heads are chosen, calibrated and gated by cross-fitting on train + validation,
    # refitted there and scored on the test split; then the shipped heads learn every row, the
    # test split included (`final_fit`). full: chosen on train only, as the start of the
    # fine-tune; the held-out validation split steers early stopping and calibration.
    fast = plan.mode == "fast"
    selection = pd.concat([splits["train"], splits["validation"]]) if fast else splits["train"]
    selection_texts = selection["text"].tolist()
    test_texts = splits["test"]["text"].tolist()
    embedded = train_texts + validation_texts + (test_texts if fast else [])
    model.encoder_precision = encoder_precision(config, fast, device)
    cache = EmbeddingCache(
        embedding_cache,
        encoder_fingerprint(base, config.max_length, model.normalize, model.encoder_precision),
    )
    try:
        # Seconds per unit of head fitting, as the last run on this machine measured it.
        fit_rate = cache.measurement(FIT_RATE) or 0.0
        units = fit_units(labels, len(selection), config)
        dense, computed = embed_texts(
            model,
            tokenizer,
            embedded,
            cache,
            progress=reporter.embedding(0 if fast else len(test_texts), fit_rate * units),
        )
        reporter.send_plan(fit_rate * units)  # everything was cached: nothing was measured
        fitting_started = time.monotonic()
        features = fit_features(
            model, config, selection_texts, dense[: len(selection)], row_fields(selection)
        )
        selections = select_heads(
            features, label_indices(selection, labels), labels, config, progress=reporter.fitting()
        )
        held_out_heads = _fit_heads(features, selection, labels, selections, config)
        for head, fitted in held_out_heads.items():
            install_head(model, head, fitted)
        cache.record(FIT_RATE, (time.monotonic() - fitting_started) / units)
    finally:
        cache.close()
    best_epoch, epochs_run = 0, 0
    test_logits: dict[str, np.ndarray] | None = None
    if fast:
        validation_frame = selection
        validation_logits = {head: s.out_of_fold for head, s in selections.items()}
        if len(test_texts):
            # Scored with the held-out heads before the final fit below learns these rows.
            test_features = model_features(
                model, test_texts, dense[len(selection) :], row_fields(splits["test"])
            )
            test_logits = {h: f.scores(test_features) for h, f in held_out_heads.items()}
    else:
        weighting = {head: s.candidate.class_weighting for head, s in selections.items()}
        best_epoch, epochs_run = fit(
            model, tokenizer, train_split, splits, labels, config, device, reporter, weighting
        )
        distributed.stop()
        if not main:
            raise distributed.NotMainProcess
        validation_frame = splits["validation"]
        validation_logits = predict_logits(
            model.eval(), tokenizer, validation_texts, fields=row_fields(splits["validation"])
        )
    calibration = calibrate(
        model, validation_logits, label_indices(validation_frame, labels), config
    )
    metrics_test = (
        evaluate_split(model, test_logits, splits["test"], labels)
        if test_logits is not None
        else None
    )
    learned = selection
    if fast and final_fit and len(test_texts):
        learned = pd.concat([selection, splits["test"]])
        final = fit_features(model, config, learned["text"].tolist(), dense, row_fields(learned))
        for head, fitted in _fit_heads(final, learned, labels, selections, config).items():
            install_head(model, head, fitted)
    held_out = held_out_probabilities(
        model, selections, splits, selection, learned, test_logits, labels, fast
    )
    issues = label_issues.report(
        {
            head: label_issues.head_report(held_out.frame, head, names, held_out.probs[head])
            for head, names in labels.items()
        },
        held_out.source,
    )
    validation_probs = probabilities(validation_logits, model.temperature)
    reference = drift_reference(
        {head: learned[head].value_counts().to_dict() for head in labels},
        {head: probs.max(axis=1) for head, probs in validation_probs.items()},
        rare_token_shares(tokenizer, learned["text"].tolist(), model.max_length),
    )
    train_seconds = time.monotonic() - started

    metrics: dict[str, Any] = {
        "base_model": config.base_model,
        "mode": plan.to_dict(),
        "train_seconds": round(train_seconds, 1),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "splits": {name: len(frame) for name, frame in splits.items()},
        # What the validation metrics, the calibration and the gate come from.
        "validation_source": (
            f"out-of-fold predictions on train + validation ({config.folds} folds)"
            if fast
            else "the validation split"
        ),
        # The rows the shipped heads were fitted on; the test metrics come from heads fitted
        # before the test rows were learned.
        "learned_rows": len(learned),
        "embeddings": {"computed": computed, "cached": len(dense) - computed},
        "heads": {head: s.to_dict() for head, s in selections.items()},
        "lexical_features": model.lexical.size if model.lexical is not None else 0,
        "calibration": calibration,
        # What the service compares live tickets with (shim.quality.drift).
        "drift_reference": reference,
        "cleaning": config.cleaning().to_dict(),
        # Each feature column and how many of its values the heads know.
        "feature_columns": (
            {c: len(v) for c, v in model.fields.columns.items()} if model.fields else {}
        ),
        "label_issues": label_issues.summary(issues),
    }
    if len(validation_frame):
        metrics["validation"] = evaluate_split(model, validation_logits, validation_frame, labels)
    if metrics_test is not None:
        metrics["test"] = metrics_test
    elif len(splits["test"]):
        test_logits = predict_logits(
            model.eval(), tokenizer, test_texts, fields=row_fields(splits["test"])
        )
        metrics["test"] = evaluate_split(model, test_logits, splits["test"], labels)
    if "test" not in metrics:
        # A dataset too small for a test split still gets a report, from validation.
        metrics["test"] = metrics.get("validation", {})
    similar = (
        similar_tickets(model, tokenizer, splits, dense if fast else None, labels)
        if config.similar_tickets
        else None
    )
    if similar is not None:
        metrics["similar_tickets"] = len(similar[1])
    path = export_model(model.cpu(), tokenizer, config, metrics, out_dir, issues, similar)
    predictor = Predictor(model, tokenizer, config.top_k, ModelCleaning.load(path))
    return TrainResult(path, metrics, predictor, test_logits, held_out)


def held_out_probabilities(
    model: TicketClassifier,
    selections: dict[str, HeadSelection],
    splits: dict[str, pd.DataFrame],
    selection: pd.DataFrame,
    learned: pd.DataFrame,
    test_logits: dict[str, np.ndarray] | None,
    labels: dict[str, list[str]],
    fast: bool,
) -> HeldOut:
    """The rows the shipped model learned that a model which never learned them scored, with
    calibrated probabilities: what confident learning ranks (training/fit/label_issues.py)."""
    oof = {head: s.out_of_fold for head, s in selections.items()}
    if not fast:
        # The linear heads the fine-tune started from, on the train split; their scale is not
        # the fine-tuned model's, so they get a temperature of their own.
        targets = label_indices(selection, labels)
        temperature = {head: fit_temperature(oof[head], targets[head]) for head in oof}
        return HeldOut(
            selection,
            probabilities(oof, temperature),
            "full mode: out-of-fold scores of the linear heads the fine-tune started from, "
            "on the train split (validation and test rows have none)",
        )
    source = f"fast mode: out-of-fold scores ({len(selection)} rows)"
    if test_logits is not None and len(learned) > len(selection):
        # The test rows, learned by the shipped heads, were scored before they learned them.
        oof = {head: np.vstack([oof[head], test_logits[head]]) for head in oof}
        selection = pd.concat([selection, splits["test"]])
        source += f" and the test split's held-out scores ({len(splits['test'])} rows)"
    return HeldOut(selection, probabilities(oof, model.temperature), source)


def similar_tickets(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, pd.DataFrame],
    dense: np.ndarray | None,
    labels: dict[str, list[str]],
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The similar-ticket index of every uploaded row (training/inference/similar_index.py): the
    shipped encoder's embeddings (fast mode's frozen ones, `dense`, in split order; full mode's
    fine-tuned encoder embeds them again), ids, labels and excerpts."""
    frame = pd.concat([splits[name] for name in ("train", "validation", "test")])
    texts = frame["text"].tolist()
    vectors = dense[: len(frame)] if dense is not None else embed_texts(model, tokenizer, texts)[0]
    ids = label_issues.row_ids(frame)
    tickets = [
        {
            "id": ids[i],
            "labels": {head: str(frame[head].iat[i]) for head in labels},
            "text": similar_index.excerpt(text),
        }
        for i, text in enumerate(texts)
    ]
    return vectors, tickets


def calibrate(
    model: TicketClassifier,
    logits: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    config: TrainConfig,
) -> dict[str, Any]:
    """Fit each head's temperature and gate on held-out scores; set them on `model`. Both gates
    are worked out (the card shows which classes reach the target on their own); the
    configured `gate` rule is the one the model applies."""
    out: dict[str, Any] = {}
    target, level = config.target_precision, config.gate_confidence
    for head, names in model.labels.items():
        truth = targets[head]
        temperature = fit_temperature(logits[head], truth)
        probs = probabilities({head: logits[head]}, {head: temperature})[head]
        predicted = probs.argmax(axis=1)
        correct = predicted == truth
        curve = precision_curve(probs.max(axis=1), correct, level)
        promise = {**gate_promise(curve, target, level), "rule": "head"}
        curves = class_curves(probs.max(axis=1), predicted, correct, names, level)
        counts = {name: int((predicted == i).sum()) for i, name in enumerate(names)}
        per_class = class_gate(curves, counts, target, level)
        model.temperature[head] = temperature
        model.gate[head] = {"threshold": promise["threshold"], "target_precision": target}
        if config.gate == "class":
            promise = per_class
            thresholds = {name: c["threshold"] for name, c in per_class["classes"].items()}
            model.gate[head] = {"classes": thresholds, "target_precision": target}
        out[head] = {
            "temperature": round(temperature, 6),
            **promise,
            "classes": per_class["classes"],
            "unreachable": per_class["unreachable"],
            "examples": len(truth),
            "validation_curve": curve,
        }
        if config.gate == "class":
            # The service reads the gate at another target_precision off these.
            out[head]["class_curves"] = curves
    return out


def evaluate_split(
    model: TicketClassifier,
    logits: dict[str, np.ndarray],
    frame: pd.DataFrame,
    labels: dict[str, list[str]],
) -> dict[str, dict[str, Any]]:
    """Per head metrics of calibrated probabilities, the ECE before calibration, and the gate."""
    probs = probabilities(logits, model.temperature)
    raw = probabilities(logits)
    metrics = evaluate_heads({head: frame[head].tolist() for head in labels}, probs, labels)
    for head, m in metrics.items():
        truth = np.asarray([labels[head].index(v) for v in frame[head]])
        raw_correct = raw[head].argmax(axis=1) == truth
        m["ece_uncalibrated"] = expected_calibration_error(raw[head].max(axis=1), raw_correct)
        confidence = probs[head].max(axis=1)
        correct = probs[head].argmax(axis=1) == truth
        gate = model.gate.get(head, {})
        # Each ticket's threshold is its predicted class's under the model's rule (NaN: none).
        per_class = [gate_threshold(gate, name) for name in labels[head]]
        thresholds = np.asarray([np.nan if t is None else t for t in per_class])
        predicted = probs[head].argmax(axis=1)
        target = gate.get("target_precision", 0.0)
        m["gate"] = {
            **gate_report(confidence, correct, thresholds[predicted], target),
            "threshold": gate.get("threshold"),
            "rule": "class" if "classes" in gate else "head",
            "classes": class_report(
                confidence, correct, predicted, labels[head], per_class, target
            ),
        }
        m["reliability"] = reliability_bins(confidence, correct)
        m["reliability_uncalibrated"] = reliability_bins(raw[head].max(axis=1), raw_correct)
    return metrics


def label_indices(frame: pd.DataFrame, labels: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per head, each row's label as its index in `labels[head]`."""
    return {
        head: np.asarray([names.index(v) for v in frame[head]], dtype=np.int64)
        for head, names in labels.items()
    }


def model_features(
    model: TicketClassifier,
    texts: list[str],
    dense: np.ndarray,
    fields: list[TicketFields] | None = None,
) -> Features:
    """The rows as the model's linear heads see them: its lexical features of `texts`, the
    embeddings `dense`, and its fields' one-hot features of `fields`."""
    return Features(
        lexical_matrix(model.lexical, texts) if model.lexical is not None else None,
        dense,
        field_matrix(model.fields, fields or [None] * len(texts))
        if model.fields is not None
        else None,
    )


def fit_features(
    model: TicketClassifier,
    config: TrainConfig,
    texts: list[str],
    dense: np.ndarray,
    fields: list[TicketFields] | None = None,
) -> Features:
    """Fit the lexical vocabulary on `texts` (when the config has a lexical branch) and the
    feature columns' values on `fields` (when it has feature columns), give them to the model,
    and return the rows' features."""
    lexical = (
        fit_lexical(texts, config.lexical_min_df, config.lexical_max_features)
        if config.lexical
        else None
    )
    known = (
        fit_fields(fields or [None] * len(texts), config.feature_columns)
        if config.feature_columns
        else None
    )
    model.set_lexical(lexical, known)
    return model_features(model, texts, dense, fields)


def _fit_heads(
    features: Features,
    frame: pd.DataFrame,
    labels: dict[str, list[str]],
    selections: dict[str, HeadSelection],
    config: TrainConfig,
) -> dict[str, LinearHead]:
    """Every head's chosen candidate fitted on all rows of `frame`."""
    targets = label_indices(frame, labels)
    return {
        head: fit_head(
            features,
            targets[head],
            len(names),
            selections[head].candidate,
            config,
            selections[head].fold_rows,
        )
        for head, names in labels.items()
    }


def encoder_precision(config: TrainConfig, fast: bool, device: torch.device) -> str:
    """The precision the model embeds in: the configured one for fast mode on a CPU, else fp32
    (full mode fine-tunes the encoder in fp32; a GPU embeds in fp32)."""
    if not fast or device.type != "cpu" or config.encoder_precision == "fp32":
        return "fp32"
    if not native_bf16():
        logger.warning(
            "encoder_precision bf16 on a CPU without native bf16 instructions: it is emulated, "
            "and slower than fp32 here"
        )
    return config.encoder_precision


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
            model = TicketClassifier.from_encoder(
                base, labels, config.dropout, config.max_length, normalize=True
            )
    except (OSError, ValueError) as exc:  # missing files; files transformers cannot read
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load base model {config.base_model!r}: {first_line}") from exc
    return tokenizer, model
