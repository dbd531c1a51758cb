"""Classify tickets through TorchServe and apply the per-head confidence thresholds.

The handler in the archive answers each ticket with every head's {label, confidence, top_k},
`predicted_label`/`confidence` and the `model_version` that served it. Here each head gains
`model_label` (the model's own guess), `auto_route` and `low_confidence`. A head's gate is, in
this order: its configured `confidence_thresholds` value (one threshold for the head, whatever
the model's rule); the threshold reaching its configured `target_precision` on the serving
version's validation curve (kept in the version's metrics; for a version trained with a gate per
class, the curve of the answer's class); or the gate the model was trained with (`auto_route` in
the handler's answer). Below the gate the
`label` becomes the configured fallback (e.g. queue "Unclassified") when one is set. A model
trained before gates existed has none: its answers never clear one and keep their label.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from handlers.ticket_requests import PRIMARY_HEAD, SIMILAR_KEY
from shim.errors import BadRequest, Conflict, NotFound, Unavailable, Unprocessable, UpstreamError
from shim.metrics import ApiMetrics
from shim.schemas import (
    ClassifyBatchPublic,
    ClassifyRequest,
    HeadPredictionPublic,
    SimilarPublic,
    SimilarRequest,
    SimilarTicketPublic,
    TicketPredictionPublic,
)
from shim.serving.torchserve_client import AsyncTorchServeClient
from shim.serving.versions import ModelVersions
from shim.settings import Settings
from shim.store.predictions import PredictionLog, new_prediction_id
from shim.store.registry import Store
from shim.store.ticket_texts import cleaned_texts
from training.fit.calibration import clears_gate, threshold_for

logger = logging.getLogger(__name__)

PROBE = {"ticket_data": "readiness probe"}


class Classifier:
    """The classify use case: validate, route to a version, post-process the answers."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        versions: ModelVersions,
        client: AsyncTorchServeClient | None,
        metrics: ApiMetrics,
        predictions: PredictionLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.versions = versions
        self.client = client
        self.metrics = metrics
        self.predictions = predictions or PredictionLog(settings, store)
        # Validation curves per version and head (a version's metrics never change).
        self._curves: dict[int, dict[str, Any]] = {}

    async def classify(
        self, request: ClassifyRequest, version: int | None = None, record: bool = True
    ) -> TicketPredictionPublic | ClassifyBatchPublic:
        """Classify one ticket or a batch; `version` None asks the default version. Similar
        tickets asked of a version that keeps none leave `similar` None: the classification
        stands (POST /similar says why). `record` False keeps the answers out of the
        predictions log (a classify job's scoring is not live traffic)."""
        tickets = request.items()
        if len(tickets) > self.settings.max_batch:
            raise Unprocessable(
                f"{len(tickets)} tickets in one request; at most {self.settings.max_batch}",
                code="too_many_tickets",
            )
        # Cleaning parses HTML and mail: off the event loop.
        texts = await run_in_threadpool(cleaned_texts, tickets, self.settings)
        await self._ensure_model(version)
        forwarded = [
            {"ticket_data": text} | ({"fields": ticket.fields} if ticket.fields else {})
            for text, ticket in zip(texts, tickets, strict=True)
        ]
        payload: dict[str, Any] = (
            {"tickets": forwarded} if request.tickets is not None else forwarded[0]
        )
        if request.similar:
            payload[SIMILAR_KEY] = request.similar
        answer = await self._predict(payload, version)
        if request.tickets is None:
            result = self.ticket(answer)
            if record:
                await run_in_threadpool(self.predictions.record, texts, [result])
            return result
        predictions = [self.ticket(p) for p in answer["predictions"]]
        if len(predictions) != len(tickets):
            raise UpstreamError(
                f"TorchServe answered {len(predictions)} predictions for {len(tickets)} tickets"
            )
        if record:  # one transaction for the whole batch, off the event loop
            await run_in_threadpool(self.predictions.record, texts, predictions)
        served = predictions[0].model_version if predictions else version
        return ClassifyBatchPublic(predictions=predictions, model_version=served)

    async def similar(self, request: SimilarRequest, version: int | None = None) -> SimilarPublic:
        """The stored tickets most similar to one ticket, nothing classified or logged."""
        [text] = await run_in_threadpool(cleaned_texts, [request], self.settings)
        await self._ensure_model(version)
        answer = await self._predict({"ticket_data": text, SIMILAR_KEY: request.k}, version)
        found = _similar(answer.get(SIMILAR_KEY))
        served = _version(answer.get("model_version"))
        if found is None:
            raise _no_index(served)
        return SimilarPublic(similar=found, model_version=served)

    async def _ensure_model(self, version: int | None) -> None:
        if version is not None:
            await run_in_threadpool(self.versions.ensure_loaded, version)
        elif self.store.versions.default() is None:
            raise self._unavailable(
                "no model version is trained yet: upload data and POST /api/v1/train",
                "no_model",
            )

    async def probe(self) -> tuple[bool, int | None, str | None]:
        """(answers, version, why not): the default model classifies a probe ticket."""
        if self.store.versions.default() is None:
            return False, None, "no model version is trained yet"
        try:
            answer = await self._predict(PROBE, None)
        except (Unavailable, UpstreamError, BadRequest) as exc:
            return False, None, exc.message
        return True, _version(answer.get("model_version")), None

    async def _predict(self, payload: Any, version: int | None) -> dict[str, Any]:
        if self.client is None:
            raise self._unavailable("TorchServe is not running", "torchserve_unavailable")
        try:
            response = await self.client.predict(
                self.settings.model_name,
                payload,
                version=str(version) if version is not None else None,
            )
        except httpx.TransportError as exc:
            logger.warning("TorchServe does not answer: %s", exc)
            raise self._unavailable(
                "TorchServe does not answer; try again shortly", "torchserve_unavailable"
            ) from exc
        if response.status_code == 200:
            self.versions.touch(version or self.store.versions.default() or 0)
            return response.json()
        message = _message(response)
        if response.status_code == 400:
            raise BadRequest(message, code="invalid_ticket")
        if response.status_code in (404, 503, 507):
            # 404: the version is not (yet) registered, e.g. while loading at start-up.
            raise self._unavailable(f"no model loaded to answer: {message}", "model_unavailable")
        raise UpstreamError(f"TorchServe answered {response.status_code}: {message}")

    def ticket(self, answer: dict[str, Any]) -> TicketPredictionPublic:
        """One ticket of the handler's answer, with each head's gate applied, under a new
        prediction id (logged by `classify`)."""
        version = _version(answer.get("model_version"))
        # The handler answers each head under its name, as an object with its label.
        heads = {
            head: self._head(head, raw, version)
            for head, raw in answer.items()
            if isinstance(raw, dict) and "label" in raw
        }
        if not heads:
            raise UpstreamError("TorchServe answered without any head", {"answer": answer})
        primary = heads.get(PRIMARY_HEAD) or next(iter(heads.values()))
        self.metrics.tickets_classified.inc()
        return TicketPredictionPublic(
            prediction_id=new_prediction_id(),
            predicted_label=primary.label,
            confidence=primary.confidence,
            auto_route=primary.auto_route,
            low_confidence=primary.low_confidence,
            model_version=version,
            rare_token_share=_share(answer.get("rare_token_share")),
            similar=_similar(answer.get(SIMILAR_KEY)),
            heads=list(heads),
            **heads,
        )

    def _head(self, head: str, raw: dict[str, Any], version: int | None) -> HeadPredictionPublic:
        confidence = float(raw["confidence"])
        auto_route, gated = self._gate(head, raw, confidence, version)
        low = gated and not auto_route
        label = raw["label"]
        if low:
            self.metrics.low_confidence.labels(head=head).inc()
            label = self.settings.fallback_labels.get(head, label)
        return HeadPredictionPublic(
            label=label,
            confidence=confidence,
            top_k=[(str(name), float(p)) for name, p in raw.get("top_k", [])],
            model_label=raw["label"],
            auto_route=auto_route,
            low_confidence=low,
        )

    def _gate(
        self, head: str, raw: dict[str, Any], confidence: float, version: int | None
    ) -> tuple[bool, bool]:
        """(clears the gate, whether the head has a gate at all)."""
        threshold = self.settings.confidence_thresholds.get(head)
        if threshold is None and head in self.settings.target_precision:
            curve = self._validation_curve(version, head, raw["label"])
            if curve is None:
                return False, False
            threshold = threshold_for(curve, self.settings.target_precision[head])
            return clears_gate(confidence, threshold), True
        if threshold is not None:
            return confidence >= threshold, True
        if "auto_route" in raw:
            return bool(raw["auto_route"]), True
        return False, False

    def _validation_curve(
        self, version: int | None, head: str, label: str
    ) -> list[list[float]] | None:
        """The version's validation precision curve for `head` (None for an older model); for a
        version trained with a gate per class, the curve of the tickets predicted as `label`
        (empty for a class it never predicted: never routed)."""
        if version is None:
            return None
        if version not in self._curves:
            try:
                calibration = self.store.versions.get(version).metrics.get("calibration") or {}
            except NotFound:
                calibration = {}
            self._curves[version] = {
                h: (c.get("validation_curve"), c.get("class_curves"))
                for h, c in calibration.items()
                if isinstance(c, dict)
            }
        curve, per_class = self._curves[version].get(head, (None, None))
        if per_class is not None:
            return per_class.get(label) or []
        return curve

    def _unavailable(self, message: str, code: str) -> Unavailable:
        error = Unavailable(message, retry_after_s=self.settings.retry_after_s)
        error.code = code
        return error


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("message") or body)
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase


def _similar(value: Any) -> list[SimilarTicketPublic] | None:
    """The handler's similar tickets; None when not asked or the version keeps none."""
    if not isinstance(value, list):
        return None
    try:
        return [SimilarTicketPublic.model_validate(hit) for hit in value]
    except ValueError as exc:
        raise UpstreamError(f"TorchServe answered similar tickets unlike any: {exc}") from exc


def _no_index(version: int | None) -> Conflict:
    return Conflict(
        f"model version {version} keeps no similar-ticket index: it was trained with "
        "similar_tickets off or before the index existed; train a new version",
        code="no_similar_index",
    )


def _share(value: Any) -> float | None:
    """The handler's rare token share (absent from older archives' answers)."""
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else None


def _version(value: Any) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None
