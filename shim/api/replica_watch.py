"""What each replica checks in the shared registry every `replica_sync_s`: a training job whose
replica stopped (failed, its lease freed: shim/jobs/runner.py), a default version another
replica made (loaded and served here: shim/serving/versions.py), and a history import whose
replica stopped (resumed here at its cursor: shim/desks/history_import.py). With one replica
they find nothing to do."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from shim.api.deps import Services

logger = logging.getLogger(__name__)


async def watch_replicas(services: Services) -> None:
    """Run until cancelled."""
    while True:
        await asyncio.sleep(services.settings.replica_sync_s)
        try:
            for job in await run_in_threadpool(services.runner.reap):
                logger.warning("job %s failed: its replica stopped renewing its lease", job.id)
            await run_in_threadpool(services.versions.follow_default)
            await run_in_threadpool(services.imports.resume)  # one a stopped replica left
        except Exception:  # the database or TorchServe out of reach: look again next time
            logger.exception("replica watch failed")
