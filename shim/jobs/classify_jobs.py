"""Classify jobs: a whole file of tickets (a backlog, last year's tickets) classified in the
background through TorchServe, as `POST /api/v1/classify` would answer each of them, into a file
to download: one row per input row (training/text/ticket_files.py), in order.

A job is a record in the registry and two files in the shared directory (`classify_jobs/<id>/`).
It is answered in chunks of `max_batch` tickets by one version (the one asked for, else the
default when it starts). After each chunk the output is flushed to disk and the record notes how
many rows and bytes are done; a job that a restart (or a stopped replica) interrupted resumes
there, the output cut back to the bytes last noted, so every row is answered exactly once. One
replica runs a job at a time (a lease per job, as for training); any replica may resume it.
Classify jobs are scoring, not routing: their answers are not logged as predictions, so they
neither feed monitoring and drift nor take feedback.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pandas as pd
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from shim.errors import (
    ApiError,
    Conflict,
    Gone,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from shim.jobs.runner import one_line
from shim.schemas import ClassifyRequest, TicketIn
from shim.serving.classifier import Classifier
from shim.settings import Settings
from shim.store.registry import Store, utcnow
from shim.store.registry.classify_jobs import ClassifyJob
from training.files import PRIVATE_FILE
from training.text.data import DELIMITERS, DataError
from training.text.ticket_files import BulkRow, RowWriter, bulk_rows, count_rows, read_chunks

logger = logging.getLogger(__name__)

MEDIA_TYPES = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}
RESULT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
MAX_UNFINISHED = 8  # queued and running classify jobs, on all replicas together
MAX_LISTED = 100
# A chunk that TorchServe could not answer (restarting, a version loading) is tried again.
CHUNK_ATTEMPTS = 5
LEASE_PREFIX = "classify-job:"


class ClassifyJobs:
    """Submit, follow, cancel and delete classify jobs; `run()` works through them."""

    def __init__(
        self, store: Store, settings: Settings, classifier: Classifier, replica: str
    ) -> None:
        self.store = store
        self.settings = settings
        self.classifier = classifier
        self.replica = replica
        # Renewed after every chunk, which may wait out TorchServe's timeout and the retries.
        worst_chunk_s = settings.torchserve_timeout_s + CHUNK_ATTEMPTS * settings.retry_after_s
        self.lease_ms = int((settings.training_lease_s + worst_chunk_s) * 1000)
        self.wake = asyncio.Event()  # a job was submitted here
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- requests -------------------------------------------------------------------------

    def submit(
        self, raw: bytes, content_type: str | None, delimiter: str, version: int | None
    ) -> ClassifyJob:
        """Store the file as a new queued job; 4xx for what cannot be classified."""
        fmt = _media_format(content_type)
        if delimiter not in DELIMITERS:
            raise Unprocessable(f"delimiter must be one of {', '.join(map(repr, DELIMITERS))}")
        if version is not None:
            self.store.versions.get(version)  # 404 for an unknown version
        if len(self.store.classify_jobs.unfinished()) >= MAX_UNFINISHED:
            raise Conflict(
                f"{MAX_UNFINISHED} classify jobs are queued or running; wait for one to end",
                code="too_many_classify_jobs",
            )
        job_id = uuid.uuid4().hex[:16]
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        try:
            source = folder / f"input.{fmt}"
            _write_private(source, raw)
            rows = _check_file(source, fmt, delimiter, self.settings)
            now = utcnow().isoformat()
            job = ClassifyJob(job_id, "queued", now, now, fmt, delimiter, rows, version)
            self.store.classify_jobs.save(job)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if self._loop is not None:  # submit runs in a worker thread: not the loop's
            self._loop.call_soon_threadsafe(self.wake.set)
        return job

    def cancel(self, job_id: str) -> ClassifyJob:
        """Stop a queued or running job: it ends `cancelled` after its current chunk at most."""
        job = self.store.classify_jobs.get(job_id)
        if job.finished:
            raise Conflict(f"classify job {job_id} has ended ({job.status})", code="job_ended")
        job = replace(job, status="cancelled", updated_at=utcnow().isoformat())
        self.store.classify_jobs.save(job)
        return job

    def delete(self, job_id: str) -> None:
        """Forget an ended job and its files."""
        job = self.store.classify_jobs.get(job_id)
        if not job.finished:
            raise Conflict(
                f"classify job {job_id} is {job.status}; cancel it first", code="job_running"
            )
        self.store.classify_jobs.delete(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def result(self, job_id: str) -> tuple[ClassifyJob, Path]:
        """A succeeded job and its output file; 409 before."""
        job = self.store.classify_jobs.get(job_id)
        if job.status != "succeeded":
            raise Conflict(
                f"classify job {job_id} is {job.status}; its result is there once it succeeded",
                {"status": job.status},
                code="result_not_ready",
            )
        path = self.folder(job_id) / f"output.{job.format}"
        if not path.is_file():  # removed by hand, or a registry restored without the files
            raise Gone(f"classify job {job_id}'s result file is gone", code="result_gone")
        return job, path

    def folder(self, job_id: str) -> Path:
        return self.store.classify_jobs_dir / job_id

    # -- the work -------------------------------------------------------------------------

    async def run(self) -> None:
        """Work through unfinished jobs, oldest first, until cancelled (the app's life)."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                for job in await run_in_threadpool(self.store.classify_jobs.unfinished):
                    if await run_in_threadpool(self._take, job.id):
                        try:
                            await self._run(job.id)
                        finally:
                            await run_in_threadpool(
                                self.store.leases.give_back, LEASE_PREFIX + job.id, self.replica
                            )
            except Exception:  # the registry out of reach: look again next time
                logger.exception("classify jobs: cannot read the registry")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):  # another replica's job is looked for then
                await asyncio.wait_for(self.wake.wait(), self.settings.replica_sync_s)

    def _take(self, job_id: str) -> bool:
        return self.store.leases.take_if_free(
            LEASE_PREFIX + job_id, self.replica, job_id, self.lease_ms
        )

    async def _run(self, job_id: str) -> None:
        job = await run_in_threadpool(self.store.classify_jobs.get, job_id)
        try:
            await self._classify(job)
        except asyncio.CancelledError:
            raise  # the service stops: the job stays unfinished and resumes at the next start
        except (ApiError, DataError, OSError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            await self._end(job_id, "failed", one_line(message))
        except Exception as exc:
            logger.exception("classify job %s failed", job_id)
            await self._end(job_id, "failed", one_line(f"{type(exc).__name__}: {exc}"))

    async def _classify(self, job: ClassifyJob) -> None:
        if job.model_version is None:
            version = job.version or self.store.versions.default()
            if version is None:
                raise Unprocessable("no model version is trained yet")
            record = await run_in_threadpool(self.store.versions.get, version)
            job = replace(job, model_version=version, heads=tuple(record.heads))
        job = await self._save(replace(job, status="running"))
        if job.status == "cancelled":
            return
        record = await run_in_threadpool(self.store.versions.get, job.model_version)
        features = list(record.metrics.get("feature_columns") or {})
        folder = self.folder(job.id)
        source, target = folder / f"input.{job.format}", folder / f"output.{job.format}"
        where = f"classify job {job.id}"
        # Parsing, writing and fsync are blocking: in worker threads, off the event loop.
        chunks = read_chunks(source, job.format, job.delimiter, self.settings.max_batch, where)
        with _Output(target, job) as output:
            before = 0
            while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
                skip = min(len(chunk), max(0, job.rows_done - before))
                before += skip
                if skip == len(chunk):
                    continue
                current = await run_in_threadpool(self.store.classify_jobs.get, job.id)
                if current.status == "cancelled":
                    return
                rows = bulk_rows(
                    chunk.iloc[skip:], before, where, features, self.settings.max_ticket_chars
                )
                await self._answer(rows, job.model_version)
                done_bytes = await run_in_threadpool(output.write, rows)
                before += len(rows)
                job = await self._save(
                    replace(
                        job,
                        rows_done=before,
                        output_bytes=done_bytes,
                        errors=job.errors + sum(row.error is not None for row in rows),
                    )
                )
        await self._end(job.id, "succeeded", None)

    async def _answer(self, rows: list[BulkRow], version: int | None) -> None:
        """Answer every row without an error; a row the service refuses gets the refusal as
        its error, the others are asked again without it."""
        waiting = []
        for row in rows:
            if row.error is not None:
                continue
            try:
                ticket = TicketIn(
                    subject=row.subject or None,
                    body=row.body,
                    content_type=row.content_type or "text/plain",
                    fields=row.fields or None,
                )
            except ValidationError as exc:
                row.error = one_line("; ".join(e["msg"] for e in exc.errors()))
                continue
            waiting.append((row, ticket))
        attempts = 0
        while waiting:
            request = ClassifyRequest(tickets=[ticket for _, ticket in waiting])
            try:
                answer = await self.classifier.classify(request, version, record=False)
            except Unprocessable as exc:
                i = (exc.details or {}).get("ticket") if isinstance(exc.details, dict) else None
                if not isinstance(i, int) or not 0 <= i < len(waiting):
                    raise
                waiting[i][0].error = exc.message.removeprefix(f"ticket {i}").lstrip(": ")
                del waiting[i]
                continue
            except ApiError as exc:
                attempts += 1
                if exc.status < 500 or attempts >= CHUNK_ATTEMPTS:
                    raise
                await asyncio.sleep(self.settings.retry_after_s)
                continue
            for (row, _), prediction in zip(waiting, answer.predictions, strict=True):
                row.heads = {h: getattr(prediction, h).model_dump() for h in prediction.heads}
            return

    async def _save(self, job: ClassifyJob) -> ClassifyJob:
        """Note the job's progress unless it was cancelled meanwhile (then that stands)."""
        current = await run_in_threadpool(self.store.classify_jobs.get, job.id)
        if current.status == "cancelled":
            return current
        job = replace(job, updated_at=utcnow().isoformat())
        await run_in_threadpool(self.store.classify_jobs.save, job)
        await run_in_threadpool(
            self.store.leases.renew, LEASE_PREFIX + job.id, self.replica, self.lease_ms
        )
        return job

    async def _end(self, job_id: str, status: str, error: str | None) -> None:
        current = await run_in_threadpool(self.store.classify_jobs.get, job_id)
        if current.status == "cancelled":
            return
        ended = replace(current, status=status, error=error, updated_at=utcnow().isoformat())
        await run_in_threadpool(self.store.classify_jobs.save, ended)
        logger.info("classify job %s %s (%d rows)", job_id, status, ended.rows_done)


class _Output:
    """A job's output file, cut back to the bytes its record notes (what a restart finds past
    them was never noted: it is written again)."""

    def __init__(self, path: Path, job: ClassifyJob) -> None:
        self.path, self.job = path, job

    def __enter__(self) -> _Output:
        self.out = open(self.path, "r+b" if self.path.exists() else "wb")
        self.out.truncate(self.job.output_bytes)
        self.out.seek(self.job.output_bytes)
        self.text = io.TextIOWrapper(self.out, encoding="utf-8", newline="", write_through=True)
        header = self.job.output_bytes == 0
        self.writer = RowWriter(self.text, self.job.format, self.job.heads, header=header)
        return self

    def write(self, rows: list[BulkRow]) -> int:
        """Write `rows`, flush them to disk; the file's size after them."""
        for row in rows:
            self.writer.write(row)
        self.text.flush()
        os.fsync(self.out.fileno())
        return self.out.tell()

    def __exit__(self, *_: object) -> None:
        self.text.close()


def _media_format(content_type: str | None) -> str:
    media_type, _, params = (content_type or "").partition(";")
    fmt = MEDIA_TYPES.get(media_type.strip().lower())
    if fmt is None:
        raise UnsupportedMediaType(
            f"unsupported content type {media_type.strip() or '(none)'!r}",
            {"supported": sorted(MEDIA_TYPES)},
        )
    for param in params.split(";"):
        key, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {charset[:40]!r}: send the file as UTF-8")
    return fmt


def _check_file(source: Path, fmt: str, delimiter: str, settings: Settings) -> int:
    """The file's row count, after reading its first chunk as a job will; 4xx else."""
    rows = count_rows(source, fmt, delimiter)
    if rows == 0:
        raise Unprocessable("the file has no tickets", code="empty_file")
    if rows > settings.max_classify_job_rows:
        raise PayloadTooLarge(
            f"{rows} tickets in the file; at most {settings.max_classify_job_rows} per job",
            code="too_many_tickets",
        )
    try:
        first: pd.DataFrame = next(read_chunks(source, fmt, delimiter, settings.max_batch, "file"))
        bulk_rows(first, 0, "file")
    except DataError as exc:
        raise Unprocessable(str(exc), code="invalid_file") from exc
    return rows


def _write_private(path: Path, raw: bytes) -> None:
    with open(path, "wb", opener=lambda p, flags: os.open(p, flags, PRIVATE_FILE)) as out:
        out.write(raw)
        out.flush()
        os.fsync(out.fileno())
