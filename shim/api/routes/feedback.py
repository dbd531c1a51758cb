"""`/api/v1/feedback`: agents' corrections of classify answers, which become training rows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from shim.api.deps import FeedbackDep
from shim.schemas import (
    MAX_ID_CHARS,
    ErrorPublic,
    FeedbackDeletedPublic,
    FeedbackListPublic,
    FeedbackRequest,
    FeedbackSavedPublic,
)

router = APIRouter(prefix="/feedback", tags=["feedback"])

MAX_PAGE = 500
MAX_OFFSET = 2**31 - 1
FeedbackIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_CHARS, description="feedback id")
]
SUBMIT_ERRORS = {
    400: {"model": ErrorPublic, "description": "the body is not valid JSON"},
    404: {"model": ErrorPublic, "description": "unknown prediction_id"},
    409: {"model": ErrorPublic, "description": "TICKETSERVE_MAX_FEEDBACK_ROWS are stored"},
    410: {"model": ErrorPublic, "description": "the prediction is past its retention"},
    422: {
        "model": ErrorPublic,
        "description": "invalid body, unknown head or label, missing label, missing or "
        "mismatching text, no training data stored",
    },
}


@router.post(
    "",
    status_code=201,
    response_model=FeedbackSavedPublic,
    responses={
        200: {"model": FeedbackSavedPublic, "description": "replaced an earlier correction"},
        **SUBMIT_ERRORS,
    },
    summary="Correct (or confirm) a classify answer",
)
def submit_feedback(
    body: FeedbackRequest, feedback: FeedbackDep, response: Response
) -> FeedbackSavedPublic:
    """`{"prediction_id", "queue"?, "priority"?}`, or a ticket's text with its labels; stored
    before the answer, and used by the next training job."""
    saved = feedback.submit(body)
    if saved.replaced:
        response.status_code = 200
    return saved


@router.get("", response_model=FeedbackListPublic, summary="Stored corrections")
def list_feedback(
    feedback: FeedbackDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="corrections to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="corrections to list")] = 50,
) -> FeedbackListPublic:
    """Oldest first; `label_counts` counts over all of them, per head and label."""
    return feedback.page(offset, limit)


@router.delete(
    "/{feedback_id}",
    response_model=FeedbackDeletedPublic,
    responses={404: {"model": ErrorPublic, "description": "unknown feedback id"}},
    summary="Remove a correction",
)
def delete_feedback(feedback_id: FeedbackIdPath, feedback: FeedbackDep) -> FeedbackDeletedPublic:
    """It is no longer used by training jobs (one already running keeps its copy)."""
    return feedback.delete(feedback_id)
