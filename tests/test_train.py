"""A real fine-tune of the bundled MiniLM: the model learns, exports cleanly and reloads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import TEST_CONFIG

from training.config import TrainConfig
from training.encoders.base_models import resolve_base_model
from training.export.export import ExportError, export_model
from training.export.predict import Predictor
from training.fit.evaluate import evaluate_heads, expected_calibration_error
from training.fit.fine_tune import build_optimizer, length_grouped_batches
from training.inference.model import TicketClassifier
from training.text.data import load_tickets, parse_tickets
from training.text.sample_data import generate_tickets, write_sample_csv
from training.train import train


def test_trained_model_beats_the_majority_class_on_both_heads(trained_model, tmp_path):
    # Fresh tickets from another seed: a larger, independent check than the 30-ticket test split.
    write_sample_csv(tmp_path / "fresh.csv", rows=200, seed=99)
    fresh = load_tickets(tmp_path / "fresh.csv")
    predictor = Predictor.load(trained_model.model_dir)
    probs = predictor.predict_proba(fresh.frame["text"].tolist())
    metrics = evaluate_heads(
        {head: fresh.frame[head].tolist() for head in fresh.heads}, probs, predictor.labels
    )
    print({h: (m["accuracy"], m["majority_rate"]) for h, m in metrics.items()})
    assert metrics["queue"]["accuracy"] > metrics["queue"]["majority_rate"] + 0.4
    assert metrics["priority"]["accuracy"] > metrics["priority"]["majority_rate"] + 0.1
    for head in ("queue", "priority"):
        test = trained_model.metrics["test"][head]
        assert test["accuracy"] > test["majority_rate"], head


def test_model_directory_holds_everything_and_no_pickle(trained_model):
    names = {p.name for p in trained_model.model_dir.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "labels.json",
        "ticket_model.json",
        "training_config.json",
        "metrics.json",
        "report.md",
        "confusion_queue.png",
        "confusion_priority.png",
    } <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    labels = json.loads((trained_model.model_dir / "labels.json").read_text())
    assert list(labels) == ["queue", "priority"]
    assert len(labels["queue"]) == 7 and labels["priority"] == ["high", "low", "medium"]
    config = TrainConfig.from_json(trained_model.model_dir / "training_config.json")
    assert config.max_length == TEST_CONFIG.max_length


def test_metrics_file_has_every_measure_per_head(trained_model):
    metrics = json.loads((trained_model.model_dir / "metrics.json").read_text())
    for split in ("validation", "test"):
        for head in ("queue", "priority"):
            m = metrics[split][head]
            assert {
                "accuracy",
                "macro_f1",
                "weighted_f1",
                "ece",
                "per_class",
                "confusion_matrix",
                "majority_rate",
            } <= set(m)
            assert sum(map(sum, m["confusion_matrix"])) == m["examples"]
            assert set(m["per_class"]) == set(m["labels"])
    assert (
        metrics["splits"]["train"] + metrics["splits"]["validation"] + metrics["splits"]["test"]
        == 300
    )
    report = (trained_model.model_dir / "report.md").read_text()
    assert "## queue" in report and "![queue confusion matrix](confusion_queue.png)" in report


def test_predict_in_a_fresh_process_matches_the_end_of_training(trained_model):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "predict",
            str(trained_model.model_dir),
            *trained_model.probe_texts,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    fresh = json.loads(result.stdout)
    for before, after in zip(trained_model.probe_predictions, fresh, strict=True):
        for head in ("queue", "priority"):
            assert after[head]["label"] == before[head]["label"]
            assert after[head]["confidence"] == pytest.approx(before[head]["confidence"], abs=1e-4)


def test_predictor_output_shape(trained_model):
    [result] = Predictor.load(trained_model.model_dir).predict(["Mein Passwort ist abgelaufen"])
    assert set(result) == {"queue", "priority"}
    queue = result["queue"]
    assert queue["label"] == queue["top_k"][0][0]
    assert queue["confidence"] == queue["top_k"][0][1]
    assert len(queue["top_k"]) == 3
    assert [p for _, p in queue["top_k"]] == sorted((p for _, p in queue["top_k"]), reverse=True)
    assert Predictor.load(trained_model.model_dir).predict([]) == []


@pytest.mark.slow  # a second model
def test_a_dataset_with_only_queue_trains_one_head(tmp_path):
    frame = generate_tickets(60, seed=5)
    body = frame[["subject", "body", "queue"]].to_csv(index=False).encode()
    data = parse_tickets(body, "csv")
    config = TrainConfig(
        base_model="all-MiniLM-L6-v2", epochs=1, max_length=32, batch_size=16, seed=0
    )
    result = train(data, config, tmp_path / "model")
    assert json.loads((result.model_dir / "labels.json").read_text()).keys() == {"queue"}
    [answer] = Predictor.load(result.model_dir).predict(["printer jams"])
    assert set(answer) == {"queue"}


def test_export_refuses_to_overwrite_a_directory_that_is_not_a_model(trained_model, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    predictor = Predictor.load(trained_model.model_dir)
    with pytest.raises(ExportError, match="is not empty and holds no model"):
        export_model(predictor.model, predictor.tokenizer, TrainConfig(), {"test": {}}, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_length_grouped_batches_cover_every_example_once():
    lengths = [5, 80, 12, 40, 3, 77, 64, 9, 31, 50] * 7
    batches = list(length_grouped_batches(lengths, 8, torch.Generator().manual_seed(0)))
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(len(lengths)))
    assert all(
        [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
        for batch in batches
    )
    again = list(length_grouped_batches(lengths, 8, torch.Generator().manual_seed(0)))
    assert batches == again


def test_expected_calibration_error():
    import numpy as np

    confident_and_right = expected_calibration_error(np.array([0.95, 0.95]), np.array([1, 1]))
    assert confident_and_right == pytest.approx(0.05)
    confident_and_wrong = expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0]))
    assert confident_and_wrong == pytest.approx(0.9)


def test_layer_wise_learning_rates_decay_towards_the_embeddings():
    model = TicketClassifier.from_encoder(
        resolve_base_model("all-MiniLM-L6-v2"),
        {"queue": ["a", "b"]},
        dropout=0.1,
        max_length=32,
    )
    config = TrainConfig(learning_rate=1e-4, head_learning_rate=1e-3, layer_lr_decay=0.5)
    optimizer = build_optimizer(model, config)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    params = dict(model.named_parameters())
    layers = model.encoder.config.num_hidden_layers  # 6
    assert lr_of[id(params["heads.queue.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(params[f"encoder.encoder.layer.{layers - 1}.output.dense.weight"])] == (
        pytest.approx(1e-4)
    )
    assert lr_of[id(params["encoder.encoder.layer.0.output.dense.weight"])] == pytest.approx(
        1e-4 * 0.5 ** (layers - 1)
    )
    assert lr_of[id(params["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(
        1e-4 * 0.5**layers
    )
