"""Fast mode's head selection: the candidate families, the one-standard-error rule, the refit on
every row, and the decision function that lands in the model's layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST_CONFIG
from hypothesis import given
from hypothesis import strategies as st
from scipy import sparse
from sklearn.metrics import f1_score

from training.config import TrainConfig
from training.export.predict import Predictor
from training.fit.heads import (
    BASELINE_C,
    Candidate,
    Features,
    LinearHead,
    Scored,
    candidates,
    cross_fit,
    fit_head,
    fold_assignment,
    install_head,
    macro_f1,
    one_standard_error_choice,
    paired_standard_error,
    select_heads,
)
from training.fit.lexical import lexical_matrix
from training.inference.model import model_inputs
from training.text.data import load_tickets
from training.text.sample_data import generate_tickets
from training.train import train


def test_candidates_hold_lexical_alone_embedding_alone_and_both_simplest_first():
    config = TrainConfig(linear_c=[1.0, 0.3], dense_weight=[2.0, 0.0, 4.0], class_weighting=None)
    grid = candidates(config, has_lexical=True)
    families = {c.features for c in grid}
    assert families == {"lexical", "embedding", "both"}
    # The baseline's own recipe comes first, whatever linear_c holds.
    assert grid[0] == Candidate("lexical", BASELINE_C, False, 0.0) and grid[0].is_baseline_recipe
    assert "the baseline recipe" in grid[0].describe()
    assert [c.complexity() for c in grid] == sorted(c.complexity() for c in grid)
    # 0 as an embedding weight means "lexical alone", already there: not a candidate twice.
    assert {c.dense_weight for c in grid if c.features != "lexical"} == {2.0, 4.0}
    assert len(grid) == 1 + 2 * 2 * (1 + 2 + 2)
    assert {c.features for c in candidates(config, has_lexical=False)} == {"embedding"}
    forced = TrainConfig.from_dict({**config.to_dict(), "class_weighting": True})
    assert all(c.class_weighting for c in candidates(forced, has_lexical=True))


def _scored(features: str, folds: list[float], c: float = 1.0) -> Scored:
    candidate = Candidate(features, c, False, 0.0 if features == "lexical" else 2.0)  # type: ignore[arg-type]
    return Scored(candidate, float(np.mean(folds)), tuple(folds))


def _recipe(folds: list[float]) -> Scored:
    return Scored(Candidate("lexical", BASELINE_C, False), float(np.mean(folds)), tuple(folds))


def test_the_best_replaces_the_baseline_recipe_only_beyond_one_paired_standard_error():
    recipe = _recipe([0.70, 0.78, 0.74, 0.66, 0.72])
    # Folds differ a lot (the best's own standard error is 0.02) but it leads on every fold by
    # about 0.02: the paired standard error is small, the lead is real.
    steady = _scored("both", [0.72, 0.80, 0.755, 0.68, 0.745])
    assert steady.standard_error() > 0.015
    assert paired_standard_error(steady, recipe) < 0.003
    chosen, best, error = one_standard_error_choice([recipe, steady])
    assert chosen is best is steady and error == paired_standard_error(steady, recipe)
    # The same mean lead, won on some folds and lost on others: the recipe stays.
    erratic = _scored("both", [0.76, 0.74, 0.80, 0.64, 0.74])
    assert erratic.macro_f1 > recipe.macro_f1
    chosen, best, error = one_standard_error_choice([erratic, recipe])
    assert chosen is recipe and best is erratic
    assert erratic.macro_f1 - recipe.macro_f1 <= error
    # A middle way close to the best is no option: the recipe or the best.
    middle = _scored("lexical", [0.715, 0.795, 0.75, 0.675, 0.74], c=0.1)
    assert one_standard_error_choice([recipe, middle, steady])[0] is steady
    # A tie goes to the recipe; without the recipe (balanced weights forced), the best.
    assert one_standard_error_choice([_scored("both", recipe.fold_macro_f1), recipe])[0] is recipe
    assert one_standard_error_choice([middle, steady])[0] is steady


def _blocks(signal_in: str, rows: int = 300, seed: int = 0) -> tuple[Features, np.ndarray]:
    """Three classes; the class shows in one block only, the other block is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    noise_lexical = sparse.random(rows, 200, density=0.05, random_state=seed, format="csr")
    dense = rng.normal(size=(rows, 16))
    if signal_in == "embedding":
        dense[np.arange(rows), y] += 2.5
        lexical = noise_lexical
    else:
        signal = sparse.csr_matrix((np.full(rows, 1.0), (np.arange(rows), y)), shape=(rows, 200))
        lexical = (noise_lexical + signal).tocsr()
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    return Features(lexical, dense), y


@pytest.mark.parametrize("signal_in", ["lexical", "embedding"])
def test_selection_picks_the_block_that_carries_the_labels(signal_in):
    features, y = _blocks(signal_in)
    labels = {"queue": ["a", "b", "c"]}
    config = TrainConfig(linear_c=[0.3, 1.0], dense_weight=[2.0, 4.0], folds=5, seed=3)
    selection = select_heads(features, {"queue": y}, labels, config)["queue"]
    assert selection.candidate.features == signal_in
    assert selection.chosen.macro_f1 > 0.9
    # Every candidate was scored out of fold, the lexical-only ones among them.
    assert len(selection.scored) == len(candidates(config, True))
    assert selection.out_of_fold.shape == (300, 3)
    summary = selection.to_dict()
    assert summary["features"] == signal_in and len(summary["candidates"]) == len(selection.scored)


def test_with_more_rows_than_selection_rows_the_choice_is_made_on_a_sample():
    """The candidates are compared on `selection_rows` rows, as if those were all the data;
    the chosen one alone is then cross-fitted on every row, whose scores the head keeps."""
    features, y = _blocks("lexical", rows=1200)
    labels = {"queue": ["a", "b", "c"]}
    config = TrainConfig(linear_c=[0.3, 1.0], dense_weight=[2.0], folds=5, seed=3)
    sampled = TrainConfig.from_dict({**config.to_dict(), "selection_rows": 500})
    whole = select_heads(features, {"queue": y}, labels, config)["queue"]
    selection = select_heads(features, {"queue": y}, labels, sampled)["queue"]
    assert whole.compared_rows is None and selection.compared_rows == 500
    assert selection.to_dict()["compared_rows"] == 500
    # The comparison is the one the sample alone gets (same rows, same folds).
    first = np.sort(np.random.default_rng(3).choice(1200, size=500, replace=False))
    folds = fold_assignment(y, 5, 3)[first]
    alone = [s.macro_f1 for s in selection.scored]
    scored = [
        result.macro_f1
        for group in ([c] for c in candidates(config, True))
        for result, _ in cross_fit(
            group[0].matrix(features)[first], y[first], folds, 5, 3, group, config, 1
        )
    ]
    assert alone == pytest.approx(scored)
    # The chosen candidate's out-of-fold scores cover every row, from a cross-fit on all.
    assert selection.out_of_fold.shape == (1200, 3)
    assert (np.abs(selection.out_of_fold).sum(axis=1) > 0).all()
    [(on_all, scores)] = cross_fit(
        selection.candidate.matrix(features), y, fold_assignment(y, 5, 3), 5, 3,
        [selection.candidate], config, 1,
    )  # fmt: skip
    assert selection.chosen.macro_f1 == pytest.approx(on_all.macro_f1)
    assert np.allclose(selection.out_of_fold, scores, atol=1e-5)
    assert selection.chosen.macro_f1 > 0.9 and selection.candidate.features == "lexical"


def test_the_refit_weighs_each_row_as_the_fold_models_did():
    """C scales by fold rows / rows: the refit's decision function is the SVM at that C."""
    features, y = _blocks("lexical")
    config = TrainConfig(seed=3)
    candidate = Candidate("both", 1.0, False, 2.0)
    scaled = fit_head(features, y, 3, candidate, config, fold_rows=240)
    direct = fit_head(features, y, 3, Candidate("both", 0.8, False, 2.0), config)
    assert np.allclose(scaled.scores(features), direct.scores(features))
    plain = fit_head(features, y, 3, candidate, config)
    assert not np.allclose(plain.scores(features), direct.scores(features))


def test_an_installed_head_computes_its_decision_function_in_the_model(fast_model):
    """install_head writes W_lexical, W_dense and b so that the torch model's logits are the
    linear head's scores on the same features."""
    predictor = Predictor.load(fast_model.model_dir)
    model = predictor.model
    texts = fast_model.probe_texts
    names = model.labels["queue"]
    rng = np.random.default_rng(0)
    fitted = LinearHead(
        rng.normal(size=(len(names), model.lexical.size)),
        rng.normal(size=(len(names), model.heads["queue"].in_features)),
        rng.normal(size=len(names)),
    )
    install_head(model, "queue", fitted)
    inputs = model_inputs(model, predictor.tokenizer, texts, torch.device("cpu"))
    with torch.inference_mode():
        pooled = model.pool(inputs["input_ids"], inputs["attention_mask"]).numpy()
        logits = model(**inputs)["queue"].numpy()
    expected = fitted.scores(Features(lexical_matrix(model.lexical, texts), pooled))
    assert np.allclose(logits, expected, atol=1e-3)


@pytest.mark.slow  # a fast-mode training
def test_the_shipped_heads_learn_the_test_rows_after_the_test_report(tmp_path):
    """The test split is scored by heads that never saw it; the exported model then learns it
    too (a word that only test tickets contain enters its vocabulary)."""
    frame = generate_tickets(160, seed=21)
    frame.loc[140:, "body"] = frame.loc[140:, "body"] + " Zorblax-Modul betroffen."
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_tickets(tmp_path / "t.csv")
    rows = data.frame
    splits = {"train": rows.iloc[:120], "validation": rows.iloc[120:140], "test": rows.iloc[140:]}
    assert rows.iloc[:140]["text"].str.contains("Zorblax").sum() == 0

    shipped = train(data, FAST_CONFIG, tmp_path / "all", splits=splits)
    assert shipped.metrics["learned_rows"] == len(rows)
    assert shipped.metrics["splits"] == {"train": 120, "validation": 20, "test": len(rows) - 140}
    terms = {t for block in shipped.predictor.model.lexical.blocks for t in block["terms"]}
    assert "zorblax" in terms

    held = train(data, FAST_CONFIG, tmp_path / "held", splits=splits, final_fit=False)
    assert held.metrics["learned_rows"] == 140
    terms = {t for block in held.predictor.model.lexical.blocks for t in block["terms"]}
    assert "zorblax" not in terms
    # Both report the same test split, scored by the same held-out heads.
    for head in ("queue", "priority"):
        assert shipped.metrics["test"][head]["macro_f1"] == held.metrics["test"][head]["macro_f1"]
    # Without the final fit the returned model is the one the test metrics describe.
    test_texts = pd.Series(splits["test"]["text"]).tolist()
    probs = held.predictor.predict_proba(test_texts)
    for head, logits in held.test_logits.items():
        scaled = logits / held.predictor.model.temperature[head]
        expected = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
        assert np.allclose(probs[head], expected, atol=1e-4)


@given(
    st.integers(1, 6).flatmap(
        lambda classes: st.lists(
            st.tuples(st.integers(0, classes - 1), st.integers(0, classes - 1)),
            min_size=1,
            max_size=60,
        )
    )
)
def test_macro_f1_is_scikit_learns_over_the_classes_present(pairs: list[tuple[int, int]]) -> None:
    truth, predicted = (np.array(column, dtype=np.int64) for column in zip(*pairs, strict=True))
    expected = f1_score(truth, predicted, labels=np.unique(truth), average="macro", zero_division=0)
    assert macro_f1(truth, predicted) == pytest.approx(expected, abs=1e-12)
