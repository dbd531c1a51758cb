"""`/api/v1/classify`: queue and priority of one ticket or several, through TorchServe."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shim.api.deps import ClassifierDep
from shim.schemas import (
    MAX_VERSION,
    ClassifyBatchPublic,
    ClassifyRequest,
    ErrorPublic,
    TicketPredictionPublic,
)

router = APIRouter(prefix="/classify", tags=["classification"])

VersionQuery = Annotated[
    int | None,
    Query(ge=1, le=MAX_VERSION, description="model version to ask (default: the default one)"),
]

ERRORS = {
    400: {"model": ErrorPublic, "description": "the model refused a ticket"},
    404: {"model": ErrorPublic, "description": "unknown model version"},
    422: {"model": ErrorPublic, "description": "invalid request (empty or too long text, ...)"},
    503: {"model": ErrorPublic, "description": "no model loaded, or TorchServe down"},
}


@router.post(
    "",
    response_model=TicketPredictionPublic | ClassifyBatchPublic,
    responses=ERRORS,
    summary="Classify tickets",
)
async def classify(
    body: ClassifyRequest,
    classifier: ClassifierDep,
    version: VersionQuery = None,
) -> TicketPredictionPublic | ClassifyBatchPublic:
    """`{"ticket_data": ...}`, `{"subject", "body"}` or `{"tickets": [...]}`."""
    return await classifier.classify(body, version)
