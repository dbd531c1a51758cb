"""Run TorchServe as a private process and talk to its inference and management APIs.

Launcher (one instance per data directory or test module; instances never collide):

    with TorchServe(model_store, workdir, load_models="ticket.mar") as ts:   # start() + stop()
        ts.inference_url, ts.management_url, ts.metrics_url, ts.log_dir, ts.model_log, ts.pid

    TorchServe(model_store, workdir, config_file=<repo>/config.properties, ports=None,
               load_models=None, env=None)
      .start(timeout=180.0) -> TorchServe   writes workdir/config.properties (a copy of
          `config_file` with this instance's ports, model store and load_models), runs
          `torchserve --start --foreground --ncs` with TMPDIR/TEMP, LOG_LOCATION and
          METRICS_LOCATION inside `workdir`, and returns once every registered model version has
          a READY worker; raises TorchServeStartError (with the logs' tails) if TorchServe exits
          or the timeout passes
      .stop(timeout=60.0)               SIGTERM to the JVM, then waits until it and its Python
          workers have exited (`torchserve --stop` would return before the JVM is gone)
      .running -> bool
    Ports.free() picks five free loopback ports (inference, management, metrics, 2x gRPC).
    load_models: None keeps config_file's value, "" loads nothing, else e.g. "ticket-v3.mar".

Clients: TorchServeClient / AsyncTorchServeClient / TorchServeError / KeyFile live in
shim/serving/torchserve_client.py (its docstring lists their methods);
`TorchServe.client()` gives a TorchServeClient for the instance, with its keys.

Locked down for a host with other local users: token authorization is on, TorchServe writes its
keys to `workdir/key_file.json` (mode 0600) at every start and `ts.keys` follows them; the
management API accepts archives from this instance's model store only (`allowed_urls`); and the
service's own secrets (TICKETSERVE_API_KEY) are not passed to the JVM or its workers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from shim.serving.processes import child_environment, stop_processes
from shim.serving.torchserve_client import (
    KeyFile,
    TorchServeClient,
    TorchServeError,
    has_ready_worker,
)

logger = logging.getLogger(__name__)


def serving_file(name: str) -> Path:
    """The repository's copy of a TorchServe file in a checkout, else the installed one."""
    checkout = Path(__file__).resolve().parents[2] / name
    return checkout if checkout.is_file() else Path(sys.prefix) / "share" / "ticketserve" / name


DEFAULT_CONFIG = serving_file("config.properties")
# INFO, rotated by size; TorchServe's own configuration logs at DEBUG.
LOG_CONFIG = serving_file("log4j2.xml")
CONSOLE_LOG_BYTES = 10 * 1024 * 1024  # torchserve.out is rotated at start beyond this
CONSOLE_LOGS_KEPT = 3
JVM_MAIN_CLASS = "org.pytorch.serve.ModelServer"
# Unix socket paths (TMPDIR/.ts.sock.9000) must stay under the kernel's 108-byte limit.
MAX_TMPDIR_CHARS = 80
LOG_TAIL_LINES = 40
# Between two looks at the management API while TorchServe starts (a local, cheap call).
START_POLL_S = 0.1


class TorchServeStartError(RuntimeError):
    """TorchServe did not come up with ready workers; the message carries the logs' tails."""


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @classmethod
    def free(cls) -> Ports:
        """Five distinct ports that are free on 127.0.0.1 right now."""
        with ExitStack() as stack:
            sockets = [stack.enter_context(socket.socket()) for _ in range(5)]
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return cls(*(sock.getsockname()[1] for sock in sockets))


class TorchServe:
    """One private TorchServe process: its config, temp and log directories live in `workdir`."""

    def __init__(
        self,
        model_store: str | Path,
        workdir: str | Path,
        config_file: str | Path = DEFAULT_CONFIG,
        ports: Ports | None = None,
        load_models: str | None = None,
        env: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.model_store = Path(model_store).resolve()
        self.workdir = Path(workdir).resolve()
        self.config_file = Path(config_file)
        self.ports = ports or Ports.free()
        self.load_models = load_models
        self.env = dict(env or {})
        self.properties = dict(properties or {})  # config_file values this instance replaces
        self.log_dir = self.workdir / "logs"
        # TorchServe writes key_file.json into its working directory, which is `workdir`.
        self.keys = KeyFile(self.workdir / "key_file.json")
        self._launcher: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self.pid: int | None = None

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.management}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}"

    @property
    def model_log(self) -> Path:
        """The workers' log: the handler's own lines (e.g. its batch sizes) end up here."""
        return self.log_dir / "model_log.log"

    @property
    def running(self) -> bool:
        return self._launcher is not None and self._launcher.poll() is None

    @property
    def alive(self) -> bool:
        """Whether the launcher and its JVM both still run (a killed JVM ends the launcher)."""
        if not self.running or self.pid is None:
            return False
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    @property
    def exit_code(self) -> int | None:
        return self._launcher.poll() if self._launcher is not None else None

    def client(self, timeout: float = 30.0) -> TorchServeClient:
        return TorchServeClient(
            self.inference_url, self.management_url, timeout=timeout, keys=self.keys
        )

    def __enter__(self) -> TorchServe:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 180.0) -> TorchServe:
        """Start TorchServe and wait until every registered model version has a READY worker."""
        if self.running:
            raise TorchServeStartError("this TorchServe instance is already running")
        if not self.model_store.is_dir():
            raise TorchServeStartError(f"model store {self.model_store} is not a directory")
        if shutil.which("java") is None and "JAVA_HOME" not in {**os.environ, **self.env}:
            raise TorchServeStartError("java not found: install a Java 17 runtime (or JAVA_HOME)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._tmpdir = self._make_tmpdir()
        self._stop_stale_instance()
        config = self.workdir / "config.properties"
        config.write_text(self._instance_config(), encoding="utf-8")
        env = {
            **child_environment(),
            **self.env,
            "TMPDIR": str(self._tmpdir),
            "TEMP": str(self._tmpdir),
            "LOG_LOCATION": str(self.log_dir),
            "METRICS_LOCATION": str(self.log_dir),
        }
        env.pop("TS_CONFIG_FILE", None)  # it would override --ts-config
        command = [
            sys.executable, "-m", "ts.model_server",  # the `torchserve` script of this Python
            "--start", "--foreground", "--ncs", "--ts-config", str(config),
            "--log-config", str(LOG_CONFIG),
        ]  # fmt: skip
        rotate_log(self.workdir / "torchserve.out")
        logger.info("starting TorchServe on %s (workdir %s)", self.inference_url, self.workdir)
        with open(self.workdir / "torchserve.out", "ab") as out:
            self._launcher = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in a terminal reaches us, not the JVM
            )
        try:
            self._wait_started(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the JVM and its workers and wait until they have exited."""
        launcher = self._launcher
        if launcher is None:
            return
        try:
            launcher_process = psutil.Process(launcher.pid)
            jvms = launcher_process.children()  # `torchserve --foreground` waits for its JVM
            processes = [*jvms, *(c for j in jvms for c in j.children(recursive=True))]
        except psutil.NoSuchProcess:
            jvms, processes = [], []
        if jvms:
            stop_processes(processes, timeout, signal_all=False)
        else:
            if launcher.poll() is None:
                launcher.terminate()
            # The JVM was killed: its workers lost their parent but may still be running.
            orphans = self._orphaned_workers()
            if orphans:
                stop_processes(orphans, timeout_s=10.0)
        try:
            launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        self._launcher, self.pid = None, None
        if self._tmpdir is not None and not self._tmpdir.is_relative_to(self.workdir):
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = None
        logger.info("TorchServe on %s stopped", self.inference_url)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of TorchServe's console, frontend and model logs."""
        parts = []
        for path in (self.workdir / "torchserve.out", self.log_dir / "ts_log.log", self.model_log):
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                parts.append(f"--- {path.name} ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no logs written)"

    def _make_tmpdir(self) -> Path:
        tmpdir = self.workdir / "tmp"
        if len(str(tmpdir)) > MAX_TMPDIR_CHARS:
            return Path(tempfile.mkdtemp(prefix="ts-"))
        tmpdir.mkdir(parents=True, exist_ok=True)
        return tmpdir

    def _instance_config(self) -> str:
        """config_file's lines with this instance's addresses, store and models swapped in."""
        overrides = {
            **self.properties,
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": self.metrics_url,
            "grpc_inference_port": str(self.ports.grpc_inference),
            "grpc_management_port": str(self.ports.grpc_management),
            "model_store": str(self.model_store),
            # Only archives of this store: a URL anywhere else is refused. A .properties file
            # reads a backslash as an escape, hence the doubling.
            "allowed_urls": _store_urls(self.model_store).replace("\\", "\\\\"),
        }
        if self.load_models is not None:
            overrides["load_models"] = self.load_models
        lines = []
        for line in self.config_file.read_text(encoding="utf-8").splitlines():
            key = line.split("=", 1)[0].strip()
            if not line.lstrip().startswith("#") and key in overrides:
                line = f"{key}={overrides.pop(key)}"
            lines.append(line)
        lines += [f"{key}={value}" for key, value in overrides.items()]
        return "\n".join(lines) + "\n"

    def _jvm_pid(self) -> int | None:
        """The JVM's pid once our launcher has started it."""
        if self._launcher is None:
            return None
        try:
            children = psutil.Process(self._launcher.pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0].pid if children else None

    def _orphaned_workers(self) -> list[psutil.Process]:
        """Python workers of this instance (their socket lives in its TMPDIR)."""
        if self._tmpdir is None:
            return []
        marker = str(self._tmpdir / ".ts.sock")
        found = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if any(part.startswith(marker) for part in cmdline):
                found.append(process)
        return found

    def _pid_file_value(self) -> int | None:
        if self._tmpdir is None:
            return None
        try:
            return int((self._tmpdir / ".model_server.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _stop_stale_instance(self) -> None:
        """A TorchServe left running from this workdir (its owner died) would block the start."""
        pid = self._pid_file_value()
        if pid is None:
            return
        try:
            stale = psutil.Process(pid)
            if JVM_MAIN_CLASS not in stale.cmdline():
                return
            processes = [stale, *stale.children(recursive=True)]
        except psutil.Error:
            return
        logger.warning("stopping TorchServe (pid %d) left running in %s", pid, self.workdir)
        stop_processes(processes, timeout_s=60.0, signal_all=False)

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.client(timeout=10.0) as client:
            while True:
                if not self.running:
                    raise TorchServeStartError(
                        f"TorchServe exited during start-up\n{self.log_tail()}"
                    )
                if self.pid is None:
                    self.pid = self._jvm_pid()
                waiting = _not_ready(client)
                if waiting == []:
                    return
                if time.monotonic() > deadline:
                    detail = ", ".join(waiting or ["the management API"])
                    raise TorchServeStartError(
                        f"TorchServe not ready after {timeout:.0f}s (waiting for {detail})\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(START_POLL_S)


def rotate_log(path: Path, limit: int = CONSOLE_LOG_BYTES, kept: int = CONSOLE_LOGS_KEPT) -> None:
    """path -> path.1 -> path.2 ... once it has grown past `limit` (it is appended to)."""
    if not path.is_file() or path.stat().st_size < limit:
        return
    for index in range(kept - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def _store_urls(model_store: Path) -> str:
    """The regular expression of archive URLs inside `model_store` (Java regex syntax)."""
    return f"file://{re.escape(str(model_store))}/[^/]+\\.mar"


def _not_ready(client: TorchServeClient) -> list[str] | None:
    """Model versions without a READY worker; None while the management API does not answer."""
    try:
        waiting = []
        for model in client.list_models():
            for version in client.describe(model["modelName"], "all"):
                if not has_ready_worker(version):
                    waiting.append(f"{version['modelName']} v{version['modelVersion']}")
        return waiting
    except (httpx.TransportError, TorchServeError):
        return None
