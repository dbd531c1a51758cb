"""The corrections' table: agents' feedback, one per prediction or per stored training row."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import datetime

from sqlalchemy import delete, func, select, update

from shim.errors import Conflict, NotFound
from shim.store.registry.database import Database
from shim.store.registry.records import FeedbackRecord
from shim.store.registry.tables import feedback


class FeedbackRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(
        self, record: FeedbackRecord, max_rows: int | None = None
    ) -> tuple[FeedbackRecord, bool]:
        """Store a correction; one of the same prediction (or training row) is replaced, keeping
        its id. A new one beyond `max_rows` stored is refused (409), in the same transaction.

        Returns (the stored record, whether it replaced one).
        """
        f = feedback.c
        values = {
            "created_at": record.created_at.isoformat(),
            "model_version": record.model_version,
            "text": record.text,
            "labels": json.dumps(record.labels),
            "predicted": json.dumps(record.predicted) if record.predicted is not None else None,
        }
        with self.db.transaction() as conn:
            earlier = None
            if record.prediction_id is not None:
                earlier = conn.execute(
                    select(f.id).where(f.prediction_id == record.prediction_id)
                ).scalar()
            elif record.row_id is not None:
                earlier = conn.execute(select(f.id).where(f.row_id == record.row_id)).scalar()
            if earlier is not None:
                conn.execute(update(feedback).where(f.id == earlier).values(**values))
                return replace(record, id=earlier), True
            stored = conn.execute(select(func.count()).select_from(feedback)).scalar_one()
            if max_rows is not None and stored >= max_rows:
                raise Conflict(
                    f"{stored} corrections are stored, the most this service keeps "
                    "(TICKETSERVE_MAX_FEEDBACK_ROWS); delete some with "
                    "DELETE /api/v1/feedback/{feedback_id}",
                    {"stored": stored},
                    code="feedback_full",
                )
            conn.execute(
                feedback.insert().values(
                    id=record.id,
                    prediction_id=record.prediction_id,
                    row_id=record.row_id,
                    **values,
                )
            )
        return record, False

    def page(self, offset: int = 0, limit: int | None = None) -> list[FeedbackRecord]:
        """Stored corrections, oldest first (all of them without `limit`)."""
        query = select(feedback).order_by(feedback.c.seq).offset(offset).limit(limit)
        with self.db.reading() as conn:
            return [
                FeedbackRecord(
                    id=r.id,
                    prediction_id=r.prediction_id,
                    created_at=datetime.fromisoformat(r.created_at),
                    model_version=r.model_version,
                    text=r.text,
                    labels=json.loads(r.labels),
                    predicted=json.loads(r.predicted) if r.predicted is not None else None,
                    row_id=r.row_id,
                )
                for r in conn.execute(query)
            ]

    def counts(self) -> tuple[int, dict[str, dict[str, int]]]:
        """(corrections stored, head -> label -> rows, most rows first)."""
        per_head: dict[str, Counter[str]] = {}
        total = 0
        with self.db.reading() as conn:
            for (labels,) in conn.execute(select(feedback.c.labels)):
                total += 1
                for head, label in json.loads(labels).items():
                    per_head.setdefault(head, Counter())[label] += 1
        return total, {
            head: dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))
            for head, counter in sorted(per_head.items())
        }

    def since(self, since: datetime | None) -> int:
        """Corrections stored (or replaced) after `since` (all of them for None)."""
        query = select(func.count()).where(
            feedback.c.created_at > (since.isoformat() if since else "")
        )
        with self.db.reading() as conn:
            return conn.execute(query).scalar_one()

    def delete(self, feedback_id: str) -> None:
        with self.db.transaction() as conn:
            gone = conn.execute(delete(feedback).where(feedback.c.id == feedback_id)).rowcount
        if not gone:
            raise NotFound(f"no feedback {feedback_id!r}", code="feedback_not_found")
