"""The retraining policy: start a training job when new labelled data makes it worth one.

"New" is what arrived after the latest job was created (whatever became of that job): uploads,
and corrections stored or replaced. A retraining job reuses the settings of the latest
successful job (else the service's `train_defaults`), and its version becomes the default under
the service's `promotion` rule (`not_worse` by default), as any other job's.

Three ways in, all off unless asked for:
- `POST /api/v1/retrain` (`ticketserve retrain --if-new-data` from cron);
- `retrain_after_feedback: N`: when N corrections arrived since the latest job;
- `retrain_when_drift: true`: when a head of the default version starts drifting, provided some
  labelled data arrived since the latest job (the same data would train the same model again).
An automatic start never fails the request that caused it: a busy runner or a refused job is
logged, and the next correction or crossing tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from shim.errors import ApiError
from shim.jobs.runner import JobRunner
from shim.settings import Settings
from shim.store.job_record import Job, JobStatus, Trigger
from shim.store.registry import FeedbackRecord, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewData:
    """Labelled data stored after the latest job was created (`since`; None: no job yet)."""

    since: datetime | None
    uploads: int
    feedback: int

    @property
    def any(self) -> bool:
        return bool(self.uploads or self.feedback)

    def describe(self) -> str:
        after = f"the latest job ({self.since:%Y-%m-%d %H:%M:%S} UTC)" if self.since else "ever"
        return f"{self.uploads} upload(s) and {self.feedback} correction(s) since {after}"


@dataclass(frozen=True)
class RetrainOutcome:
    started: bool
    reason: str
    data: NewData
    job: Job | None = None


class RetrainPolicy:
    """Decides whether to retrain, and starts the job through the runner."""

    def __init__(self, settings: Settings, store: Store, runner: JobRunner) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner

    def new_data(self) -> NewData:
        latest = self.store.jobs.latest()
        if latest is None:
            return NewData(None, len(self.store.datasets.all()), self.store.feedback.since(None))
        since = latest.created_at
        uploads = sum(1 for d in self.store.datasets.all() if d.created_at > since)
        return NewData(since, uploads, self.store.feedback.since(since))

    def retrain(self, trigger: Trigger, if_new_data: bool) -> RetrainOutcome:
        """Start a job with the latest successful job's settings; with `if_new_data`, only when
        labelled data arrived since the latest job. Raises what the runner raises (409 busy,
        400 no data)."""
        data = self.new_data()
        if if_new_data and not data.any:
            return RetrainOutcome(False, f"no new labelled data: {data.describe()}", data)
        previous = self.store.jobs.latest(JobStatus.SUCCEEDED)
        job = self.runner.submit(dict(previous.params) if previous else {}, trigger)
        recipe = f"the settings of job {previous.id}" if previous else "the service's defaults"
        logger.info(
            "retraining (%s) as job %s with %s: %s", trigger, job.id, recipe, data.describe()
        )
        return RetrainOutcome(
            True, f"job {job.id} started with {recipe}: {data.describe()}", data, job
        )

    def after_feedback(self, record: FeedbackRecord) -> None:
        """A correction was stored: retrain once `retrain_after_feedback` of them arrived."""
        wanted = self.settings.retrain_after_feedback
        if wanted is None or self.runner.is_busy():
            return
        if self.new_data().feedback >= wanted:
            self._start("feedback")

    def on_drift(self, version: int, heads: list[str]) -> None:
        """A head of `version` started drifting: retrain when it serves and data is new."""
        if not self.settings.retrain_when_drift or version != self.store.versions.default():
            return
        if not self.new_data().any:
            logger.warning(
                "version %d drifts (%s) but no labelled data arrived since the latest job: "
                "retraining would learn nothing new; send corrections to POST /api/v1/feedback",
                version,
                ", ".join(heads),
            )
            return
        self._start("drift")

    def _start(self, trigger: Trigger) -> None:
        try:
            self.retrain(trigger, if_new_data=True)
        except ApiError as exc:  # busy, or the stored data cannot train
            logger.warning("automatic retraining (%s) did not start: %s", trigger, exc.message)
