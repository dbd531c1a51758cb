"""Shared fixtures: one real fine-tune of the bundled encoder, reused by every test that needs
a trained model (training, prediction, serving)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    epochs=5,
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
    """The bundled MiniLM fine-tuned on generated tickets (trained once per session)."""
    work = tmp_path_factory.mktemp("trained")
    data_path = work / "tickets.csv"
    write_sample_csv(data_path, rows=TEST_ROWS, seed=1)
    cache = work / "embeddings.sqlite"
    result = train(load_tickets(data_path), TEST_CONFIG, work / "model", embedding_cache=cache)
    return TrainedModel(
        model_dir=result.model_dir,
        data_path=data_path,
        metrics=result.metrics,
        probe_texts=PROBE_TEXTS,
        probe_predictions=result.predictor.predict(PROBE_TEXTS),
    )


@pytest.fixture(scope="session")
def fast_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The bundled MiniLM in fast mode (frozen, lexical branch, linear heads) on the same data."""
    work = tmp_path_factory.mktemp("fast")
    data_path = work / "tickets.csv"
    write_sample_csv(data_path, rows=TEST_ROWS, seed=1)
    result = train(
        load_tickets(data_path),
        FAST_CONFIG,
        work / "model",
        embedding_cache=work / "embeddings.sqlite",
    )
    return TrainedModel(
        model_dir=result.model_dir,
        data_path=data_path,
        metrics=result.metrics,
        probe_texts=PROBE_TEXTS,
        probe_predictions=result.predictor.predict(PROBE_TEXTS),
    )
