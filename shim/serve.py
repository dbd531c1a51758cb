"""`ticketserve serve`: start a private TorchServe, then the API; stop both on Ctrl-C / SIGTERM.

TorchServe runs with its own TMPDIR, ports and logs under `<data-dir>/torchserve/`, on loopback.
Its JVM pid is recorded there, so a service that was killed (and could not stop its TorchServe)
is cleaned up by the next start on the same data directory before a new one starts.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
from pathlib import Path
from types import FrameType

import psutil
import uvicorn

from shim.api.app import TorchServeEndpoints, create_app
from shim.api.http_protocol import LingeringH11Protocol
from shim.api.logs import configure_logging
from shim.limits import torchserve_properties
from shim.serving.processes import stop_processes
from shim.serving.supervisor import Supervisor
from shim.serving.torchserve import DEFAULT_CONFIG, TorchServe
from shim.settings import Settings
from shim.store.registry import Store

logger = logging.getLogger(__name__)

PID_FILE = "torchserve.pid.json"


class Stop(Exception):
    """SIGTERM arrived outside uvicorn's own handling (while TorchServe starts)."""


class ListenError(Exception):
    """The API cannot listen on its host and port (in use, not an address of this host, a
    privileged port)."""


def serve(settings: Settings) -> None:
    """Run until interrupted; TorchServe is always stopped on the way out."""
    settings.check_exposure()
    api_socket = bind_api_socket(settings.host, settings.port)
    # Before the store: its start-up (a registry migration) is logged too.
    configure_logging(settings.log_format, settings.data_dir.resolve() / "logs" / "service.log")
    store = Store(settings.data_dir, settings.database_url, settings.shared_dir)
    workdir = store.root / "torchserve"
    workdir.mkdir(exist_ok=True)
    stop_stale_torchserve(workdir)

    previous = signal.signal(signal.SIGTERM, _raise_stop)
    supervisor: Supervisor | None = None
    torchserve = TorchServe(
        store.model_store,
        workdir,
        config_file=settings.ts_config or DEFAULT_CONFIG,
        load_models="",  # the service registers its versions itself
        properties=torchserve_properties(settings),
    )
    try:
        torchserve.start(timeout=settings.torchserve_start_timeout_s)
        _write_pid(workdir, torchserve.pid)
        logger.info("TorchServe ready on %s", torchserve.inference_url)
        endpoints = TorchServeEndpoints(
            torchserve.inference_url, torchserve.management_url, torchserve.keys
        )
        supervisor = Supervisor(torchserve, start_timeout_s=settings.torchserve_start_timeout_s)
        supervisor.after_restart.append(lambda: _write_pid(workdir, torchserve.pid))
        app = create_app(settings, endpoints, supervisor)
        supervisor.start()
        # uvicorn handles SIGINT/SIGTERM itself: it finishes requests, runs the app's shutdown
        # (which stops a training job), then returns here.
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            log_config=None,  # uvicorn's lines go through the service's handlers and format
            access_log=False,
            http=LingeringH11Protocol,
        )
        # uvicorn logs no address for a socket it is given: this line says where the API is.
        logger.info("API on http://%s:%d", settings.host, settings.port)
        uvicorn.Server(config).run(sockets=[api_socket])
    except (Stop, KeyboardInterrupt):
        logger.info("stopping")
    finally:
        # A second signal must not cut the clean-up short and leave TorchServe running.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if supervisor is not None:
            supervisor.stop()
        torchserve.stop()
        (workdir / PID_FILE).unlink(missing_ok=True)
        store.close()
        api_socket.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logger.info("service stopped")


def bind_api_socket(host: str, port: int) -> socket.socket:
    """The API's socket, bound before TorchServe starts: TorchServe's free ports (picked by the
    kernel) can then never be the API's, and a port in use stops the service at once instead of
    after TorchServe's start. uvicorn listens on it, with the options it gives its own sockets."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def stop_stale_torchserve(workdir: Path) -> None:
    """Stop a TorchServe left running by a killed service on this data directory."""
    path = workdir / PID_FILE
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    config = str(workdir / "config.properties")
    try:
        jvm = psutil.Process(pid)
        # The pid may have been reused: only a JVM started with this workdir's config is ours.
        if config not in jvm.cmdline():
            path.unlink(missing_ok=True)
            return
        processes = [jvm, *jvm.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        path.unlink(missing_ok=True)
        return
    logger.warning("stopping TorchServe %d left by a previous service", pid)
    stop_processes(processes, timeout_s=30.0)
    path.unlink(missing_ok=True)


def _write_pid(workdir: Path, pid: int | None) -> None:
    if pid is not None:
        (workdir / PID_FILE).write_text(json.dumps({"pid": pid}))


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()
