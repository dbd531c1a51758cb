"""`/api/v1/classify-jobs`: classify a whole file in the background (shim/jobs/classify_jobs.py),
follow it, download its result, cancel or delete it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from shim.api.deps import ClassifyJobsDep
from shim.jobs.classify_jobs import MAX_LISTED, MEDIA_TYPES, RESULT_TYPES
from shim.schemas import ClassifyJobPublic, ErrorPublic
from shim.store.registry.classify_jobs import ClassifyJob

JobsDep = ClassifyJobsDep
JobIdPath = Annotated[str, Path(min_length=1, max_length=64, description="classify job id")]
PREFIX = "/classify-jobs"
router = APIRouter(prefix=PREFIX, tags=["classify"])

FILE_BODY = {
    "requestBody": {
        "required": True,
        "description": "tickets to classify, one per row: a text column (or subject + body, and "
        "a content_type column for HTML or mail bodies), and the version's feature columns",
        "content": {media: {"schema": {"type": "string"}} for media in MEDIA_TYPES},
    }
}
NOT_FOUND = {404: {"model": ErrorPublic, "description": "unknown job"}}


@router.post(
    "",
    status_code=202,
    response_model=ClassifyJobPublic,
    openapi_extra=FILE_BODY,
    responses={
        404: {"model": ErrorPublic, "description": "unknown version"},
        409: {"model": ErrorPublic, "description": "too many classify jobs are unfinished"},
        413: {"model": ErrorPublic, "description": "the file is too large or has too many rows"},
        415: {"model": ErrorPublic, "description": "not CSV or JSON Lines in UTF-8"},
        422: {"model": ErrorPublic, "description": "the file cannot be read as tickets"},
    },
    summary="Classify a file of tickets in the background",
)
async def submit(
    request: Request,
    response: Response,
    jobs: JobsDep,
    version: Annotated[
        int | None, Query(ge=1, le=2**31, description="the version to ask (default: the default)")
    ] = None,
    delimiter: Annotated[
        str, Query(min_length=1, max_length=1, description="CSV: one of , ; | : or a tab")
    ] = ",",
) -> ClassifyJobPublic:
    """Store the file and queue the job; follow it at the `Location` it answers with, and
    download the result (one row per ticket, in the file's format) once it succeeded."""
    content_type = request.headers.get("content-type")
    raw = await request.body()  # its size is capped by shim/api/guard.py
    job = await run_in_threadpool(jobs.submit, raw, content_type, delimiter, version)
    response.headers["Location"] = _url(job.id)
    return public(job)


@router.get("", response_model=list[ClassifyJobPublic], summary="The latest classify jobs")
def listing(
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED, description="jobs to list")] = 20,
) -> list[ClassifyJobPublic]:
    """The newest jobs first."""
    return [public(job) for job in jobs.store.classify_jobs.recent(limit)]


@router.get(
    "/{job_id}", response_model=ClassifyJobPublic, responses=NOT_FOUND, summary="One classify job"
)
def get_job(job_id: JobIdPath, jobs: JobsDep) -> ClassifyJobPublic:
    return public(jobs.store.classify_jobs.get(job_id))


@router.get(
    "/{job_id}/result",
    response_class=FileResponse,
    responses={
        **NOT_FOUND,
        200: {"content": {media: {} for media in RESULT_TYPES.values()}},
        409: {"model": ErrorPublic, "description": "the job has not succeeded"},
        410: {"model": ErrorPublic, "description": "the result file is gone"},
    },
    summary="Download a classify job's result",
)
def result(job_id: JobIdPath, jobs: JobsDep) -> FileResponse:
    """One row per ticket of the file, in order: `row` (its number), every head's label,
    confidence and auto_route, and `error` for a ticket that could not be classified."""
    job, path = jobs.result(job_id)
    return FileResponse(
        path, media_type=RESULT_TYPES[job.format], filename=f"classified-{job.id}.{job.format}"
    )


@router.post(
    "/{job_id}/cancel",
    response_model=ClassifyJobPublic,
    responses={**NOT_FOUND, 409: {"model": ErrorPublic, "description": "the job has ended"}},
    summary="Cancel a classify job",
)
def cancel(job_id: JobIdPath, jobs: JobsDep) -> ClassifyJobPublic:
    """A queued job never starts; a running one stops after its current chunk of tickets."""
    return public(jobs.cancel(job_id))


@router.delete(
    "/{job_id}",
    status_code=204,
    responses={**NOT_FOUND, 409: {"model": ErrorPublic, "description": "the job has not ended"}},
    summary="Delete an ended classify job and its files",
)
def delete(job_id: JobIdPath, jobs: JobsDep) -> Response:
    jobs.delete(job_id)
    return Response(status_code=204)


def public(job: ClassifyJob) -> ClassifyJobPublic:
    return ClassifyJobPublic(
        job_id=job.id,
        status=job.status,
        created_at=job.created_at,
        updated_at=job.updated_at,
        format=job.format,
        rows=job.rows,
        rows_done=job.rows_done,
        errors=job.errors,
        model_version=job.model_version,
        heads=list(job.heads),
        error=job.error,
        result_url=f"{_url(job.id)}/result" if job.status == "succeeded" else None,
    )


def _url(job_id: str) -> str:
    return f"/api/v1{PREFIX}/{job_id}"
