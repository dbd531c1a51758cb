"""Fast mode's head selection: the candidate families, the one-standard-error rule, the refit on
every row, and the decision function that lands in the model's layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST_CONFIG
from scipy import sparse

from training.config import TrainConfig
from training.data import load_tickets
from training.heads import (
    BASELINE_C,
    Candidate,
    Features,
    LinearHead,
    Scored,
    candidates,
    fit_head,
    install_head,
    one_standard_error_choice,
    select_heads,
)
from training.lexical import lexical_matrix
from training.model import model_inputs
from training.predict import Predictor
from training.sample_data import generate_tickets
from training.train import train


def test_candidates_hold_lexical_alone_embedding_alone_and_both_simplest_first():
    config = TrainConfig(linear_c=[1.0, 0.3], dense_weight=[2.0, 0.0, 4.0], class_weighting=None)
    grid = candidates(config, has_lexical=True)
    families = {c.features for c in grid}
    assert families == {"lexical", "embedding", "both"}
    # The baseline's own recipe comes first, whatever linear_c holds.
    assert grid[0] == Candidate("lexical", BASELINE_C, False, 0.0) and grid[0].level() == 0
    assert "the baseline recipe" in grid[0].describe()
    assert [c.complexity() for c in grid] == sorted(c.complexity() for c in grid)
    # 0 as an embedding weight means "lexical alone", already there: not a candidate twice.
    assert {c.dense_weight for c in grid if c.features != "lexical"} == {2.0, 4.0}
    assert len(grid) == 1 + 2 * 2 * (1 + 2 + 2)
    assert {c.features for c in candidates(config, has_lexical=False)} == {"embedding"}
    forced = TrainConfig.from_dict({**config.to_dict(), "class_weighting": True})
    assert all(c.class_weighting for c in candidates(forced, has_lexical=True))


def _scored(features: str, macro_f1: float, folds: list[float], c: float = 1.0) -> Scored:
    return Scored(Candidate(features, c, False, 2.0), macro_f1, tuple(folds))  # type: ignore[arg-type]


def test_one_standard_error_rule_takes_the_simpler_feature_set_within_the_noise():
    best = _scored("both", 0.80, [0.76, 0.84, 0.78, 0.82, 0.80])  # standard error 0.0141
    close = _scored("lexical", 0.79, [0.75, 0.83, 0.77, 0.81, 0.79])
    weaker_close = _scored("lexical", 0.787, [0.75, 0.83, 0.77, 0.81, 0.79], c=0.1)
    chosen, top = one_standard_error_choice([best, weaker_close, close])
    assert top is best and chosen is close  # the simpler set, and its best candidate
    far = _scored("lexical", 0.75, [0.71, 0.79, 0.73, 0.77, 0.75])
    embedding = _scored("embedding", 0.77, [0.73, 0.81, 0.75, 0.79, 0.77])
    assert one_standard_error_choice([best, far, embedding])[0] is best
    # Within the best's own feature set the score decides, not the smaller C.
    small_c = _scored("both", 0.795, [0.76, 0.84, 0.78, 0.82, 0.80], c=0.1)
    assert one_standard_error_choice([small_c, best, far])[0] is best
    # The baseline recipe is the simplest of all: within the noise of the best, it is taken.
    recipe = Scored(Candidate("lexical", BASELINE_C, False), 0.788, (0.75, 0.83, 0.77, 0.81, 0.78))
    assert one_standard_error_choice([best, close, recipe])[0] is recipe
    # A tie goes to the simpler set as well, even with no spread at all.
    flat = [_scored("both", 0.7, [0.7] * 5), _scored("embedding", 0.7, [0.7] * 5)]
    assert one_standard_error_choice(flat)[0].candidate.features == "embedding"


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
