"""`/api/v1/similar`: the stored tickets most like one ticket, through the version's index."""

from __future__ import annotations

from fastapi import APIRouter

from shim.api.deps import ClassifierDep
from shim.api.routes.classify import ERRORS, VersionQuery
from shim.schemas import ErrorPublic, SimilarPublic, SimilarRequest

router = APIRouter(prefix="/similar", tags=["classification"])


@router.post(
    "",
    response_model=SimilarPublic,
    responses={
        **ERRORS,
        409: {"model": ErrorPublic, "description": "the version keeps no similar-ticket index"},
    },
    summary="Find similar stored tickets",
)
async def similar(
    body: SimilarRequest, classifier: ClassifierDep, version: VersionQuery = None
) -> SimilarPublic:
    """`{"ticket_data": ..., "k": 5}` or `{"subject", "body", "k"}`: the `k` tickets of the
    version's training data most similar to this one (cosine similarity of the model's own
    embeddings), with their ids, labels and stored text. Nothing is classified or logged."""
    return await classifier.similar(body, version)
