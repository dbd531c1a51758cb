"""`/api/v1/retrain`: train again with the latest job's settings, when labelled data is new."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from shim.api.deps import RetrainDep
from shim.api.routes.train import START_ERRORS, job_public
from shim.jobs.retrain import RetrainOutcome
from shim.schemas import RetrainPublic

router = APIRouter(prefix="/retrain", tags=["training"])


@router.post(
    "",
    status_code=202,
    response_model=RetrainPublic,
    responses={200: {"model": RetrainPublic, "description": "no job started"}, **START_ERRORS},
    summary="Retrain on all stored data, if any is new",
)
def retrain(
    policy: RetrainDep,
    response: Response,
    if_new_data: Annotated[
        bool,
        Query(description="start only when uploads or corrections arrived since the latest job"),
    ] = False,
) -> RetrainPublic:
    """A job with the latest successful job's settings (202, `Location` to follow it), or 200
    with the reason none started. For cron: `ticketserve retrain --if-new-data`."""
    outcome = policy.retrain("retrain", if_new_data)
    if outcome.job is not None:
        response.headers["Location"] = f"/api/v1/train/{outcome.job.id}"
    else:
        response.status_code = 200
    return public(outcome)


def public(outcome: RetrainOutcome) -> RetrainPublic:
    return RetrainPublic(
        started=outcome.started,
        reason=outcome.reason,
        new_uploads=outcome.data.uploads,
        new_feedback=outcome.data.feedback,
        job=job_public(outcome.job) if outcome.job is not None else None,
    )
