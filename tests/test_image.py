"""The container image, built for real and without a registry (`scripts/image.sh`: a debootstrap
base, `podman import`, `podman build` of the Containerfile), then run as Kubernetes runs it
(read-only root, no capabilities, its data dir a volume): it answers its health check, trains on
generated tickets through the API with its own TorchServe, classifies, and stops cleanly on
SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_service import TERMINAL, TINY_TRAINING, free_port, tickets_csv

ROOT = Path(__file__).resolve().parents[1]
IMAGE = f"localhost/ticketserve-test:{os.getpid()}"
# A confined host refuses podman's own rlimits (docs/operations.md, "Container image").
ULIMITS = "nofile=16384:16384 nproc=16384:16384"
# What the Kubernetes Deployment asks of the container.
CONFINED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
CONFINED += ["--security-opt", "no-new-privileges"]
API_KEY = "image-test-key"  # the image listens on 0.0.0.0, where the service demands a key
AUTH = {"Authorization": f"Bearer {API_KEY}"}

pytestmark = pytest.mark.slow  # builds an image (minutes), trains in a container


def podman(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    missing = [tool for tool in ("podman", "debootstrap", "runc") if not shutil.which(tool)]
    assert not missing, (
        f"{', '.join(missing)} missing: apt-get install podman buildah runc debootstrap"
    )
    venv = str(Path(sys.executable).parents[1])  # the bundle is made of this environment
    env = {**os.environ, "IMAGE": IMAGE, "ULIMITS": ULIMITS, "VENV": venv}
    built = subprocess.run(
        ["bash", "scripts/image.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    print(built.stdout[-2000:])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    try:
        yield IMAGE
    finally:
        podman("rmi", "--force", IMAGE)


class Container:
    def __init__(self, image: str) -> None:
        self.name = f"ticketserve-test-{os.getpid()}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        ulimits = [flag for limit in ULIMITS.split() for flag in ("--ulimit", limit)]
        started = podman(
            "run",
            "--detach",
            "--name",
            self.name,
            "--publish",
            f"127.0.0.1:{self.port}:8000",
            "--env",
            f"TICKETSERVE_API_KEY={API_KEY}",
            *ulimits,
            *CONFINED,
            image,
        )
        assert started.returncode == 0, started.stderr

    def logs(self) -> str:
        return podman("logs", "--tail", "60", self.name).stderr[-6000:]

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def wait(self, path: str, timeout: float = 300.0) -> requests.Response:
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = requests.get(self.base + path, headers=AUTH, timeout=10)
                if answer.status_code == 200:
                    return answer
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"{path} not 200 after {timeout}s\n{self.logs()}"
            assert self.inspect("{{.State.Running}}") == "true", self.logs()
            time.sleep(1)

    def remove(self) -> None:
        podman("rm", "--force", "--volumes", self.name)


@pytest.fixture
def container(image: str) -> Iterator[Container]:
    running = Container(image)
    try:
        yield running
    finally:
        running.remove()


def test_the_image_trains_classifies_and_stops_cleanly(image: str, container: Container) -> None:
    size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout) // 10**6
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "10001:10001", "the service runs as its own user, not root"
    print(f"image {image}: {size_mb} MB")

    container.wait("/healthz")
    assert "ticketserve console" in container.wait("/").text  # the console came with the wheel
    health = podman("healthcheck", "run", container.name)
    assert health.returncode == 0, f"the image's HEALTHCHECK failed: {health.stdout}{health.stderr}"

    uploaded = requests.post(
        f"{container.base}/api/v1/train-data",
        data=tickets_csv(150, seed=4),
        headers={"Content-Type": "text/csv", **AUTH},
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text
    started = requests.post(
        f"{container.base}/api/v1/train", json=json.loads(TINY_TRAINING), headers=AUTH, timeout=60
    )
    assert started.status_code == 202, started.text
    job_url = f"{container.base}/api/v1/train/{started.json()['job_id']}"
    deadline = time.monotonic() + 600
    while (job := requests.get(job_url, headers=AUTH, timeout=30).json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, f"training still {job['status']}\n{container.logs()}"
        time.sleep(1)
    assert job["status"] == "succeeded", f"{job}\n{container.logs()}"

    container.wait("/readyz")
    answer = requests.post(
        f"{container.base}/api/v1/classify",
        json={"ticket_data": "VPN drops every few minutes"},
        headers=AUTH,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == 1

    # SIGTERM through tini: the service stops TorchServe and exits 0 before podman's 60 s end.
    start = time.monotonic()
    stopped = podman("stop", "--time", "60", container.name, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    print(f"stopped in {time.monotonic() - start:.1f} s")
