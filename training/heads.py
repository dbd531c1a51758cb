"""`fast` mode: fit each head on [lexical TF-IDF ⊕ frozen-encoder embedding] with linear SVMs.

The heads are cross-fitted: the rows are split into `folds` stratified folds, and for every
candidate setting (C, the weight of the dense block against the lexical one, balanced class
weights or not) one SVM is trained per fold on the other folds and scores the fold it did not
see. Those out-of-fold scores choose the setting (macro-F1 over all rows, far steadier than a
small held-out split) and are what calibration and the auto-routing gate are fitted on. The
head that ships is the average of the chosen setting's fold models: a linear model again, whose
coefficients are copied into the model's torch layers, so the exported model computes exactly
that decision function. A class a fold never saw gets a bias that keeps it from winning there.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from training.config import TrainConfig
from training.model import TicketClassifier

logger = logging.getLogger(__name__)

ABSENT_CLASS_BIAS = -1e4


@dataclass(frozen=True)
class HeadChoice:
    """The setting a head was fitted with and its out-of-fold macro-F1."""

    c: float
    dense_weight: float
    class_weighting: bool
    cross_validated_macro_f1: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Features:
    """Rows as the linear heads see them."""

    lexical: sparse.csr_matrix | None
    dense: np.ndarray

    def stacked(self, dense_weight: float) -> sparse.csr_matrix:
        dense = sparse.csr_matrix(self.dense * dense_weight)
        return dense if self.lexical is None else sparse.hstack([self.lexical, dense]).tocsr()


@dataclass
class LinearHead:
    """One head's decision function over all its classes: scores = x @ coef.T + bias."""

    coef: np.ndarray
    bias: np.ndarray

    def scores(self, x: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(x @ self.coef.T) + self.bias


def candidate_settings(config: TrainConfig) -> list[tuple[float, float, bool]]:
    """(C, dense weight, class weighting) to try, in order of preference on ties."""
    return list(
        itertools.product(config.linear_c, config.dense_weight, config.class_weighting_options())
    )


def fold_assignment(targets: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of every row, stratified on `targets` (classes smaller than `folds` spread as
    far as they go)."""
    folds = max(2, min(folds, len(targets)))
    counts = np.bincount(targets)
    if counts[counts > 0].min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        out = np.zeros(len(targets), dtype=np.int64)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(targets)), targets)):
            out[held_out] = fold
        return out
    # Round-robin within each class after a seeded shuffle: a tiny class still spreads out.
    order = np.random.default_rng(seed).permutation(len(targets))
    order = order[np.argsort(targets[order], kind="stable")]
    out = np.zeros(len(targets), dtype=np.int64)
    out[order] = np.arange(len(targets)) % folds
    return out


FitProgress = Callable[[int, int, float], None]  # units done, units in all, seconds so far


def fit_units(model: TicketClassifier, rows: int, config: TrainConfig) -> int:
    """The work of `fit_linear_heads` in units that cost about the same: one class of one head,
    one candidate setting, over all rows (liblinear trains one-vs-rest, in time ~ rows)."""
    classes = sum(len(names) for names in model.labels.values())
    return classes * len(candidate_settings(config)) * rows


def fit_linear_heads(
    model: TicketClassifier,
    features: Features,
    targets: dict[str, np.ndarray],
    config: TrainConfig,
    progress: FitProgress | None = None,
) -> tuple[dict[str, HeadChoice], dict[str, np.ndarray]]:
    """Cross-fit and choose every head; the averaged heads end up in `model`.

    Returns the choices and, per head, the out-of-fold logits of every row.
    """
    first = next(iter(model.labels))
    fold_of = fold_assignment(targets[first], config.folds, config.seed)
    jobs = config.num_threads or os.cpu_count() or 1
    choices, out_of_fold = {}, {}
    total, done, started = fit_units(model, len(fold_of), config), 0, time.monotonic()
    for head, names in model.labels.items():
        best: tuple[float, LinearHead, np.ndarray, HeadChoice] | None = None
        for c, weight, balanced in candidate_settings(config):
            x = features.stacked(weight)
            # liblinear releases the GIL: folds train in parallel threads.
            fitted = Parallel(n_jobs=min(jobs, int(fold_of.max()) + 1), prefer="threads")(
                delayed(_fit_fold)(x, targets[head], fold_of, fold, len(names), c, balanced, config)
                for fold in range(int(fold_of.max()) + 1)
            )
            scores = np.zeros((len(fold_of), len(names)))
            for fold, fold_head in enumerate(fitted):
                rows = fold_of == fold
                scores[rows] = fold_head.scores(x[rows])
            score = float(
                f1_score(
                    targets[head],
                    scores.argmax(axis=1),
                    labels=list(range(len(names))),
                    average="macro",
                    zero_division=0,
                )
            )
            logger.info("%s: C %g, dense weight %g, balanced %s -> out-of-fold macro-F1 %.4f",
                        head, c, weight, balanced, score)  # fmt: skip
            done += len(names) * len(fold_of)
            if progress is not None:
                progress(done, total, time.monotonic() - started)
            if best is None or score > best[0]:
                choice = HeadChoice(c, weight, balanced, score)
                best = (score, _average(fitted), scores, choice)
        assert best is not None
        _copy_weights(model, head, best[1], best[3].dense_weight, features.lexical is not None)
        choices[head], out_of_fold[head] = best[3], best[2].astype(np.float32)
    return choices, out_of_fold


def _fit_fold(
    x: sparse.csr_matrix,
    y: np.ndarray,
    fold_of: np.ndarray,
    fold: int,
    classes: int,
    c: float,
    balanced: bool,
    config: TrainConfig,
) -> LinearHead:
    """An SVM on every fold but `fold`, as a decision function over all `classes`."""
    rows = fold_of != fold
    present = np.unique(y[rows])
    coef = np.zeros((classes, x.shape[1]))
    bias = np.full(classes, ABSENT_CLASS_BIAS)
    if len(present) == 1:  # nothing to separate: that class always wins
        bias[present] = 0.0
        return LinearHead(coef, bias)
    svm = LinearSVC(C=c, class_weight="balanced" if balanced else None, random_state=config.seed)
    svm.fit(x[rows], y[rows])
    fitted_coef, fitted_bias = np.asarray(svm.coef_), np.asarray(svm.intercept_)
    if len(svm.classes_) == 2:  # one score for the second class against the first
        fitted_coef = np.vstack([np.zeros_like(fitted_coef), fitted_coef])
        fitted_bias = np.r_[0.0, fitted_bias]
    coef[svm.classes_] = fitted_coef
    bias[svm.classes_] = fitted_bias
    return LinearHead(coef, bias)


def _average(heads: list[LinearHead]) -> LinearHead:
    """The mean decision function of the fold models; a class counts only in the folds that saw
    it (its absent-class bias would otherwise leak into the mean)."""
    seen = np.stack([h.bias != ABSENT_CLASS_BIAS for h in heads]).astype(np.float64)
    counts = seen.sum(axis=0)
    coef = sum(h.coef * s[:, None] for h, s in zip(heads, seen, strict=True))
    bias = sum(np.where(s > 0, h.bias, 0.0) for h, s in zip(heads, seen, strict=True))
    safe = np.maximum(counts, 1.0)
    return LinearHead(coef / safe[:, None], np.where(counts > 0, bias / safe, ABSENT_CLASS_BIAS))


def _copy_weights(
    model: TicketClassifier, head: str, fitted: LinearHead, dense_weight: float, has_lexical: bool
) -> None:
    """Write the decision function into the head (and its slice of the lexical table)."""
    lexical_size = model.lexical.size if has_lexical and model.lexical is not None else 0
    layer = model.heads[head]
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(fitted.coef[:, lexical_size:] * dense_weight))
        layer.bias.copy_(torch.from_numpy(fitted.bias))
        if lexical_size:
            start = model.label_offset(head)
            table = model.lexical_weights.weight
            classes = len(model.labels[head])
            table[:, start : start + classes] = torch.from_numpy(fitted.coef[:, :lexical_size].T)
