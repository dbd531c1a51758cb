"""Run the real `ticketserve serve` (TorchServe + API) as a subprocess for the API tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from shim.serve import stop_stale_torchserve
from training.text.sample_data import generate_tickets

TICKETSERVE = str(Path(sys.executable).with_name("ticketserve"))
# Training in these tests checks mechanics, not accuracy: keep it tiny.
# The bundled MiniLM: about twice as fast to train as the default encoder.
TINY_TRAINING = (
    '{"base_model": "all-MiniLM-L6-v2", "epochs": 1, "max_length": 32, "batch_size": 16, "seed": 1}'
)
TERMINAL = ("succeeded", "failed")
# Between two looks at the service's health, readiness or job. Each look costs the service and
# the test CPU the other test process could use: 0.1 s made the suite no faster.
POLL_S = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tickets_csv(rows: int, seed: int) -> bytes:
    return generate_tickets(rows, seed=seed).to_csv(index=False).encode("utf-8")


def copy_data_dir(source: Path, target: Path) -> Path:
    """A copy of a stopped service's data directory to start another service on. Models and
    archives are hard links (the service never writes them in place, it only removes them);
    everything else is copied. TorchServe's runtime folder and the logs stay behind."""

    def copy(src: str, dst: str) -> None:
        relative = Path(src).relative_to(source)
        if relative.parts[0] in ("models", "model_store"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    ignore = shutil.ignore_patterns("torchserve", "logs")
    shutil.copytree(source, target, ignore=ignore, copy_function=copy)
    return target


@dataclass
class Service:
    """One `ticketserve serve` process on a data directory; restartable on the same one."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-serve-{self.starts}.log"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def start(self, timeout: float = 240.0) -> Service:
        """Start the service and wait until /healthz answers (TorchServe is up by then)."""
        if os.environ.get("TEST_TIER") == "fast":
            raise RuntimeError("this test starts the service: mark it slow (see conftest.py)")
        self.starts += 1
        env = {
            **os.environ,
            "TICKETSERVE_TRAIN_DEFAULTS": TINY_TRAINING,
            "TICKETSERVE_TRAIN_NICE": "0",
            **self.env,
        }
        env.pop("TICKETSERVE_API_KEY", None)
        if self.api_key:
            env["TICKETSERVE_API_KEY"] = self.api_key
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [TICKETSERVE, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited ({self.process.returncode}):\n{self.log()}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(POLL_S)
        raise RuntimeError(f"service did not answer within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int | None:
        """Send `sig` and wait for the process; returns its exit code."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def cleanup(self) -> None:
        """Stop the service and anything a killed one left behind (its TorchServe)."""
        self.stop()
        stop_stale_torchserve(self.data_dir / "torchserve")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return "(no log)"

    # -- HTTP helpers ----------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.headers())
        return requests.get(self.base + path, timeout=120, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs["headers"] = {**self.headers(), **kwargs.get("headers", {})}
        return requests.post(self.base + path, timeout=300, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.headers())
        return requests.delete(self.base + path, timeout=120, **kwargs)

    def upload_csv(self, content: bytes, **params: Any) -> requests.Response:
        return self.post(
            "/api/v1/train-data", data=content, headers={"Content-Type": "text/csv"}, params=params
        )

    def wait_ready(self, timeout: float = 240.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = requests.get(f"{self.base}/readyz", timeout=30)
            if answer.status_code == 200:
                return answer.json()
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready after {timeout}s: {answer.text}\n{self.log()}")
            time.sleep(POLL_S)

    def wait_job(
        self, job_id: str, until: tuple[str, ...] = TERMINAL, timeout: float = 600.0
    ) -> dict[str, Any]:
        """Poll a job until its status is in `until` (or, for "training", it has progress)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/api/v1/train/{job_id}").json()
            if job["status"] in until or (
                "progress" in until and job["progress"] and job["status"] == "running"
            ):
                return job
            if job["status"] in TERMINAL:
                raise AssertionError(f"job ended as {job['status']}: {job}\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(POLL_S)


@contextmanager
def running(data_dir: Path, **kwargs: Any) -> Iterator[Service]:
    """A started `Service(data_dir, **kwargs)`, stopped at the end; it must exit cleanly."""
    service = Service(data_dir, **kwargs)
    try:
        service.start()
        yield service
    finally:
        code = service.stop()
        service.cleanup()
    assert code == 0, service.log()


@contextmanager
def running_copy(template: Path, target: Path, **kwargs: Any) -> Iterator[Service]:
    """`running` on a copy of a trained data directory (`template`), once it can classify."""
    with running(copy_data_dir(template, target), **kwargs) as service:
        service.wait_ready()
        yield service


class Background:
    """Sends `request(i)` again and again from a thread while the `with` block runs, waiting
    `pause_s` between calls. Every answer that is not `expected`, and every exception (a reset
    connection, a timeout), is a failure: a request that raises does not silently end the
    thread. `check` asserts there were calls, all of them answered as expected."""

    def __init__(
        self,
        request: Callable[[int], requests.Response],
        expected: int = 200,
        pause_s: float = 0.0,
    ) -> None:
        self.request, self.expected, self.pause_s = request, expected, pause_s
        self.answered: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        calls = 0
        while not self._stop.is_set():
            try:
                answer = self.request(calls)
                self.answered.append(answer.status_code)
                if answer.status_code != self.expected:
                    self.failures.append(f"call {calls}: {answer.status_code} {answer.text[:300]}")
            except Exception as exc:  # every failure is recorded, none is lost
                self.failures.append(f"call {calls}: {type(exc).__name__}: {exc}")
            calls += 1
            self._stop.wait(self.pause_s)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=600)

    def calls(self) -> int:
        return len(self.answered) + len(self.failures)

    def wait_for(self, calls: int, timeout: float = 60.0) -> None:
        """Until `calls` calls have ended, or `timeout` passed: the block then surely overlaps
        that many calls, however slow the machine (a dead thread ends no more)."""
        deadline = time.monotonic() + timeout
        while self.calls() < calls and time.monotonic() < deadline:
            time.sleep(0.01)

    def check(self, minimum: int = 1) -> None:
        assert not self.failures, self.failures
        assert len(self.answered) >= minimum, f"only {len(self.answered)} calls during the block"
