"""Model versions: publish a trained model, keep TorchServe's registrations and default in step.

The registry (SQLite) is the truth about which versions exist and which is the default;
TorchServe holds the ones currently loaded. Every version keeps its model directory and .mar
archive until it is deleted, so any version can be (re)loaded for a rollback. To spare memory,
at most `max_loaded` versions stay registered: the default, plus the most recently used others.

TorchServe calls are serialised by one lock: register, set-default and unregister of different
requests never interleave. Classification does not take the lock, so it keeps answering while a
version loads or the default changes (TorchServe switches the default atomically).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shim.errors import Conflict, Unavailable, UpstreamError
from shim.limits import serving_settings
from shim.serving.gates import head_gates
from shim.serving.torchserve_client import TorchServeClient, TorchServeError
from shim.settings import Settings
from shim.store.job_record import Job, PublishResult
from shim.store.registry import Store, VersionRecord
from training.export.archive import build_archive
from training.fit.evaluate import selection_score, summarize

logger = logging.getLogger(__name__)

HTTP_CONFLICT = 409
HTTP_NOT_FOUND = 404


def promotion_decision(
    policy: str, version: int, score: float, current: int | None, current_score: float | None
) -> tuple[bool, str]:
    """Whether a new version (validation macro-F1 `score`) becomes the default instead of
    `current` (scoring `current_score`), and why: `not_worse` when its score is not lower,
    `always`, or `never`; the first version always does."""
    if current is None or current_score is None:
        return True, f"version {version} is the first model version: made default"
    if policy == "always":
        return True, f"made default (promotion policy 'always'; replaced version {current})"
    if policy == "never":
        return False, f"version {current} stays default (promotion policy 'never')"
    if score >= current_score:
        return True, (
            f"made default: validation macro-F1 {score:.4f} is not lower than "
            f"{current_score:.4f} of version {current}"
        )
    return False, (
        f"version {current} stays default: validation macro-F1 {score:.4f} is lower than "
        f"its {current_score:.4f}; activate version {version} to use it anyway"
    )


class ModelVersions:
    """Publishes, loads, activates and deletes model versions."""

    def __init__(
        self, store: Store, settings: Settings, client: TorchServeClient | None, max_loaded: int = 2
    ) -> None:
        self.store = store
        self.settings = settings
        self.client = client
        self.max_loaded = max(1, max_loaded)
        self.name = settings.model_name
        self._lock = threading.RLock()
        self._last_used: dict[int, float] = {}
        # Versions registered with TorchServe by us: what `restore` brings back after a restart.
        self._registered: set[int] = set()
        # The version TorchServe answers with by default here (another replica may change the
        # registry's: `follow_default`).
        self.serving: int | None = None
        self.startup_error: str | None = None
        self.starting = False

    # -- publishing -------------------------------------------------------------------------

    def publish(self, job: Job, model_dir: Path, metrics: dict[str, Any]) -> PublishResult:
        """Archive a trained model as the next version, load it, and promote it if not worse."""
        client = self._require_client()
        version = self.store.versions.reserve()
        final_dir = self.store.models_dir / f"v{version}"
        archive: Path | None = None
        try:
            shutil.move(model_dir, final_dir)  # a rename, or a copy onto a shared volume
            archive = build_archive(
                final_dir,
                self.store.model_store,
                str(version),
                self.name,
                serving_settings(self.settings),
                update_latest=False,
            )
            with self._lock:
                self._register(client, version, archive)
                score = selection_score(metrics)
                promote, note = self._decide(version, score)
                if promote:
                    client.set_default(self.name, str(version))
                    self.serving = version
                record = VersionRecord(
                    version=version,
                    job_id=job.id,
                    created_at=datetime.now(UTC),
                    model_dir=final_dir,
                    archive=archive,
                    metrics=metrics,
                    score=score,
                    data_rows=job.data_rows or 0,
                )
                self.store.versions.add(record, make_default=promote)
                self._evict(client)
        except BaseException:
            self._discard(client, version, final_dir, archive)
            raise
        logger.info("published version %d (default: %s): %s", version, promote, note)
        return PublishResult(version, promote, note)

    def _decide(self, version: int, score: float) -> tuple[bool, str]:
        current = self.store.versions.default()
        best = self.store.versions.get(current).score if current is not None else None
        return promotion_decision(self.settings.promotion, version, score, current, best)

    def _discard(
        self, client: TorchServeClient, version: int, model_dir: Path, archive: Path | None
    ) -> None:
        """Undo a half-published version (registration, archive, model directory)."""
        self._registered.discard(version)
        try:
            client.unregister(self.name, str(version))
        except Exception:  # not registered, or TorchServe gone: nothing to undo there
            logger.debug("version %d was not registered", version)
        if archive is not None:
            archive.unlink(missing_ok=True)
        shutil.rmtree(model_dir, ignore_errors=True)

    # -- loading ----------------------------------------------------------------------------

    def load_at_start(self) -> None:
        """Load the default version (or, if none is recorded, the newest) into TorchServe."""
        self.starting = True
        try:
            versions = self.store.versions.all()
            if not versions or self.client is None:
                return
            default = self.store.versions.default() or versions[-1].version
            self.activate(default)
            logger.info("loaded model version %d at start", default)
        except Exception as exc:
            self.startup_error = f"cannot load the default model at start: {exc}"
            logger.exception("cannot load the default model at start")
        finally:
            self.starting = False

    def restore(self) -> None:
        """After a TorchServe restart: register the default again, then the others that were."""
        client = self._require_client()
        with self._lock:
            default = self.store.versions.default()
            known = {record.version: record for record in self.store.versions.all()}
            wanted = sorted(self._registered & known.keys(), key=lambda v: v != default)
            if default in known and default not in wanted:
                wanted.insert(0, default)
            self._registered.clear()
            for version in wanted:
                self._register(client, version, known[version].archive)
                if version == default:
                    client.set_default(self.name, str(version))
                    self.serving = version
            logger.info("model versions loaded again after the restart: %s", wanted or "none")

    def ensure_loaded(self, version: int) -> None:
        """Register `version` with TorchServe unless it is loaded; 404 for an unknown one."""
        record = self.store.versions.get(version)
        client = self._require_client()
        with self._lock:
            if version not in self.loaded_versions():
                self._register(client, version, record.archive)
                self._evict(client, keep=version)
            self._last_used[version] = time.monotonic()

    def loaded_versions(self) -> set[int]:
        """Versions TorchServe has registered (empty when it does not answer)."""
        if self.client is None:
            return set()
        try:
            described = self.client.describe(self.name, "all")
        except TorchServeError as exc:
            if exc.status == HTTP_NOT_FOUND:
                return set()
            raise UpstreamError(f"TorchServe: {exc.message}") from exc
        except Exception:
            return set()
        return {int(d["modelVersion"]) for d in described if str(d["modelVersion"]).isdigit()}

    def touch(self, version: int) -> None:
        self._last_used[version] = time.monotonic()

    def _register(self, client: TorchServeClient, version: int, archive: Path) -> None:
        if not archive.is_file():
            raise Unavailable(
                f"the archive of version {version} is missing ({archive.name})",
                retry_after_s=self.settings.retry_after_s,
            )
        try:
            client.register(archive.name)
        except TorchServeError as exc:
            if exc.status != HTTP_CONFLICT:  # 409: already registered, which is what we want
                raise
        self._registered.add(version)
        client.wait_ready(self.name, str(version), timeout=self.settings.torchserve_timeout_s * 4)
        self._last_used[version] = time.monotonic()

    def _evict(self, client: TorchServeClient, keep: int | None = None) -> None:
        """Unregister the least recently used versions beyond `max_loaded` (never the default)."""
        default = self.store.versions.default()
        loaded = self.loaded_versions()
        spare = sorted(
            (v for v in loaded if v not in (default, keep)),
            key=lambda v: self._last_used.get(v, 0.0),
        )
        while len(loaded) > self.max_loaded and spare:
            victim = spare.pop(0)
            try:
                client.unregister(self.name, str(victim))
            except (TorchServeError, httpx.HTTPError) as exc:
                # Memory housekeeping only: never fail a publish or an activation over it.
                logger.warning("could not unload model version %d: %s", victim, exc)
                continue
            loaded.discard(victim)
            self._registered.discard(victim)
            logger.info("unloaded model version %d (kept on disk)", victim)

    # -- the API's operations ---------------------------------------------------------------

    def activate(self, version: int) -> VersionRecord:
        """Make `version` the default: load it, switch TorchServe's default, record it."""
        record = self.store.versions.get(version)
        client = self._require_client()
        with self._lock:
            self.ensure_loaded(version)
            client.set_default(self.name, str(version))
            self.serving = version
            self.store.versions.set_default(version)
            self._evict(client)
        return record

    def follow_default(self) -> int | None:
        """Serve the registry's default version when another replica changed it (trained,
        promoted or rolled back there): load it and make it TorchServe's default here. Returns
        the version it switched to, else None."""
        if self.client is None or self.starting:
            return None
        with self._lock:  # read under the lock: an activation here may be changing it
            default = self.store.versions.default()
            if default is None or default == self.serving:
                return None
            self.ensure_loaded(default)
            self.client.set_default(self.name, str(default))
            self.serving = default
            self._evict(self.client)
        logger.info("serving model version %d: the registry's default now", default)
        return default

    def delete(self, version: int) -> int | None:
        """Remove a version (not the default while others exist); returns the default after."""
        record = self.store.versions.get(version)
        with self._lock:
            default = self.store.versions.default()
            others = [v.version for v in self.store.versions.all() if v.version != version]
            if version == default and others:
                raise Conflict(
                    f"version {version} is the default; activate another version first",
                    {"default_version": default, "other_versions": others},
                    code="version_is_default",
                )
            if self.client is not None and version in self.loaded_versions():
                self.client.unregister(self.name, str(version))
            self._registered.discard(version)
            if version == default:
                self.store.versions.set_default(None)
            self.store.versions.delete(version)
            self._last_used.pop(version, None)
        record.archive.unlink(missing_ok=True)
        shutil.rmtree(record.model_dir, ignore_errors=True)
        return self.store.versions.default()

    def public(self, record: VersionRecord, default: int | None, loaded: set[int]) -> dict:
        """The API view of one version."""
        summary = summarize(record.metrics)
        # Per head: temperature, gate, and the validation precision curve, from which a client
        # can read the coverage at any target precision.
        summary["calibration"] = record.metrics.get("calibration")
        return {
            "version": record.version,
            "is_default": record.version == default,
            "loaded": record.version in loaded,
            "created_at": record.created_at,
            "job_id": record.job_id,
            "data_rows": record.data_rows,
            "validation_macro_f1": summary["validation_macro_f1"],
            "test_macro_f1": summary["test_macro_f1"],
            "gates": head_gates(record.metrics, self.settings),
            "metrics": summary,
        }

    def _require_client(self) -> TorchServeClient:
        if self.client is None:
            raise Unavailable(
                "TorchServe is not running", retry_after_s=self.settings.retry_after_s
            )
        return self.client
