"""The predictions log: every classify answer gets an id and is kept for a while for feedback.

An id is 12 hex digits of its creation time in milliseconds, then 12 random ones: ids sort by
time, and an id older than what the log still holds (pruned, answer 410) can be told from one
never issued (404). Each request's answers go in with one transaction, which also prunes the log
to `prediction_retention_count` rows and `prediction_retention_days`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable

from shim.errors import Gone, NotFound
from shim.schemas import TicketPredictionPublic
from shim.settings import Settings
from shim.store.registry import PredictionRecord, Store

PREDICTION_ID = re.compile(r"[0-9a-f]{24}")
DAY_MS = 86_400_000


def new_prediction_id(now_ms: int | None = None) -> str:
    """A fresh id: its creation time, then randomness."""
    return f"{now_ms if now_ms is not None else _now_ms():012x}{secrets.token_hex(6)}"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PredictionLog:
    """Records classify answers and finds them again for feedback."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        # Called with each request's records once they are stored (the drift watch).
        self.listeners: list[Callable[[list[PredictionRecord]], None]] = []

    def record(self, texts: list[str], answers: list[TicketPredictionPublic]) -> None:
        """Keep one request's answers to the cleaned `texts` (blocking: call it off the event
        loop)."""
        now = _now_ms()
        records = [
            PredictionRecord(
                id=answer.prediction_id,
                created_ms=now,
                version=answer.model_version,
                text=text if self.settings.store_texts else None,
                text_sha256=text_sha256(text),
                labels={
                    head: {
                        "label": prediction.model_label,
                        "confidence": prediction.confidence,
                        "auto_route": prediction.auto_route,  # for live quality
                    }
                    for head, prediction in answer.head_predictions().items()
                },
                rare_token_share=answer.rare_token_share,
            )
            for text, answer in zip(texts, answers, strict=True)
        ]
        self.store.predictions.add(
            records, self.settings.prediction_retention_count, self._cutoff_ms(now)
        )
        for listener in self.listeners:
            listener(records)

    def get(self, prediction_id: str) -> PredictionRecord:
        """The logged answer; 404 for an id never issued, 410 for one past retention."""
        created = _created_ms(prediction_id)
        if created is None:
            raise NotFound(f"no prediction {prediction_id[:64]!r}", code="prediction_not_found")
        record = self.store.predictions.get(prediction_id)
        cutoff = self._cutoff_ms(_now_ms())
        if record is not None and record.created_ms >= cutoff:
            return record
        if (
            record is not None
            or created < cutoff
            or created <= self.store.predictions.pruned_until()
        ):
            raise Gone(
                f"prediction {prediction_id} is past the retention "
                f"({self.settings.prediction_retention_count} answers, "
                f"{self.settings.prediction_retention_days} days); send the ticket's text and "
                "labels instead",
                code="prediction_expired",
            )
        raise NotFound(f"no prediction {prediction_id!r}", code="prediction_not_found")

    def _cutoff_ms(self, now_ms: int) -> int:
        return now_ms - self.settings.prediction_retention_days * DAY_MS


def _created_ms(prediction_id: str) -> int | None:
    """The creation time an id carries; None when it is not an id this service makes."""
    if PREDICTION_ID.fullmatch(prediction_id) is None:
        return None
    return int(prediction_id[:12], 16)
