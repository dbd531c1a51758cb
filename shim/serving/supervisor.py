"""Keep TorchServe running: notice when it dies, restart it with back-off, reload the models.

    supervisor = Supervisor(torchserve, check_every_s=1.0, max_backoff_s=30.0)
    supervisor.after_restart.append(versions.restore)   # called after each successful restart
    supervisor.start() ... supervisor.stop()
    supervisor.state -> "up" | "restarting"; .restarts, .last_error, .down_since

The JVM can die from a kill, the kernel's OOM killer or a crash of its own; its launcher then
exits too. Either way the supervisor stops what is left (reaping the launcher, ending orphaned
workers), starts a fresh instance on the same ports and model store, and calls `after_restart`
(ModelVersions.restore registers the versions that were loaded and sets the default again).
Meanwhile the service answers classify with 503 and Retry-After, /readyz with 503 and /healthz
with `degraded`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from shim.serving.torchserve import TorchServe

logger = logging.getLogger(__name__)

State = Literal["up", "restarting"]


class Supervisor:
    """A daemon thread watching one TorchServe instance."""

    def __init__(
        self,
        torchserve: TorchServe,
        check_every_s: float = 1.0,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.torchserve = torchserve
        self.check_every_s = check_every_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.start_timeout_s = start_timeout_s
        self.after_restart: list[Callable[[], None]] = []
        self.state: State = "up"
        self.restarts = 0
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="torchserve-supervisor",
                                        daemon=True)  # fmt: skip

    @property
    def healthy(self) -> bool:
        return self.state == "up"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the caller stops TorchServe itself)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.start_timeout_s + 10)

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_every_s):
            if not self.torchserve.alive:
                self._recover()

    def _recover(self) -> None:
        self.state, self.down_since = "restarting", time.monotonic()
        logger.error("TorchServe died (exit %s): restarting it", self.torchserve.exit_code)
        backoff = self.first_backoff_s
        while not self._stopping.is_set():
            try:
                self.torchserve.stop()  # reap the launcher, end orphaned workers
                self.torchserve.start(timeout=self.start_timeout_s)
                for callback in self.after_restart:
                    callback()
            except Exception as exc:  # any failure: wait, then start from scratch again
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                logger.error("TorchServe restart failed (%s); next try in %.0fs",
                             self.last_error, backoff)  # fmt: skip
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self.restarts += 1
            took = time.monotonic() - (self.down_since or time.monotonic())
            logger.warning("TorchServe is back after %.1fs (restart %d)", took, self.restarts)
            self.state, self.down_since, self.last_error = "up", None, None
            return
