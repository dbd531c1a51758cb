"""The training jobs' table: each job's whole record as one JSON document, in start order."""

from __future__ import annotations

import json

from sqlalchemy import select

from shim.errors import NotFound
from shim.store.job_record import Job, JobStatus
from shim.store.registry.database import Database, insert
from shim.store.registry.tables import jobs

UNFINISHED = {JobStatus.QUEUED.value, JobStatus.RUNNING.value}


class Jobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, job: Job) -> None:
        """Insert or update a job record."""
        record = json.dumps(job.to_dict())
        with self.db.transaction() as conn:
            conn.execute(
                insert(conn, jobs)
                .values(id=job.id, record=record)
                .on_conflict_do_update(index_elements=["id"], set_={"record": record})
            )

    def get(self, job_id: str) -> Job:
        with self.db.reading() as conn:
            record = conn.execute(select(jobs.c.record).where(jobs.c.id == job_id)).scalar()
        if record is None:
            raise NotFound(f"no training job {job_id!r}", code="job_not_found")
        return Job.from_dict(json.loads(record))

    def latest(self, status: JobStatus | None = None) -> Job | None:
        """The newest job (with that status, when given)."""
        with self.db.reading() as conn:
            for (record,) in conn.execute(select(jobs.c.record).order_by(jobs.c.seq.desc())):
                values = json.loads(record)
                if status is None or values["status"] == status.value:
                    return Job.from_dict(values)
        return None

    def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first."""
        with self.db.reading() as conn:
            records = conn.execute(select(jobs.c.record).order_by(jobs.c.seq)).scalars()
            found = [json.loads(record) for record in records]
        return [Job.from_dict(values) for values in found if values["status"] in UNFINISHED]
