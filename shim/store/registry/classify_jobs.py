"""The classify jobs' table: each job's record as one JSON document, in submission order."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from sqlalchemy import delete, select

from shim.errors import NotFound
from shim.store.registry.database import Database, insert
from shim.store.registry.tables import classify_jobs

ClassifyJobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
UNFINISHED = ("queued", "running")


@dataclass(frozen=True)
class ClassifyJob:
    """One file classified in the background. `rows_done` rows are answered in the output
    file's first `output_bytes` bytes: a job resumed after a restart cuts the file there and
    goes on from the next row."""

    id: str
    status: ClassifyJobStatus
    created_at: str
    updated_at: str
    format: Literal["csv", "jsonl"]
    delimiter: str
    rows: int
    version: int | None  # the version asked for; None: the default when the job starts
    model_version: int | None = None  # the version that answers (fixed at the start)
    heads: tuple[str, ...] = ()
    rows_done: int = 0
    output_bytes: int = 0
    errors: int = 0  # rows answered with an error instead of labels
    error: str | None = None  # why the job failed

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED


class ClassifyJobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, job: ClassifyJob) -> None:
        record = json.dumps(asdict(job))
        with self.db.transaction() as conn:
            conn.execute(
                insert(conn, classify_jobs)
                .values(id=job.id, record=record)
                .on_conflict_do_update(index_elements=["id"], set_={"record": record})
            )

    def get(self, job_id: str) -> ClassifyJob:
        with self.db.reading() as conn:
            record = conn.execute(
                select(classify_jobs.c.record).where(classify_jobs.c.id == job_id)
            ).scalar()
        if record is None:
            raise NotFound(f"no classify job {job_id!r}", code="classify_job_not_found")
        return _job(record)

    def recent(self, limit: int) -> list[ClassifyJob]:
        """The newest `limit` jobs, newest first."""
        query = select(classify_jobs.c.record).order_by(classify_jobs.c.seq.desc()).limit(limit)
        with self.db.reading() as conn:
            return [_job(record) for record in conn.execute(query).scalars()]

    def unfinished(self) -> list[ClassifyJob]:
        """Queued and running jobs, oldest first."""
        with self.db.reading() as conn:
            records = conn.execute(select(classify_jobs.c.record).order_by(classify_jobs.c.seq))
            found = [_job(record) for record in records.scalars()]
        return [job for job in found if not job.finished]

    def delete(self, job_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(delete(classify_jobs).where(classify_jobs.c.id == job_id))


def _job(record: str) -> ClassifyJob:
    values = json.loads(record)
    values["heads"] = tuple(values["heads"])
    return ClassifyJob(**values)
