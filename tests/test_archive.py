"""Building .mar archives: contents, self-containment, versioned names, the CLI."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from training.cli import main
from training.export import archive
from training.export.archive import ArchiveError, archived_versions, build_archive, read_manifest
from training.inference import model as training_model

# What the archive's Python may import besides the standard library.
ALLOWED_IMPORTS = {
    "numpy", "safetensors", "torch", "transformers", "ts", "ticket_model", "ticket_requests",
    "ticket_cleaning", "ticket_similar",
    # training/text/cleaning.py's libraries (installed with the project, like torch)
    "inscriptis", "lxml", "mailparser_reply", "phonenumbers", "schwifty",
}  # fmt: skip


@pytest.fixture(scope="module")
def served_archive(trained_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    return build_archive(trained_model.model_dir, store)


@pytest.fixture
def fake_model_dir(tmp_path: Path) -> Path:
    """Files shaped like a model directory: enough for naming and versioning tests."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"not really weights")
    (model_dir / "labels.json").write_text('{"queue": ["a", "b"]}')
    (model_dir / "config.json").write_text("{}")
    return model_dir


def test_archive_holds_handler_model_code_weights_tokenizer_labels_and_config(
    served_archive: Path, trained_model
) -> None:
    assert served_archive.name == "ticket-v1.mar"
    with zipfile.ZipFile(served_archive) as mar:
        names = set(mar.namelist())
        model_code = mar.read("ticket_model.py")
        config = yaml.safe_load(mar.read("model-config.yaml"))
        labels = json.loads(mar.read("labels.json"))
    expected = {
        "ticket_handler.py", "ticket_requests.py", "ticket_model.py", "model-config.yaml",
        "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
        "labels.json", "ticket_model.json", "training_config.json", "metrics.json",
        "MAR-INF/MANIFEST.json",
    }  # fmt: skip
    assert expected <= names
    assert not [n for n in names if n.endswith((".png", ".md"))]
    # the model definition is training/inference/model.py, verbatim: parity by construction
    assert model_code == Path(training_model.__file__).read_bytes()
    assert labels == json.loads((trained_model.model_dir / "labels.json").read_text())
    assert config["batchSize"] == 16 and 0 < config["maxBatchDelay"] <= 50
    assert config["minWorkers"] == config["maxWorkers"] == 1
    assert config["responseTimeout"] > 0 and config["startupTimeout"] > 0
    assert config["handler"]["top_k"] == 3

    manifest = read_manifest(served_archive)["model"]
    assert manifest["modelName"] == "ticket"
    assert manifest["modelVersion"] == "1"
    assert manifest["handler"] == "ticket_handler.py"
    assert manifest["configFile"] == "model-config.yaml"


def test_archive_code_imports_nothing_from_the_project(served_archive: Path) -> None:
    stdlib = sys.stdlib_module_names
    with zipfile.ZipFile(served_archive) as mar:
        sources = {n: mar.read(n).decode() for n in mar.namelist() if n.endswith(".py")}
    assert set(sources) == {
        "ticket_handler.py",
        "ticket_requests.py",
        "ticket_model.py",
        "ticket_cleaning.py",
        "ticket_similar.py",
    }
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS | stdlib, f"{name} imports {roots}"


def test_unpacked_archive_classifies_with_the_project_out_of_reach(
    served_archive: Path, trained_model, tmp_path: Path
) -> None:
    """Load the handler from the unpacked archive alone, as a TorchServe worker would."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(served_archive) as mar:
        mar.extractall(unpacked)
    script = """
import json, sys
for blocked in ("training", "shim", "handlers"):
    sys.modules[blocked] = None  # any import of the project now fails
sys.path.insert(0, sys.argv[1])
from ts.context import Context, RequestProcessor
import ticket_handler

manifest = json.load(open(sys.argv[1] + "/MAR-INF/MANIFEST.json"))
config = {"handler": {"top_k": 3, "forward_batch_size": 128}}
context = Context("ticket", sys.argv[1], manifest, 2, None, "0.12.0", model_yaml_config=config)
handler = ticket_handler.TicketHandler()
handler.initialize(context)
texts = json.loads(sys.argv[2])
rows = [{"body": {"tickets": texts}}, {"body": {"nonsense": 1}}]
context.request_processor = [RequestProcessor({"body": {"content-type": "application/json"}})
                             for _ in rows]
bodies = handler.handle(rows, context)
print(json.dumps({"answers": [json.loads(b) for b in bodies],
                  "status": [context.get_response_status(i)[0] for i in range(len(rows))]}))
"""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(unpacked), json.dumps(trained_model.probe_texts)],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == [200, 400]
    assert "needs 'ticket_data'" in out["answers"][1]["message"]
    served = out["answers"][0]["predictions"]
    for got, want in zip(served, trained_model.probe_predictions, strict=True):
        for head, answer in want.items():
            assert got[head]["label"] == answer["label"]
            assert got[head]["confidence"] == pytest.approx(answer["confidence"], abs=1e-4)
        assert got["model_version"] == "1"


def test_versions_count_up_and_latest_follows(fake_model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = build_archive(fake_model_dir, store)
    second = build_archive(fake_model_dir, store)
    assert (first.name, second.name) == ("ticket-v1.mar", "ticket-v2.mar")
    assert (store / "ticket.mar").resolve() == second.resolve()
    assert read_manifest(store / "ticket.mar")["model"]["modelVersion"] == "2"

    named = build_archive(fake_model_dir, store, version="7")
    assert named.name == "ticket-v7.mar"
    assert build_archive(fake_model_dir, store).name == "ticket-v8.mar"
    assert archived_versions(store) == ["1", "2", "7", "8"]
    # nothing half-written or temporary is left next to the archives
    assert sorted(p.name for p in store.iterdir()) == [
        "ticket-v1.mar", "ticket-v2.mar", "ticket-v7.mar", "ticket-v8.mar", "ticket.mar",
    ]  # fmt: skip


def test_an_existing_version_is_never_overwritten(fake_model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    path = build_archive(fake_model_dir, store, version="3")
    before = path.read_bytes()
    with pytest.raises(ArchiveError, match="ticket-v3.mar already exists"):
        build_archive(fake_model_dir, store, version="3")
    assert path.read_bytes() == before


@pytest.mark.parametrize("version", ["a b", "../1", "-1", ""])
def test_bad_versions_are_refused(fake_model_dir: Path, tmp_path: Path, version: str) -> None:
    with pytest.raises(ArchiveError, match="version"):
        build_archive(fake_model_dir, tmp_path / "store", version=version)


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a trained model directory"):
        build_archive(tmp_path, tmp_path / "store")


def test_file_names_match_the_model_module() -> None:
    assert archive.WEIGHTS_FILE == training_model.WEIGHTS_FILE
    assert archive.LABELS_FILE == training_model.LABELS_FILE


def test_cli_archive(fake_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = tmp_path / "store"
    assert main(["archive", str(fake_model_dir), "--store", str(store), "--version", "4"]) == 0
    assert capsys.readouterr().out.strip() == str(store / "ticket-v4.mar")

    assert main(["archive", str(fake_model_dir), "--store", str(store), "--version", "4"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("ticketserve archive: error:") and "already exists" in error
    assert len(error.splitlines()) == 1
