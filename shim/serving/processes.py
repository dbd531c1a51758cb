"""Child processes: their environment, and stopping them (one home for SIGTERM, wait, SIGKILL)."""

from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import suppress
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

# Secrets of the service that its children (TorchServe, training) have no use for.
PRIVATE_VARIABLES = ("TICKETSERVE_API_KEY",)


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the service's secrets, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_VARIABLES}
    return {**env, **extra}


def is_job_process(pid: int, job_id: str) -> bool:
    """Whether `pid` is still the training process of `job_id` (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "training.job" in cmdline and job_id in cmdline


def terminate(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group of `pid`, then SIGKILL it after `timeout_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            logger.warning("not allowed to stop process %d", pid)
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def stop_processes(
    processes: list[psutil.Process], timeout_s: float, signal_all: bool = True
) -> None:
    """SIGTERM all `processes`, or only the first (a JVM stops its own workers); wait up to
    `timeout_s` for all of them to exit, then SIGKILL those left."""
    for process in processes if signal_all else processes[:1]:
        with suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        logger.warning("process %d still running after %.0fs: killing", process.pid, timeout_s)
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=10)


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its Popen) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"
