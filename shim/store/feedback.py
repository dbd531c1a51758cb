"""Agents' corrections: checked like uploads, stored as training rows apart from the uploads.

A correction names a logged prediction (`shim.store.predictions`), carries a ticket never classified
here, or names a stored training row (`row_id`, `<dataset id>:<line>`: a suspected label error
relabelled, GET /api/v1/models/{version}/label-issues). Its labels are checked against the stored
training data's, per head, and take their spelling; the next training job gets every stored
correction as one extra data file, and leaves out each training row a correction relabels.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from shim.errors import NotFound, Unprocessable
from shim.metrics import ApiMetrics
from shim.schemas import (
    FeedbackDeletedPublic,
    FeedbackListPublic,
    FeedbackPublic,
    FeedbackRequest,
    FeedbackSavedPublic,
)
from shim.settings import Settings
from shim.store.predictions import PredictionLog, text_sha256
from shim.store.registry import FeedbackRecord, PredictionRecord, Store, utcnow
from shim.store.ticket_texts import cleaned_texts
from training.job import FEEDBACK_FILE as JOB_FEEDBACK_FILE
from training.text.labels import label_key
from training.text.text_rules import label_problem

FEEDBACK_FILE = JOB_FEEDBACK_FILE  # the job reads its row ids by this name
MAX_KNOWN_SHOWN = 50  # labels listed in an unknown label's error


class Feedback:
    """The feedback use case: take a correction, list them, remove one."""

    def __init__(
        self, settings: Settings, store: Store, predictions: PredictionLog, metrics: ApiMetrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.predictions = predictions
        self.metrics = metrics
        # Called with each stored correction once committed (the retraining policy).
        self.listeners: list[Callable[[FeedbackRecord], None]] = []

    def submit(self, request: FeedbackRequest) -> FeedbackSavedPublic:
        """Validate and store one correction (committed before return); blocking."""
        known = self.known_labels()
        sent = {head: " ".join(label.split()) for head, label in request.labels().items()}
        for head, label in sent.items():
            # Before any message repeats it (a lone surrogate cannot be sent back as UTF-8);
            # the stored data's labels all pass, so this refuses no known label.
            problem = label_problem(label) if label else f"the {head} label is blank"
            if problem:
                raise Unprocessable(problem, {"head": head}, code="invalid_label")
            if head not in known:
                raise Unprocessable(
                    f"the stored training data has no {head!r} labels; its heads: "
                    f"{', '.join(known)}",
                    {"head": head, "heads": list(known)},
                    code="unknown_head",
                )
        text = self._text(request)
        prediction = None
        predicted: dict[str, str] | None = None
        if request.row_id is not None:
            # The row's own labels complete the heads not sent; it is "what was given".
            text, predicted = self._stored_row(request.row_id)
        elif request.prediction_id is not None:
            prediction = self.predictions.get(request.prediction_id)
            predicted = {head: str(p["label"]) for head, p in prediction.labels.items()}
            # A head of the stored data the version was not trained on (a training request's
            # label_columns) has no prediction: the agent's label completes the training row.
            text = self._prediction_text(prediction, text)
        assert text is not None  # FeedbackRequest needs a prediction_id or a text
        labels = {head: sent.get(head) or (predicted or {}).get(head) for head in known}
        missing = [head for head, label in labels.items() if not label]
        if missing:
            raise Unprocessable(
                f"no label for {', '.join(missing)}: "
                + (
                    "the prediction has none; send it"
                    if prediction is not None
                    else "a ticket never classified here needs a label for every head"
                ),
                {"missing": missing},
                code="missing_label",
            )
        labels = {
            head: self._label(head, str(label), known[head], request.allow_new_labels)
            for head, label in labels.items()
        }
        record, replaced = self.store.feedback.put(
            FeedbackRecord(
                id=uuid.uuid4().hex[:16],
                prediction_id=request.prediction_id,
                created_at=utcnow(),
                model_version=prediction.version if prediction is not None else None,
                text=text,
                labels=labels,
                predicted=predicted,
                row_id=request.row_id,
            ),
            self.settings.max_feedback_rows,
        )
        for head, label in labels.items():
            before = (predicted or {}).get(head)
            agreed = "none" if before is None else str(label_key(before) == label_key(label))
            self.metrics.feedback.labels(head=head, agreed=agreed.lower()).inc()
        for listener in self.listeners:
            listener(record)
        return FeedbackSavedPublic(**public(record).model_dump(), replaced=replaced)

    def page(self, offset: int, limit: int) -> FeedbackListPublic:
        """A page of corrections, and label counts over all of them."""
        total, counts = self.store.feedback.counts()
        return FeedbackListPublic(
            total=total,
            offset=offset,
            limit=limit,
            label_counts=counts,
            feedback=[public(r) for r in self.store.feedback.page(offset, limit)],
        )

    def delete(self, feedback_id: str) -> FeedbackDeletedPublic:
        self.store.feedback.delete(feedback_id)  # 404 for an unknown id
        return FeedbackDeletedPublic(feedback_id=feedback_id)

    def known_labels(self) -> dict[str, dict[str, str]]:
        """Head -> label key -> spelling, over every stored upload (the first spelling wins)."""
        datasets = self.store.datasets.all()
        if not datasets:
            raise Unprocessable(
                "no training data stored: feedback is checked against it; upload tickets to "
                "POST /api/v1/train-data first",
                code="no_training_data",
            )
        known: dict[str, dict[str, str]] = {head: {} for head in datasets[0].heads}
        for dataset in datasets:
            for head, counts in dataset.label_counts.items():
                for label in counts:
                    known.setdefault(head, {}).setdefault(label_key(label), label)
        return known

    def _stored_row(self, row_id: str) -> tuple[str, dict[str, str]]:
        """The text and labels of a stored training row; 404 when its upload is gone."""
        dataset_id, _, line = row_id.rpartition(":")
        dataset = next((d for d in self.store.datasets.all() if d.id == dataset_id), None)
        if dataset is None:
            raise NotFound(
                f"no stored upload {dataset_id!r}: it was replaced or never existed",
                {"row_id": row_id},
                code="row_not_found",
            )
        number = int(line)
        with dataset.file.open(encoding="utf-8") as rows:
            found = next((r for i, r in enumerate(rows, 1) if i == number), None)
        if found is None:
            raise NotFound(
                f"upload {dataset_id} has {dataset.rows} rows, not {number}",
                {"row_id": row_id},
                code="row_not_found",
            )
        row = json.loads(found)
        return str(row["text"]), {h: str(row[h]) for h in dataset.heads if row.get(h) is not None}

    def _text(self, request: FeedbackRequest) -> str | None:
        ticket = request.ticket()
        if ticket is None:
            return None
        # Stored and compared as classify logged it: cleaned, personal data masked.
        return cleaned_texts([ticket], self.settings)[0]

    def _prediction_text(self, prediction: PredictionRecord, text: str | None) -> str:
        """The classified text: the logged one, or the one sent, which must be it."""
        if text is None:
            if prediction.text is None:
                raise Unprocessable(
                    "this service keeps only a hash of classified texts: send the ticket "
                    "('ticket_data' or 'subject'/'body') with the prediction_id",
                    code="text_required",
                )
            return prediction.text
        if text_sha256(text) != prediction.text_sha256:
            raise Unprocessable(
                f"the text sent is not the one prediction {prediction.id} classified",
                code="text_mismatch",
            )
        return text

    def _label(self, head: str, label: str, known: dict[str, str], allow_new: bool) -> str:
        """The stored data's spelling of `label`; a new one only when allowed and usable."""
        if label_key(label) in known:
            return known[label_key(label)]
        if not allow_new:
            shown = sorted(known.values())[:MAX_KNOWN_SHOWN]
            raise Unprocessable(
                f"unknown {head} label {label!r}: the stored training data has "
                f'{", ".join(repr(k) for k in shown)}; send "allow_new_labels": true to add it',
                {"head": head, "label": label, "known": shown},
                code="unknown_label",
            )
        if problem := label_problem(label):  # a predicted label, not yet in the stored data
            raise Unprocessable(f"{head}: {problem}", {"head": head}, code="invalid_label")
        return label


def public(record: FeedbackRecord) -> FeedbackPublic:
    predicted = record.predicted or {}
    return FeedbackPublic(
        feedback_id=record.id,
        prediction_id=record.prediction_id,
        created_at=record.created_at,
        model_version=record.model_version,
        text=record.text,
        labels=record.labels,
        predicted=record.predicted,
        row_id=record.row_id,
        corrected=[
            head
            for head, label in record.labels.items()
            if head in predicted and label_key(predicted[head]) != label_key(label)
        ],
    )


def training_file(records: list[FeedbackRecord], heads: list[str]) -> tuple[bytes, int]:
    """Corrections as training rows (JSON Lines, like a stored upload) for data with `heads`;
    returns (content, rows). One stored before the data's heads changed, and lacking one of
    them, is left out."""
    rows = [
        {"text": r.text, **{head: r.labels[head] for head in heads}} for r in usable(records, heads)
    ]
    content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return content.encode("utf-8"), len(rows)


def usable(records: list[FeedbackRecord], heads: list[str]) -> list[FeedbackRecord]:
    """The corrections that become training rows of data with `heads`, in `training_file`'s
    order."""
    return [r for r in records if all(head in r.labels for head in heads)]


def superseded_rows(records: list[FeedbackRecord], datasets: list[str]) -> dict[str, list[int]]:
    """Per stored upload's file name, the lines that corrections relabel: training leaves the
    row out and learns the correction instead. Uploads no longer stored are skipped."""
    out: dict[str, list[int]] = {}
    for record in records:
        if record.row_id is None:
            continue
        dataset_id, _, line = record.row_id.rpartition(":")
        if dataset_id in datasets:
            out.setdefault(f"{dataset_id}.jsonl", []).append(int(line))
    return out
