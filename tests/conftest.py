"""Shared fixtures: one real fine-tune of the bundled encoder, reused by every test that needs
a trained model (training, prediction, serving)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from training.config import TrainConfig
from training.data import load_tickets
from training.sample_data import write_sample_csv
from training.train import train

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Small enough to train in a few minutes on 2 CPU cores, large enough to learn both heads.
TEST_ROWS = 300
TEST_CONFIG = TrainConfig(
    base_model="all-MiniLM-L6-v2",  # bundled; about twice as fast as the default encoder
    mode="full",  # the fine-tune (with the lexical branch); FAST_CONFIG covers the fast mode
    epochs=3,  # starts from the fast heads: 3 epochs learn both heads well past the majority
    max_length=128,
    batch_size=16,
    learning_rate=2e-4,
    head_learning_rate=2e-3,
    freeze_embeddings=True,
    seed=1,
)
FAST_CONFIG = TrainConfig(base_model="all-MiniLM-L6-v2", mode="fast", max_length=128, seed=1)
PROBE_TEXTS = [
    "Mein Drucker druckt seit dem Update nicht mehr",
    "URGENT: nobody in the office can log in to the portal, production is down",
    "Could you send me a quote for 20 more licences? No rush.",
    "Ich wurde für die Rechnung RE-2291 doppelt belastet.",
]


@dataclass
class TrainedModel:
    model_dir: Path
    data_path: Path
    metrics: dict
    probe_texts: list[str]
    probe_predictions: list[dict]  # from the in-memory model at the end of training


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The bundled MiniLM fine-tuned on generated tickets (trained once per test run)."""
    return shared_model(tmp_path_factory, "trained", TEST_CONFIG)


@pytest.fixture(scope="session")
def fast_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The bundled MiniLM in fast mode (frozen, lexical branch, linear heads) on the same data."""
    return shared_model(tmp_path_factory, "fast", FAST_CONFIG)


def shared_model(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: TrainConfig
) -> TrainedModel:
    """Train `config` on the test tickets once for the whole run: with pytest-xdist each worker
    is a session of its own, so the first one trains under a file lock and the others reuse it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by its workers
    work = root / f"shared-{name}"
    record = work / "trained.json"
    with FileLock(root / f"shared-{name}.lock"):
        if not record.is_file():
            work.mkdir(exist_ok=True)
            data_path = work / "tickets.csv"
            write_sample_csv(data_path, rows=TEST_ROWS, seed=1)
            tickets = load_tickets(data_path)
            cache = work / "embeddings.sqlite"
            result = train(tickets, config, work / "model", embedding_cache=cache)
            saved = {
                "model_dir": str(result.model_dir),
                "data_path": str(data_path),
                "metrics": result.metrics,
                "probe_predictions": result.predictor.predict(PROBE_TEXTS),
            }
            record.write_text(json.dumps(saved))
    saved = json.loads(record.read_text())
    return TrainedModel(
        model_dir=Path(saved["model_dir"]),
        data_path=Path(saved["data_path"]),
        metrics=saved["metrics"],
        probe_texts=PROBE_TEXTS,
        probe_predictions=saved["probe_predictions"],
    )
