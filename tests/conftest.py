"""Shared fixtures, each built once per test run (and shared by pytest-xdist's workers): a real
fine-tune of the bundled encoder, its fast-mode twin, and a service data directory in which the
real service stored tickets and trained version 1 through its API. Tests never change these:
modules that serve start their own service on a copy of the data directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_service import Service, tickets_csv
from filelock import FileLock
from postgres_server import PostgresServer

from training.config import TrainConfig
from training.encoders.base_models import CACHE_ENV
from training.text.data import Columns, load_tickets
from training.text.sample_data import write_sample_csv

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# `make test-fast` runs `-m "not slow"` with TEST_TIER=fast: no TorchServe, no training beyond
# the one tiny model, no converted e5 encoder, no child process that loads torch. Tests using
# these fixtures are marked slow here (the rest by hand); a test that starts the service or uses
# a shared model beyond the tiny one without the mark fails in the fast tier
# (api_service.Service.start, shared_model, e5_cache), so the tier cannot quietly grow slow.
SLOW_FIXTURES = {"trained_model", "fast_model", "trained_data_dir", "tiny_fields_model", "e5_cache"}
FAST_TIER = os.environ.get("TEST_TIER") == "fast"


# Handed out first, longest first (seconds of a whole run), whatever the random order: `--dist
# loadfile --no-loadscope-reorder` gives each process whole files in this order, so the last
# files handed out are short ones, and no process idles while the other ends a file of minutes.
# Only the suite's time depends on this list.
LONG_FILES = (
    *("test_bench.py", "test_bench_serving.py", "test_drift.py", "test_api.py"),
    *("test_console.py", "test_fuzz_api.py", "test_image.py", "test_hardening.py"),
    *("test_feedback.py", "test_cli.py", "test_replicas.py", "test_distributed.py"),
    *("test_heads_api.py", "test_backup.py", "test_monitoring.py", "test_classify_jobs.py"),
    *("test_label_issues_api.py", "test_fast_mode.py", "test_connectors_rt.py"),
    # and those of the fast tier: the tiny model's first user, then a file that needs no model
    # while it trains
    *("test_fields.py", "test_fuzz_loaders.py", "test_handler.py", "test_base_models.py"),
    *("test_encoder_precision.py", "test_layout.py", "test_upgrade.py", "test_cleaning.py"),
    *("test_e5_tokenizer.py", "test_heads.py", "test_store.py", "test_bulk.py"),
)


# Files that hold only slow tests: the fast tier does not import them (seconds of imports in each
# process), and the full run stops if one of them gains a test that is not slow.
SLOW_FILES = (
    *("test_api.py", "test_api_restart.py", "test_bench_serving.py", "test_classify_jobs.py"),
    *("test_connectors_rt.py", "test_connectors_zammad.py", "test_console.py"),
    *("test_console_connectors.py", "test_distributed.py", "test_fuzz_api.py"),
    *("test_hardening.py", "test_heads_api.py", "test_image.py", "test_import.py"),
    *("test_label_issues_api.py", "test_logs.py", "test_mail_api.py", "test_monitoring.py"),
    *("test_replicas.py", "test_torchserve.py", "test_usage_line.py"),
)


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    return True if FAST_TIER and collection_path.name in SLOW_FILES else None


# pytest-randomly shuffles before every plain implementation of this hook (its wrapper), and the
# `-m` deselection of the fast tier runs after this one: the slow marks land in time.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if item.path.name in SLOW_FILES and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(
                f"{item.nodeid} is not marked slow: mark it, or take its file out of "
                "conftest.SLOW_FILES (the fast tier does not collect those files)"
            )
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep theirs


E5 = "multilingual-e5-small"

# Small enough to train in a few minutes on 2 CPU cores, large enough to learn both heads.
TEST_ROWS = 300
TEST_CONFIG = TrainConfig(
    base_model="all-MiniLM-L6-v2",  # bundled; about twice as fast as the default encoder
    mode="full",  # the fine-tune (with the lexical branch); FAST_CONFIG covers the fast mode
    epochs=2,  # starts from the fast heads, so validation peaks at once; the 2nd tests the rest
    max_length=64,  # the generated tickets' length: measured, 128 learned the same, 25 % slower
    batch_size=16,
    learning_rate=2e-4,
    head_learning_rate=2e-3,
    freeze_embeddings=True,
    seed=1,
)
FAST_CONFIG = TrainConfig(base_model="all-MiniLM-L6-v2", mode="fast", max_length=128, seed=1)
# Seconds to train: for the fast tier's tests of code around a model (the handler, archives).
TINY_ROWS = 120
TINY_CONFIG = TrainConfig(base_model="all-MiniLM-L6-v2", mode="fast", max_length=32, seed=1)
# The tiny model that also reads a structured field: the generated tickets' language.
TINY_FIELDS_CONFIG = TrainConfig.from_dict(
    TINY_CONFIG.to_dict() | {"feature_columns": ["language"]}
)
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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The bundled MiniLM, fast mode, TINY_ROWS tickets of 32 tokens: a real model in seconds."""
    return shared_model(tmp_path_factory, "tiny", TINY_CONFIG, rows=TINY_ROWS)


@pytest.fixture(scope="session")
def tiny_fields_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The tiny model reading each ticket's language as a structured field."""
    return shared_model(tmp_path_factory, "tiny-fields", TINY_FIELDS_CONFIG, rows=TINY_ROWS)


def shared_model(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: TrainConfig, rows: int = TEST_ROWS
) -> TrainedModel:
    """`config` trained on `rows` test tickets once for the whole run."""
    if FAST_TIER and config != TINY_CONFIG:
        raise RuntimeError(f"the {name!r} model is not for the fast tier: mark the test slow")

    def build(work: Path) -> dict:
        from training.train import train  # torch: here, so xdist's controller starts without it

        data_path = work / "tickets.csv"
        write_sample_csv(data_path, rows=rows, seed=1)
        tickets = load_tickets(data_path, Columns(features=tuple(config.feature_columns or ())))
        result = train(tickets, config, work / "model", embedding_cache=work / "embeddings.sqlite")
        return {
            "model_dir": str(result.model_dir),
            "data_path": str(data_path),
            "metrics": result.metrics,
            "probe_predictions": result.predictor.predict(PROBE_TEXTS),
        }

    saved = build_once(tmp_path_factory, name, build)
    return TrainedModel(
        model_dir=Path(saved["model_dir"]),
        data_path=Path(saved["data_path"]),
        metrics=saved["metrics"],
        probe_texts=PROBE_TEXTS,
        probe_predictions=saved["probe_predictions"],
    )


# The service's first version: generated tickets, trained in fast mode with the tests' tiny
# settings (api_service.TINY_TRAINING), through the real API.
SERVICE_ROWS = 150
SERVICE_TRAINING = {"mode": "fast", "max_length": 64}


@pytest.fixture(scope="session")
def trained_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped service's data directory: SERVICE_ROWS tickets uploaded, version 1 trained and
    the default. Start a service on `copy_data_dir(trained_data_dir, ...)`, never on this one."""

    def build(work: Path) -> dict:
        service = Service(work / "var")
        service.start()
        try:
            assert service.upload_csv(tickets_csv(SERVICE_ROWS, seed=5)).status_code == 201
            job = service.post("/api/v1/train", json=SERVICE_TRAINING)
            assert job.status_code == 202, job.text
            done = service.wait_job(job.json()["job_id"])
            assert done["status"] == "succeeded" and done["model_version"] == 1, done
            service.wait_ready()
        finally:
            code = service.stop()
            service.cleanup()
        assert code == 0, service.log()
        return {"data_dir": str(service.data_dir)}

    return Path(build_once(tmp_path_factory, "service", build)["data_dir"])


def build_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], dict]
) -> dict:
    """Run `build(folder)` once for the whole run and return what it recorded: with
    pytest-xdist each worker is a session of its own, so the first one builds under a file lock
    and the others read its record."""
    root = run_folder(tmp_path_factory)
    work = root / f"shared-{name}"
    record = work / "built.json"
    with FileLock(root / f"shared-{name}.lock"):
        if not record.is_file():
            work.mkdir(exist_ok=True)
            record.write_text(json.dumps(build(work)))
    return json.loads(record.read_text())


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's folder, shared by pytest-xdist's workers (each is a session of its own)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session", autouse=True)
def run_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run's own ticketserve cache (TICKETSERVE_CACHE) for the tests and every process they
    start, shared by the workers: the user's cache is neither read nor written, and the e5
    encoder is converted once per run, for the tests and the benchmarks' smoke runs alike."""
    cache = run_folder(tmp_path_factory) / "cache"
    cache.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(cache))
        yield cache


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory: pytest.TempPathFactory, run_cache: Path) -> Path:
    """The run's cache folder once it holds multilingual-e5-small (its conversion takes
    seconds), where the cache keeps it: `<cache>/base-models/<name>`."""
    from training.encoders.base_models import prepare_base_model

    if FAST_TIER:
        raise RuntimeError("the e5 encoder is not for the fast tier: mark the test slow")

    def build(_: Path) -> dict:
        prepare_base_model(E5, run_cache / "base-models" / E5)
        return {"cache": str(run_cache)}

    return Path(build_once(tmp_path_factory, "e5", build)["cache"])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (each xdist worker its own)."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The registry's database, once each: None (SQLite in the data directory) and a new
    PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").database()
