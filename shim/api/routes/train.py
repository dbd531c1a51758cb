"""`/api/v1/train`: start a training job (202), follow it, see the latest."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from shim.api.deps import RunnerDep
from shim.errors import NotFound
from shim.schemas import ErrorPublic, TrainJobPublic, TrainRequest
from shim.store.job_record import Job

router = APIRouter(prefix="/train", tags=["training"])
JobIdPath = Annotated[str, Path(min_length=1, max_length=64, description="job id")]

START_ERRORS = {
    400: {"model": ErrorPublic, "description": "no training data stored"},
    409: {"model": ErrorPublic, "description": "a training job is queued or running"},
    422: {"model": ErrorPublic, "description": "invalid hyper-parameters"},
}


@router.post(
    "",
    status_code=202,
    response_model=TrainJobPublic,
    responses=START_ERRORS,
    summary="Start training on all stored data",
)
def start_training(
    runner: RunnerDep, response: Response, params: TrainRequest | None = None
) -> TrainJobPublic:
    """Queue a job in a separate process; follow it at the `Location` it answers with."""
    overrides = params.model_dump(exclude_none=True) if params is not None else {}
    job = runner.submit(overrides)
    response.headers["Location"] = f"/api/v1/train/{job.id}"
    return job_public(job)


@router.get("", response_model=TrainJobPublic, summary="The latest training job")
def latest_job(runner: RunnerDep) -> TrainJobPublic:
    """The most recent training job, whatever its status."""
    job = runner.latest()
    if job is None:
        raise NotFound("no training job yet; POST /api/v1/train", code="job_not_found")
    return job_public(job)


@router.get(
    "/{job_id}",
    response_model=TrainJobPublic,
    responses={404: {"model": ErrorPublic}},
    summary="One training job",
)
def get_job(job_id: JobIdPath, runner: RunnerDep) -> TrainJobPublic:
    """Status, progress, metrics and result (or error) of one job."""
    return job_public(runner.get(job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=TrainJobPublic,
    responses={
        404: {"model": ErrorPublic, "description": "unknown job"},
        409: {"model": ErrorPublic, "description": "the job has ended or is publishing"},
    },
    summary="Cancel a training job",
)
def cancel_job(job_id: JobIdPath, runner: RunnerDep) -> TrainJobPublic:
    """Stop a queued or running job; it ends `cancelled` and its process is gone on return."""
    return job_public(runner.cancel(job_id))


def job_public(job: Job) -> TrainJobPublic:
    """The API view of a job record (without the process id)."""
    values = job.to_dict()
    values["job_id"] = values.pop("id")
    values.pop("pid")
    values["eta_s"] = job.eta_s()
    return TrainJobPublic.model_validate(values)
