"""Live quality's reads: the corrections and logged answers of some versions over a time window,
counted per version, UTC day and head. Counted here rather than in SQL: label spellings compare by
`training.text.labels.label_key`, as the feedback use case compares them, on any database."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from shim.store.registry.database import Database
from shim.store.registry.tables import feedback, predictions
from training.text.labels import label_key

# (version, day, head, label) -> [rows, agreed]
Counts = dict[tuple[Any, ...], list[int]]


class Quality:
    def __init__(self, db: Database) -> None:
        self.db = db

    def agreement(
        self, versions: list[int], since: datetime
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Feedback on logged predictions of `versions` stored since `since`.

        Returns (per version and UTC day: feedback, agreed on every head) and (per version, day,
        head and predicted label: labels, agreed), counting only the heads the prediction has.
        """
        overall: Counts = defaultdict(lambda: [0, 0])
        per_label: Counts = defaultdict(lambda: [0, 0])
        for version, created_at, labels, predicted in self._feedback(versions, since):
            day = created_at[:10]
            compared = [
                (head, predicted[head], _agrees(label, predicted[head]))
                for head, label in labels.items()
                if predicted.get(head) is not None
            ]
            if not compared:
                continue
            cell = overall[version, day]
            cell[0] += 1
            cell[1] += all(agreed for _, _, agreed in compared)
            for head, said, agreed in compared:
                cell = per_label[version, day, head, said]
                cell[0] += 1
                cell[1] += agreed
        return _rows(overall), _rows(per_label)

    def routed_agreement(self, versions: list[int], since: datetime) -> list[tuple[Any, ...]]:
        """Feedback stored since `since` on logged predictions of `versions` whose head cleared
        its auto-routing gate: (version, head, feedback labels, agreed)."""
        if not versions:
            return []
        f, p = feedback.c, predictions.c
        query = (
            select(f.model_version, f.labels, f.predicted, p.labels)
            .join(predictions, p.id == f.prediction_id)
            .where(f.model_version.in_(versions), f.created_at >= since.isoformat())
        )
        counts: Counts = defaultdict(lambda: [0, 0])
        with self.db.reading() as conn:
            rows = conn.execute(query).all()
        for version, labels, predicted, answered in rows:
            said = json.loads(predicted) if predicted is not None else {}
            answer = json.loads(answered)
            for head, label in json.loads(labels).items():
                if (answer.get(head) or {}).get("auto_route") is True:
                    cell = counts[version, head]
                    cell[0] += 1
                    cell[1] += _agrees(label, said.get(head))
        return _rows(counts)

    def auto_routing(self, versions: list[int], since_ms: int) -> list[tuple[Any, ...]]:
        """Per version, UTC day and head of the predictions logged since `since_ms`: (version,
        day, head, answers, cleared the gate, unknown: logged before the log kept it)."""
        if not versions:
            return []
        p = predictions.c
        query = select(p.version, p.created_ms, p.labels).where(
            p.version.in_(versions), p.created_ms >= since_ms
        )
        counts: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
        with self.db.reading() as conn:
            for version, created_ms, labels in conn.execute(query):
                day = datetime.fromtimestamp(created_ms // 1000, UTC).date().isoformat()
                for head, answer in json.loads(labels).items():
                    cell = counts[version, day, head]
                    cell[0] += 1
                    cell[1] += answer.get("auto_route") is True
                    cell[2] += "auto_route" not in answer
        return _rows(counts)

    def _feedback(
        self, versions: list[int], since: datetime
    ) -> Iterator[tuple[int, str, dict[str, str], dict[str, Any]]]:
        """(version, created_at, labels, predicted) of the corrections that name a prediction."""
        if not versions:
            return
        f = feedback.c
        query = select(f.model_version, f.created_at, f.labels, f.predicted).where(
            f.model_version.in_(versions),
            f.created_at >= since.isoformat(),
            f.predicted.is_not(None),
        )
        with self.db.reading() as conn:
            rows = conn.execute(query).all()
        for version, created_at, labels, predicted in rows:
            yield version, created_at, json.loads(labels), json.loads(predicted)


def _agrees(label: str, said: Any) -> bool:
    return isinstance(said, str) and label_key(label) == label_key(said)


def _rows(counts: dict[tuple[Any, ...], list[int]]) -> list[tuple[Any, ...]]:
    return [(*key, *values) for key, values in counts.items()]
