"""Fast mode end to end on the bundled MiniLM: lexical branch, embedding cache, calibration,
the auto-routing gate, and model directories from before the lexical branch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_CONFIG

from training.config import TrainConfig
from training.errors import ConfigError
from training.export.predict import Predictor
from training.fit.calibration import threshold_for
from training.fit.evaluate import expected_calibration_error
from training.inference.model import (
    LEXICAL_FILE,
    MODEL_FILE,
    TicketClassifier,
    predict_logits,
    probabilities,
)
from training.text.data import load_tickets
from training.text.sample_data import generate_tickets, write_sample_csv
from training.train import train


def test_fast_mode_learns_both_heads_with_a_lexical_branch(fast_model, tmp_path):
    metrics = fast_model.metrics
    assert metrics["mode"]["mode"] == "fast" and metrics["epochs_run"] == 0
    assert metrics["lexical_features"] > 1000
    assert (fast_model.model_dir / LEXICAL_FILE).is_file()
    write_sample_csv(tmp_path / "fresh.csv", rows=200, seed=99)
    fresh = load_tickets(tmp_path / "fresh.csv")
    predictor = Predictor.load(fast_model.model_dir)
    answers = predictor.predict(fresh.frame["text"].tolist())
    for head, over_majority in (("queue", 0.4), ("priority", 0.1)):
        truth = fresh.frame[head].tolist()
        accuracy = np.mean([a[head]["label"] == t for a, t in zip(answers, truth, strict=True)])
        majority = max(truth.count(v) for v in set(truth)) / len(truth)
        assert accuracy > majority + over_majority, head
        assert all(isinstance(a[head]["auto_route"], bool) for a in answers)


def test_lexical_branch_round_trips_through_export(fast_model):
    """export -> load -> the same probabilities as the in-memory model at the end of training."""
    fresh = Predictor.load(fast_model.model_dir).predict(fast_model.probe_texts)
    for before, after in zip(fast_model.probe_predictions, fresh, strict=True):
        for head in ("queue", "priority"):
            assert after[head]["label"] == before[head]["label"]
            assert after[head]["auto_route"] == before[head]["auto_route"]
            for (name_a, p_a), (name_b, p_b) in zip(
                after[head]["top_k"], before[head]["top_k"], strict=True
            ):
                assert name_a == name_b and p_a == pytest.approx(p_b, abs=1e-6)
    names = {p.name for p in fast_model.model_dir.iterdir()}
    assert {"lexical.json", "reliability_queue.png", "reliability_priority.png"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]


def test_calibration_lowers_ece_on_fresh_tickets(fast_model, tmp_path):
    write_sample_csv(tmp_path / "fresh.csv", rows=300, seed=42)
    fresh = load_tickets(tmp_path / "fresh.csv")
    predictor = Predictor.load(fast_model.model_dir)
    logits = predict_logits(predictor.model, predictor.tokenizer, fresh.frame["text"].tolist())
    for head, names in predictor.labels.items():
        truth = np.array([names.index(v) for v in fresh.frame[head]])
        eces = []
        for temperature in (None, predictor.model.temperature):
            probs = probabilities({head: logits[head]}, temperature)[head]
            eces.append(
                expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == truth)
            )
        print(head, eces)
        assert eces[1] < eces[0], head
    report = (fast_model.model_dir / "report.md").read_text()
    assert "![queue reliability diagram](reliability_queue.png)" in report
    for head in ("queue", "priority"):
        test = fast_model.metrics["test"][head]
        assert {"ece", "ece_uncalibrated", "gate", "reliability"} <= set(test)


def test_gate_threshold_is_where_the_lower_bound_reaches_the_target(fast_model):
    metrics = fast_model.metrics
    for head in ("queue", "priority"):
        calibration = metrics["calibration"][head]
        curve = calibration["validation_curve"]
        threshold = calibration["threshold"]
        assert threshold == threshold_for(curve, 0.9)
        assert calibration["status"] == ("open" if threshold is not None else "closed")
        assert calibration["confidence_level"] == 0.95
        if threshold is None:
            assert head == "priority", "the queue of these tickets is learned well: its gate opens"
            assert all(bound < 0.9 for _, _, _, bound in curve)
            assert calibration["best_reachable"]["precision_lower_bound"] < 0.9
            continue
        point = next(p for p in curve if p[0] == threshold)
        assert calibration["precision_lower_bound"] == point[3] >= 0.9
        assert calibration["expected_coverage"] == point[2]
        assert metrics["validation"][head]["gate"]["precision"] >= 0.9
        # The lowest such threshold: every lower one's bound misses the target.
        assert all(b < 0.9 for t, _, _, b in curve if t < threshold)
        settings = json.loads((fast_model.model_dir / MODEL_FILE).read_text())
        assert settings["gate"][head] == {"threshold": threshold, "target_precision": 0.9}
        assert settings["temperature"][head] == pytest.approx(calibration["temperature"], 1e-5)
    report = (fast_model.model_dir / "report.md").read_text()
    assert report.count("Auto-routing: the gate is") == 2
    assert report.count("Fitted with: ") == 2


@pytest.mark.slow  # two fast-mode trainings
def test_second_run_embeds_only_the_new_tickets(tmp_path):
    old, new = generate_tickets(120, seed=11), generate_tickets(20, seed=12)
    old.to_csv(tmp_path / "old.csv", index=False)
    pd.concat([old, new]).to_csv(tmp_path / "all.csv", index=False)
    first = load_tickets(tmp_path / "old.csv")
    frame = first.frame
    splits = {"train": frame.iloc[:90], "validation": frame.iloc[90:105], "test": frame.iloc[105:]}
    cache = tmp_path / "cache.sqlite"
    run1 = train(first, FAST_CONFIG, tmp_path / "m1", splits=splits, embedding_cache=cache)
    # Fast mode embeds the test split too: the shipped heads learn it after the test report.
    assert run1.metrics["embeddings"] == {"computed": 120, "cached": 0}

    both = load_tickets(tmp_path / "all.csv")
    known = set(frame["text"])
    added = both.frame[~both.frame["text"].isin(known)]
    grown = {**splits, "train": pd.concat([splits["train"], added])}
    run2 = train(both, FAST_CONFIG, tmp_path / "m2", splits=grown, embedding_cache=cache)
    assert len(added) > 10
    assert run2.metrics["embeddings"] == {"computed": len(added), "cached": 120}

    run3 = train(both, FAST_CONFIG, tmp_path / "m3", splits=grown, embedding_cache=cache)
    assert run3.metrics["embeddings"]["computed"] == 0
    # Cached embeddings give the model that fresh ones give.
    probe = ["Mein Drucker druckt nicht", "Invoice charged twice"]
    p2, p3 = (Predictor.load(r.model_dir).predict_proba(probe) for r in (run2, run3))
    for head in p2:
        assert np.allclose(p2[head], p3[head], atol=1e-5)


def test_a_model_directory_from_before_the_lexical_branch_still_loads(fast_model, tmp_path):
    """Encoder-only directories (no lexical.json, the old ticket_model.json) load as before."""
    write_sample_csv(tmp_path / "t.csv", rows=120, seed=2)
    config = TrainConfig.from_dict({**FAST_CONFIG.to_dict(), "lexical": False})
    result = train(load_tickets(tmp_path / "t.csv"), config, tmp_path / "m")
    old = tmp_path / "old"
    shutil.copytree(result.model_dir, old)
    settings = json.loads((old / MODEL_FILE).read_text())
    assert not (old / LEXICAL_FILE).exists() and settings["lexical"] is False
    (old / MODEL_FILE).write_text(
        json.dumps({k: settings[k] for k in ("dropout", "max_length", "pooling", "heads")})
    )
    model = TicketClassifier.load(old)
    assert model.lexical is None and model.normalize is False
    assert model.temperature == {"queue": 1.0, "priority": 1.0} and model.gate == {}
    [answer] = Predictor.load(old).predict(["printer jams"])
    assert "auto_route" not in answer["queue"] and answer["queue"]["label"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "turbo"}, "mode must be one of auto, fast, full, got 'turbo'"),
        ({"lexical_min_df": 0}, "lexical_min_df must be an integer in [1, 1000], got 0"),
        ({"lexical_max_features": 10**9}, "lexical_max_features must be an integer in"),
        ({"linear_c": [0]}, "linear_c must be a list of 1 to 8 numbers"),
        ({"dense_weight": "2"}, "dense_weight must be a list of 1 to 8 numbers"),
        ({"target_precision": 1.5}, "target_precision must be a number in (0, 1], got 1.5"),
        ({"class_weighting": "yes"}, "class_weighting must be true, false or null"),
        ({"lexical": False, "dense_weight": [0]}, "dense_weight needs a value above 0"),
    ],
)
def test_bad_mode_and_lexical_settings_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        TrainConfig.from_dict(values)


def test_fast_mode_with_an_encoder_that_cannot_load(tmp_path):
    write_sample_csv(tmp_path / "t.csv", rows=60, seed=2)
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_text("{}")
    config = TrainConfig(base_model=str(tmp_path / "enc"), mode="fast")
    with pytest.raises(ConfigError, match="cannot load base model"):
        train(load_tickets(tmp_path / "t.csv"), config, tmp_path / "m")
