"""The design's usage line, as written: `make archive && torchserve --start --ncs --ts-config
config.properties`, then a prediction and the management API's versions.

It runs in a copy of the project's serving files (Makefile, config.properties, log4j2.xml, the
venv linked), so the repository's own model_store/ and key file stay untouched. TorchServe listens
on config.properties' fixed ports (8080-8082).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow  # make archive and the real TorchServe

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
# Where each way of training leaves its model (see the Makefile's NEWEST_MODEL).
LAYOUTS = {
    "make demo": "var/demo/models/v1",
    "make serve + POST /api/v1/train": "var/models/v1",
    "make train": "var/models/latest",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files the usage line reads, with the project's venv."""
    for name in ("Makefile", "config.properties", "log4j2.xml", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    # Older than the installed console script: make sees the venv as up to date.
    os.utime(tmp_path / "pyproject.toml", (0, 0))
    (tmp_path / ".venv").symlink_to(VENV)
    return tmp_path


def make(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=project, capture_output=True, text=True,
        timeout=600, env={**os.environ, "TMPDIR": str(project)},
    )  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_make_archive_finds_the_newest_model_of_each_workflow(
    project: Path, fast_model, layout: str
) -> None:
    older = project / "var/models/old"
    shutil.copytree(fast_model.model_dir, older)
    os.utime(older / "model.safetensors", (1, 1))
    shutil.copytree(fast_model.model_dir, project / LAYOUTS[layout])
    planned = make(project, "-n", "archive")
    assert planned.returncode == 0, planned.stderr
    assert f"ticketserve archive {LAYOUTS[layout]} --store model_store" in planned.stdout


def test_without_a_model_make_archive_says_what_to_do(project: Path) -> None:
    result = make(project, "archive")
    assert result.returncode != 0
    assert "no trained model under var/models or var/demo/models" in result.stderr


@pytest.fixture
def started(project: Path, fast_model) -> Iterator[Path]:
    shutil.copytree(fast_model.model_dir, project / LAYOUTS["make demo"])
    archived = make(project, "archive")
    assert archived.returncode == 0, archived.stderr
    assert (project / "model_store/ticket-v1.mar").is_file()
    torchserve = str(project / ".venv/bin/torchserve")
    env = {**os.environ, "TMPDIR": str(project)}
    start = [torchserve, "--start", "--ncs", "--ts-config", "config.properties"]
    # TorchServe keeps running in the background: its output goes to a file, not to a pipe that
    # would never close.
    with open(project / "torchserve.out", "wb") as out:
        try:
            subprocess.run(start, cwd=project, check=True, env=env, timeout=120, stdout=out,
                           stderr=subprocess.STDOUT)  # fmt: skip
            yield project
        finally:
            subprocess.run([torchserve, "--stop"], cwd=project, env=env, timeout=120, stdout=out)


def wait_ready(keys: dict, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {keys['management']['key']}"}
    while time.monotonic() < deadline:
        try:
            described = httpx.get("http://127.0.0.1:8081/models/ticket", headers=headers)
            if described.status_code == 200 and any(
                w["status"] == "READY" for w in described.json()[0]["workers"]
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError("TorchServe did not load ticket.mar in time")


def read_keys(key_file: Path) -> dict:
    """TorchServe's keys, once it has written the whole file (it appears empty at first)."""
    for _ in range(120):
        try:
            return json.loads(key_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(1)
    raise AssertionError(f"TorchServe wrote no keys to {key_file}")


def test_make_archive_then_torchserve_start_serves_the_model(started: Path) -> None:
    keys = read_keys(started / "key_file.json")
    wait_ready(keys)
    inference = {"Authorization": f"Bearer {keys['inference']['key']}"}
    answer = httpx.post(
        "http://127.0.0.1:8080/predictions/ticket",
        json={"ticket_data": "Mein Drucker druckt seit dem Update nicht mehr"},
        headers=inference,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["queue"]["label"] and answer.json()["model_version"] == "1"
    management = {"Authorization": f"Bearer {keys['management']['key']}"}
    versions = httpx.get("http://127.0.0.1:8081/models/ticket/all", headers=management).json()
    assert [v["modelVersion"] for v in versions] == ["1"]
    # without the key, TorchServe refuses
    refused = httpx.post("http://127.0.0.1:8080/predictions/ticket", json={"ticket_data": "x"})
    assert refused.status_code == 400
