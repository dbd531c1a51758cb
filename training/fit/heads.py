"""`fast` mode: choose each head's linear SVM by cross-validation, then refit it on every row.

Candidates per head: the lexical TF-IDF features alone (among them the classical baseline's own
recipe, C 0.5 without class weights), the frozen encoder's embedding alone, and both side by
side, the embedding scaled by each `dense_weight`; each at every C of `linear_c`, with and
without balanced class weights. A model trained with feature columns has their one-hot
features beside every candidate's (training/fit/fields.py). Every candidate is cross-fitted on
`folds` stratified folds: an SVM trained on the other folds scores each fold.

The choice is the one-standard-error rule in favour of the simplest candidate, the baseline
recipe: the candidate with the best pooled out-of-fold macro-F1 replaces it only when it beats it
by more than one standard error of their difference. Both are scored on the same folds, so the
error is that of the per-fold differences (paired): a fold that is hard is hard for both, and the
spread of either candidate's own fold scores mixes that in. So the model departs from
the baseline where the departure pays beyond the noise, and then takes the best candidate
whole (keeping a middle way, e.g. the lexical features with a tuned C "within the noise" of the
best, lost to the baseline on held-out tickets: docs/benchmarks.md).

With more rows than `selection_rows` (10,000 by default), the candidates are compared on a
seeded random sample of that many rows, and only the chosen one is then cross-fitted on every
row: the comparison costs what it costs at 10,000 rows, and training time grows linearly beyond.

The chosen candidate's out-of-fold scores (of every row) are what calibration and the
auto-routing gate are fitted on; `fit_head` then fits it on all rows, its C scaled so that each
row weighs against the regularisation as in the fold models (which have fewer rows): a refit
with the same C is more confident than the out-of-fold scores, and routes more tickets at a
lower precision than its gate promises (seen on an inner validation split of the shared dataset:
the scaled C matched the out-of-fold mean confidence at the same accuracy). `install_head` copies
that decision function into the model's torch layers, so the exported model computes exactly it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from training.config import TrainConfig
from training.inference.model import TicketClassifier

logger = logging.getLogger(__name__)

ABSENT_CLASS_BIAS = -1e4
FeatureSet = Literal["lexical", "embedding", "both"]
FEATURE_SETS: tuple[FeatureSet, ...] = ("lexical", "embedding", "both")
# Memory the fold fits running at once may take: each holds its rows' copy of the feature matrix
# and liblinear's own float64 copy of it (BYTES_PER_VALUE for each stored value). At 50,000
# tickets one fit of lexical + embedding features takes about 1 GB, so such fits run one at a time.
FIT_MEMORY_BYTES = 1 << 30
BYTES_PER_VALUE = 12 + 16  # a CSR value and its column index; a liblinear feature_node
# The classical baseline (the data README's TF-IDF + LinearSVC(C=0.5)): our lexical features are
# scikit-learn's (tests/test_lexical.py), so this candidate is that recipe.
BASELINE_C = 0.5


@dataclass
class Features:
    """Rows as the linear heads see them: the lexical block (None without a lexical branch),
    the L2-normalised embedding, and the fields' one-hot block (None without feature columns)."""

    lexical: sparse.csr_matrix | None
    dense: np.ndarray
    fields: sparse.csr_matrix | None = None

    def __len__(self) -> int:
        return len(self.dense)


@dataclass(frozen=True)
class Candidate:
    """One setting a head can be fitted with."""

    features: FeatureSet
    c: float
    class_weighting: bool
    dense_weight: float = 0.0  # the embedding's scale; 0 for the lexical features alone

    @property
    def is_baseline_recipe(self) -> bool:
        return (self.features, self.c, self.class_weighting) == ("lexical", BASELINE_C, False)

    def complexity(self) -> tuple[bool, int, bool, float, float]:
        """Sorts simpler candidates first (a tie in score goes to the first): the baseline
        recipe, then the lexical features alone, the embedding alone, both."""
        return (
            not self.is_baseline_recipe,
            FEATURE_SETS.index(self.features),
            self.class_weighting,
            self.c,
            self.dense_weight,
        )

    def matrix(self, features: Features) -> sparse.csr_matrix:
        """The rows as this candidate's SVM sees them: its blocks, then the fields' one-hot
        block when there is one."""
        blocks = []
        if self.features in ("lexical", "both"):
            assert features.lexical is not None
            blocks.append(features.lexical)
        if self.features in ("embedding", "both"):
            blocks.append(sparse.csr_matrix(features.dense * self.dense_weight))
        if features.fields is not None:
            blocks.append(features.fields)
        return blocks[0] if len(blocks) == 1 else sparse.hstack(blocks).tocsr()

    def describe(self) -> str:
        weighting = "balanced" if self.class_weighting else "unweighted"
        if self.is_baseline_recipe:
            return f"lexical features alone, C {self.c:g}, unweighted (the baseline recipe)"
        blocks = {
            "lexical": "lexical features alone",
            "embedding": f"embedding alone (weight {self.dense_weight:g})",
            "both": f"lexical + embedding (weight {self.dense_weight:g})",
        }[self.features]
        return f"{blocks}, C {self.c:g}, {weighting}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidates(config: TrainConfig, has_lexical: bool) -> list[Candidate]:
    """Every candidate the configuration allows, simplest first: with lexical features, the
    baseline recipe always (unless balanced class weights are imposed)."""
    weights = sorted(set(w for w in config.dense_weight if w > 0))
    blocks: list[tuple[FeatureSet, float]] = [("embedding", w) for w in weights]
    if has_lexical:
        blocks = [("lexical", 0.0), *blocks, *(("both", w) for w in weights)]
    out = {
        Candidate(features, c, balanced, weight)
        for (features, weight), c, balanced in itertools.product(
            blocks, sorted(set(config.linear_c)), config.class_weighting_options()
        )
    }
    if has_lexical and False in config.class_weighting_options():
        out.add(Candidate("lexical", BASELINE_C, False))
    return sorted(out, key=Candidate.complexity)


@dataclass(frozen=True)
class Scored:
    """A candidate's pooled out-of-fold macro-F1 and its macro-F1 on each fold."""

    candidate: Candidate
    macro_f1: float
    fold_macro_f1: tuple[float, ...]

    def standard_error(self) -> float:
        folds = len(self.fold_macro_f1)
        return float(np.std(self.fold_macro_f1, ddof=1) / math.sqrt(folds)) if folds > 1 else 0.0


def paired_standard_error(a: Scored, b: Scored) -> float:
    """Standard error of the mean per-fold difference between two candidates' macro-F1."""
    differences = np.subtract(a.fold_macro_f1, b.fold_macro_f1)
    if len(differences) < 2:
        return 0.0
    return float(np.std(differences, ddof=1) / math.sqrt(len(differences)))


def one_standard_error_choice(scored: list[Scored]) -> tuple[Scored, Scored, float]:
    """(the chosen candidate, the best, the standard error the choice was made with): the
    baseline recipe unless the best beats it by more than one paired standard error (without
    the recipe among the candidates, the best)."""
    best = max(scored, key=lambda s: s.macro_f1)  # on a tie, the first: the simplest
    recipe = next((s for s in scored if s.candidate.is_baseline_recipe), None)
    if recipe is None:
        return best, best, best.standard_error()
    error = paired_standard_error(best, recipe)
    if best.macro_f1 - recipe.macro_f1 <= error + 1e-12:
        return recipe, best, error
    return best, best, error


@dataclass
class HeadSelection:
    """What cross-validation decided for one head."""

    chosen: Scored
    best: Scored
    standard_error: float  # of the best's lead over the baseline recipe (paired)
    scored: list[Scored]
    out_of_fold: np.ndarray  # the chosen candidate's out-of-fold scores of every row
    fold_rows: float  # rows each fold's SVM learned from, on average
    compared_rows: int | None = None  # the sample the candidates were compared on (None: all)

    @property
    def candidate(self) -> Candidate:
        return self.chosen.candidate

    def to_dict(self) -> dict[str, Any]:
        """For the model's metrics and card: the choice, the best, and every candidate."""
        ranked = sorted(self.scored, key=lambda s: -s.macro_f1)
        return {
            **self.candidate.to_dict(),
            "description": self.candidate.describe(),
            "cross_validated_macro_f1": round(self.chosen.macro_f1, 6),
            "best_cross_validated_macro_f1": round(self.best.macro_f1, 6),
            "best_candidate": self.best.candidate.describe(),
            "standard_error": round(self.standard_error, 6),
            "compared_rows": self.compared_rows,
            "candidates": [
                {**s.candidate.to_dict(), "cross_validated_macro_f1": round(s.macro_f1, 6)}
                for s in ranked
            ],
        }


@dataclass
class LinearHead:
    """One head's decision function over all its classes:
    scores = lexical @ lexical_coef.T + embedding @ dense_coef.T + fields @ fields_coef.T + bias."""

    lexical_coef: np.ndarray | None
    dense_coef: np.ndarray
    bias: np.ndarray
    fields_coef: np.ndarray | None = None

    def scores(self, features: Features) -> np.ndarray:
        out = features.dense @ self.dense_coef.T + self.bias
        if self.lexical_coef is not None and features.lexical is not None:
            out += np.asarray(features.lexical @ self.lexical_coef.T)
        if self.fields_coef is not None and features.fields is not None:
            out += np.asarray(features.fields @ self.fields_coef.T)
        return out


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


def fit_units(labels: dict[str, list[str]], rows: int, config: TrainConfig) -> int:
    """The work of `select_heads` plus two refits (`fit_head`) in units that cost about the
    same: one class of one head, one candidate, over all rows (liblinear trains one-vs-rest, in
    time ~ rows)."""
    settings = len(candidates(config, config.lexical))
    compared = min(rows, config.selection_rows)
    cross_fit_all = rows if rows > compared else 0  # the chosen one's, on every row
    work = settings * compared + cross_fit_all + 2 * rows
    return sum(len(names) for names in labels.values()) * work


def selection_sample(rows: int, config: TrainConfig) -> np.ndarray | None:
    """The rows the candidates are compared on when there are more than `selection_rows`: a
    seeded random sample, in row order (None: all rows)."""
    if rows <= config.selection_rows:
        return None
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(rows, size=config.selection_rows, replace=False))


def select_heads(
    features: Features,
    targets: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    config: TrainConfig,
    progress: FitProgress | None = None,
) -> dict[str, HeadSelection]:
    """Cross-fit every candidate of every head and choose one per head. With more rows than
    `selection_rows`, the candidates are compared on a sample of them, and the chosen one is
    cross-fitted on every row after (its out-of-fold scores are the head's)."""
    first = next(iter(labels))
    fold_of = fold_assignment(targets[first], config.folds, config.seed)
    folds = int(fold_of.max()) + 1
    jobs = config.num_threads or os.cpu_count() or 1
    grid = candidates(config, features.lexical is not None)
    sample = selection_sample(len(features), config)
    compared = len(features) if sample is None else len(sample)
    total = fit_units(labels, len(features), config) - 2 * len(features) * sum(
        len(n) for n in labels.values()
    )
    done, started = 0, time.monotonic()
    out = {}
    for head, names in labels.items():
        y = targets[head]
        scored, out_of_fold = [], {}
        # Candidates sharing a feature matrix are fitted together, every fold in parallel
        # (liblinear releases the GIL).
        groups: dict[tuple[str, float], list[Candidate]] = {}
        for candidate in grid:
            groups.setdefault((candidate.features, candidate.dense_weight), []).append(candidate)
        for group in groups.values():
            x = group[0].matrix(features)
            rows = slice(None) if sample is None else sample
            for result, scores in cross_fit(
                x[rows], y[rows], fold_of[rows], folds, len(names), group, config, jobs
            ):
                scored.append(result)
                out_of_fold[result.candidate] = scores
                logger.info(
                    "%s: %s -> out-of-fold macro-F1 %.4f",
                    head,
                    result.candidate.describe(),
                    result.macro_f1,
                )
            done += len(names) * len(group) * compared
            if progress is not None:
                progress(done, total, time.monotonic() - started)
        chosen, best, error = one_standard_error_choice(scored)
        logger.info(
            "%s: chose %s (out-of-fold macro-F1 %.4f; best %.4f, standard error %.4f: %s)%s",
            head,
            chosen.candidate.describe(),
            chosen.macro_f1,
            best.macro_f1,
            error,
            best.candidate.describe(),
            "" if sample is None else f", compared on {compared} of {len(features)} rows",
        )
        if sample is not None:
            x = chosen.candidate.matrix(features)
            [(chosen, scores)] = cross_fit(
                x, y, fold_of, folds, len(names), [chosen.candidate], config, jobs
            )
            out_of_fold[chosen.candidate] = scores
            done += len(names) * len(features)
            if progress is not None:
                progress(done, total, time.monotonic() - started)
        out[head] = HeadSelection(
            chosen,
            best,
            error,
            scored,
            out_of_fold[chosen.candidate].astype(np.float32),
            fold_rows=float(len(y) - len(y) / folds),
            compared_rows=None if sample is None else compared,
        )
    return out


def cross_fit(
    x: sparse.csr_matrix,
    y: np.ndarray,
    fold_of: np.ndarray,
    folds: int,
    classes: int,
    group: list[Candidate],
    config: TrainConfig,
    jobs: int,
) -> list[tuple[Scored, np.ndarray]]:
    """Each candidate of `group` (one feature matrix `x`) fitted on all folds but one, for
    every fold in parallel: its pooled and per-fold macro-F1 and its out-of-fold scores."""
    # Each fold's rows are sliced in its thread: only the fits running hold a copy of them, and
    # no more run at once than FIT_MEMORY_BYTES allows.
    per_fit = x.nnz * (folds - 1) / folds * BYTES_PER_VALUE
    jobs = max(1, min(jobs, int(FIT_MEMORY_BYTES // max(per_fit, 1))))
    fitted = Parallel(n_jobs=jobs, prefer="threads")(
        delayed(_fit_rows)(x, y, fold_of != fold, classes, candidate, config)
        for candidate in group
        for fold in range(folds)
    )
    out = []
    for i, candidate in enumerate(group):
        scores = np.zeros((len(y), classes))
        for fold in range(folds):
            rows = fold_of == fold
            coef, bias = fitted[i * folds + fold]
            scores[rows] = np.asarray(x[rows] @ coef.T) + bias
        predicted = scores.argmax(axis=1)
        per_fold = tuple(macro_f1(y[fold_of == f], predicted[fold_of == f]) for f in range(folds))
        out.append((Scored(candidate, macro_f1(y, predicted), per_fold), scores))
    return out


def fit_head(
    features: Features,
    y: np.ndarray,
    classes: int,
    candidate: Candidate,
    config: TrainConfig,
    fold_rows: float | None = None,
) -> LinearHead:
    """`candidate`'s SVM fitted on every row, as a decision function over `classes`. With
    `fold_rows` (the rows the fold models learned from), C is scaled by fold_rows / rows: each
    row then weighs against the regularisation as it did in the fold models, so the scores keep
    the scale the out-of-fold calibration and gate were fitted on."""
    scale = fold_rows / len(y) if fold_rows else 1.0
    fitted = replace(candidate, c=candidate.c * scale)
    coef, bias = _fit(candidate.matrix(features), y, classes, fitted, config)
    lexical_size = features.lexical.shape[1] if features.lexical is not None else 0
    dense_size = features.dense.shape[1]
    dense = np.zeros((classes, dense_size))
    lexical = np.zeros((classes, lexical_size)) if lexical_size else None
    # The coefficients in the matrix's block order: [lexical] [embedding] [fields].
    start = 0
    if candidate.features in ("lexical", "both"):
        lexical, start = coef[:, :lexical_size], lexical_size
    if candidate.features in ("embedding", "both"):
        dense = coef[:, start : start + dense_size] * candidate.dense_weight
        start += dense_size
    fields = coef[:, start:] if features.fields is not None else None
    return LinearHead(lexical, dense, bias, fields)


def _fit_rows(
    x: sparse.csr_matrix,
    y: np.ndarray,
    rows: np.ndarray,
    classes: int,
    candidate: Candidate,
    config: TrainConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """`_fit` on the `rows` (a mask) of x and y."""
    return _fit(x[rows], y[rows], classes, candidate, config)


def _fit(
    x: sparse.csr_matrix, y: np.ndarray, classes: int, candidate: Candidate, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """An SVM on (x, y) as coefficients and biases over all `classes`; a class absent from `y`
    gets a bias that keeps it from ever winning."""
    present = np.unique(y)
    coef = np.zeros((classes, x.shape[1]))
    bias = np.full(classes, ABSENT_CLASS_BIAS)
    if len(present) == 1:  # nothing to separate: that class always wins
        bias[present] = 0.0
        return coef, bias
    svm = LinearSVC(
        C=candidate.c,
        class_weight="balanced" if candidate.class_weighting else None,
        random_state=config.seed,
    )
    svm.fit(x, y)
    fitted_coef, fitted_bias = np.asarray(svm.coef_), np.asarray(svm.intercept_)
    if len(svm.classes_) == 2:  # one score for the second class against the first
        fitted_coef = np.vstack([np.zeros_like(fitted_coef), fitted_coef])
        fitted_bias = np.r_[0.0, fitted_bias]
    coef[svm.classes_] = fitted_coef
    bias[svm.classes_] = fitted_bias
    return coef, bias


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Macro-F1 over the classes present in `truth` (a class a fold lacks is not a zero), of
    class indices: scikit-learn's f1_score(labels=unique(truth), average="macro"), counted
    directly. The selection scores every candidate on every fold, and f1_score's checks of its
    input cost more than the fits of a small training."""
    if len(truth) == 0:
        return 0.0
    size = int(max(truth.max(), predicted.max())) + 1
    true_count = np.bincount(truth, minlength=size)
    predicted_count = np.bincount(predicted, minlength=size)
    hits = np.bincount(truth[truth == predicted], minlength=size)
    present = true_count > 0
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (true + predicted): 0 for a class never hit.
    return float(np.mean(2 * hits[present] / (true_count[present] + predicted_count[present])))


def install_head(model: TicketClassifier, head: str, fitted: LinearHead) -> None:
    """Write a decision function into the head's layer and its slice of the lexical table."""
    layer = model.heads[head]
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(fitted.dense_coef))
        layer.bias.copy_(torch.from_numpy(fitted.bias))
        if model.lexical_weights is not None:
            # The table's rows: the n-gram features, then the fields' (training/inference/model.py).
            start = model.label_offset(head)
            columns = slice(start, start + len(model.labels[head]))
            table = model.lexical_weights.weight
            lexical_rows = model.lexical_size
            for rows, coef in (
                (slice(0, lexical_rows), fitted.lexical_coef),
                (slice(lexical_rows, table.shape[0]), fitted.fields_coef),
            ):
                table[rows, columns] = torch.from_numpy(coef.T) if coef is not None else 0.0
