"""The predictions log's table: classify answers kept for feedback, pruned by count and age."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, func, select

from shim.store.registry.database import Database
from shim.store.registry.meta import get_meta, set_meta
from shim.store.registry.records import PredictionRecord
from shim.store.registry.tables import predictions

# The creation time (ms) of the newest prediction pruned so far.
PRUNED_UNTIL = "predictions_pruned_until_ms"


class Predictions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, records: list[PredictionRecord], keep_count: int, cutoff_ms: int) -> None:
        """Log a request's answers and prune, in one transaction: beyond the newest
        `keep_count`, and older than `cutoff_ms`. A log, not a record: no fsync per request."""
        p = predictions.c
        with self.db.transaction(durable=False) as conn:
            conn.execute(
                predictions.insert(),
                [
                    {
                        "id": r.id,
                        "created_ms": r.created_ms,
                        "version": r.version,
                        "text": r.text,
                        "text_sha256": r.text_sha256,
                        "labels": json.dumps(r.labels),
                        "rare_token_share": r.rare_token_share,
                    }
                    for r in records
                ],
            )
            top = conn.execute(select(func.max(p.seq))).scalar() or 0
            last_kept_out = top - keep_count
            # Both through an index: the cost follows the rows pruned, not the rows kept.
            newest = func.coalesce(func.max(p.created_ms), 0)
            newest_gone = max(
                conn.execute(select(newest).where(p.seq <= last_kept_out)).scalar_one(),
                conn.execute(select(newest).where(p.created_ms < cutoff_ms)).scalar_one(),
            )
            if newest_gone:
                conn.execute(delete(predictions).where(p.seq <= last_kept_out))
                conn.execute(delete(predictions).where(p.created_ms < cutoff_ms))
                until = get_meta(conn, PRUNED_UNTIL, lock=True)
                set_meta(conn, PRUNED_UNTIL, str(max(int(until or 0), newest_gone)))

    def get(self, prediction_id: str) -> PredictionRecord | None:
        with self.db.reading() as conn:
            row = conn.execute(select(predictions).where(predictions.c.id == prediction_id)).first()
        if row is None:
            return None
        return PredictionRecord(
            id=row.id,
            created_ms=row.created_ms,
            version=row.version,
            text=row.text,
            text_sha256=row.text_sha256,
            labels=json.loads(row.labels),
            rare_token_share=row.rare_token_share,
        )

    def recent(
        self, version: int, since_ms: int, limit: int
    ) -> list[tuple[dict[str, dict[str, Any]], float | None]]:
        """The newest `limit` answers of `version` logged since `since_ms`: (labels, rare token
        share) each, newest first."""
        p = predictions.c
        query = (
            select(p.labels, p.rare_token_share)
            .where(p.version == version, p.created_ms >= since_ms)
            .order_by(p.created_ms.desc(), p.seq.desc())
            .limit(limit)
        )
        with self.db.reading() as conn:
            return [(json.loads(labels), share) for labels, share in conn.execute(query)]

    def pruned_until(self) -> int:
        """The creation time (ms) of the newest prediction pruned so far (0: none)."""
        with self.db.reading() as conn:
            return int(get_meta(conn, PRUNED_UNTIL) or 0)
