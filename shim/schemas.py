"""The whole /api/v1 contract as pydantic models; names say the direction (`...Public` goes out).

`TrainRequest` is derived from `training.config.TrainConfig`, so a hyper-parameter and its
default are defined once, in the training package; here every field is optional.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from handlers.ticket_requests import (
    MAX_FIELD_CHARS,
    MAX_FIELD_NAME_CHARS,
    MAX_FIELDS,
    MAX_SIMILAR,
)
from shim.settings import TICKET_CHARS_LIMIT
from training.config import MAX_NAME_CHARS, TrainConfig, default
from training.progress import Progress
from training.text.cleaning import (
    CONTENT_TYPES,
    PLAIN_TYPE,
)
from training.text.data import Format
from training.text.head_names import MAX_HEADS
from training.text.text_rules import text_problem

# Model versions count from 1; a larger number than this cannot exist (SQLite's integers and
# TorchServe's version strings both hold it).
MAX_VERSION = 2**31 - 1


# What started a job: POST /train, POST /retrain (e.g. `ticketserve retrain` from cron), or the
# retraining policy after enough corrections or on drift.
Trigger = Literal["api", "retrain", "feedback", "drift"]


class JobStatus(StrEnum):
    """A training job's status (store.job_record.Job)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_data"])
    message: str
    details: Any = None


class ErrorPublic(BaseModel):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorBody


# -- training data ---------------------------------------------------------------------------


class RejectedRowPublic(BaseModel):
    row: int = Field(description="record number in the upload, from 1, header excluded")
    reason: str


class TrainDataUploadPublic(BaseModel):
    """What one upload did: per-row outcome, labels found, and what is stored now."""

    dataset_id: str
    replaced: bool = Field(description="whether earlier uploads were replaced")
    duplicate: bool = Field(
        False,
        description="the same upload (Idempotency-Key, or body and options) is already stored "
        "as dataset_id: nothing was added",
    )
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    rejected: list[RejectedRowPublic]
    duplicates_dropped: int
    conflicts: list[str]
    warnings: list[str]
    label_counts: dict[str, dict[str, int]]
    stored_rows: int = Field(description="rows stored over all datasets after this upload")
    stored_datasets: int


class DatasetPublic(BaseModel):
    """One stored upload (store.registry.DatasetRecord, less where its file lies on the server,
    which is no client's business)."""

    id: str
    format: Format
    bytes: int
    rows: int
    heads: list[str]
    label_counts: dict[str, dict[str, int]]
    created_at: datetime


class TrainDataSummaryPublic(BaseModel):
    """What is stored: total rows, label distribution and each dataset."""

    rows: int
    heads: list[str]
    label_counts: dict[str, dict[str, int]]
    datasets: list[DatasetPublic]


# -- training jobs ---------------------------------------------------------------------------


def _train_request_model() -> type[BaseModel]:
    """Every TrainConfig field, optional: its type, bound and description, with its default."""
    optional: dict[str, Any] = {}
    for name, info in TrainConfig.model_fields.items():
        hint = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        description = f"{info.description}; default: {json.dumps(default(name))}"
        optional[name] = (hint | None, Field(None, description=description))
    return create_model(
        "TrainRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        __doc__="Hyper-parameters for this run; omitted ones use the service's defaults.",
        **optional,
    )


TrainRequest = _train_request_model()


class ClassifyJobPublic(BaseModel):
    """A file classified in the background: its status, progress and where its result is."""

    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: datetime
    updated_at: datetime
    format: Literal["csv", "jsonl"] = Field(description="of the file, and of the result")
    rows: int = Field(description="tickets in the file")
    rows_done: int = Field(description="tickets answered so far (labels or an error each)")
    errors: int = Field(description="tickets answered with an error instead of labels")
    model_version: int | None = Field(
        description="the version that answers: the one asked for, else the default at the start"
    )
    heads: list[str]
    error: str | None = Field(description="why the job failed")
    result_url: str | None = Field(description="where the result is, once the job succeeded")


class TrainJobPublic(BaseModel):
    """A training job: its status, live progress, and the resulting version or the error."""

    job_id: str
    status: JobStatus
    phase: str = Field(description="queued, loading data, training, evaluating, publishing, done")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    data_rows: int | None = Field(description="tickets used, after validation")
    feedback_rows: int | None = Field(
        None, description="agents' corrections (POST /feedback) among the training data"
    )
    mode: str | None = Field(description="the training mode that runs (fast or full), once chosen")
    expected_duration_s: float | None = Field(
        description="measured expectation of the whole job: from the job's first batch, or "
        "until then from the previous job's seconds per ticket"
    )
    eta_s: float | None = Field(description="seconds left, by the latest measurement")
    progress: Progress | None
    params: dict[str, Any] = Field(description="the full training configuration")
    metrics: dict[str, Any] | None = Field(description="validation/test macro-F1 and per head")
    model_version: int | None
    is_default: bool | None
    note: str | None = Field(description="why the new version is or is not the default")
    error: str | None
    trigger: Trigger = Field(
        description="what started the job: POST /train (api), POST /retrain (retrain), or the "
        "retraining policy (feedback: retrain_after_feedback; drift: retrain_when_drift)"
    )


class RetrainPublic(BaseModel):
    """Whether a retraining job started, and the labelled data that arrived since the last job."""

    started: bool
    reason: str = Field(description="why a job started or did not")
    new_uploads: int = Field(description="uploads stored since the last job was created")
    new_feedback: int = Field(description="corrections stored or replaced since then")
    job: TrainJobPublic | None = Field(description="the started job")


# -- classification --------------------------------------------------------------------------


# How a ticket's body (or ticket_data) is written: plain text, HTML, or a whole RFC 822 mail.
ContentType = Literal[CONTENT_TYPES]  # type: ignore[valid-type]
CONTENT_TYPE_FIELD = Field(
    PLAIN_TYPE,
    description="the body's type: text/plain, text/html, or message/rfc822 (a whole mail as "
    "text, whose own subject is used when 'subject' is not given)",
)


FieldName = Annotated[str, Field(min_length=1, max_length=MAX_FIELD_NAME_CHARS)]
FieldValue = Annotated[str, Field(max_length=MAX_FIELD_CHARS)]
FIELDS_FIELD = Field(
    None,
    max_length=MAX_FIELDS,
    examples=[{"type": "Incident", "channel": "email"}],
    description="structured fields beside the text (ticket type, channel, customer tier...): "
    "a version trained with feature_columns reads those of its columns (names without regard "
    "to case); a value it never saw, or null, is unknown; other names are ignored",
)


class TicketIn(BaseModel):
    """One ticket: `ticket_data`, or `subject` and/or `body`; and its structured `fields`."""

    model_config = ConfigDict(extra="forbid")

    ticket_data: str | None = Field(None, examples=["My printer is broken"])
    subject: str | None = None
    body: str | None = None
    content_type: ContentType = CONTENT_TYPE_FIELD
    fields: dict[FieldName, FieldValue | None] | None = FIELDS_FIELD

    @model_validator(mode="after")
    def _one_form(self) -> TicketIn:
        if self.ticket_data is not None and (self.subject is not None or self.body is not None):
            raise ValueError("send 'ticket_data' or 'subject'/'body', not both")
        if self.ticket_data is None and self.subject is None and self.body is None:
            raise ValueError("a ticket needs 'ticket_data' or 'subject'/'body'")
        if not self.text():
            raise ValueError("the ticket text is empty")
        # Length is the service's setting, checked by the classifier.
        if problem := text_problem(self.text(), max_chars=sys.maxsize):
            raise ValueError(problem)
        return self

    def text(self) -> str:
        if self.ticket_data is not None:
            return self.ticket_data.strip()
        return "\n".join(p.strip() for p in (self.subject, self.body) if p and p.strip())

    def parts(self) -> tuple[str | None, str]:
        """(subject, body) for training.text.cleaning.clean_ticket; ticket_data is a body."""
        if self.ticket_data is not None:
            return None, self.ticket_data
        return self.subject, self.body or ""

    def is_markup(self) -> bool:
        """Whether the body is HTML or a mail, which may be longer than a ticket's text."""
        return self.content_type != PLAIN_TYPE


SIMILAR_FIELD = Field(
    0,
    ge=0,
    le=MAX_SIMILAR,
    description="list this many most similar stored tickets (the version's training tickets) "
    "with each answer, under `similar`; 0: none",
)


class ClassifyRequest(BaseModel):
    """One ticket (`ticket_data`, or `subject` + `body`) or several (`tickets`)."""

    model_config = ConfigDict(extra="forbid")

    ticket_data: str | None = Field(None, examples=["My printer is broken"])
    subject: str | None = None
    body: str | None = None
    content_type: ContentType = CONTENT_TYPE_FIELD
    fields: dict[FieldName, FieldValue | None] | None = FIELDS_FIELD
    tickets: list[TicketIn] | None = Field(None, min_length=1)
    similar: int = SIMILAR_FIELD

    @model_validator(mode="after")
    def _one_form(self) -> ClassifyRequest:
        single = self.ticket_data is not None or self.subject is not None or self.body is not None
        if self.tickets is not None and (single or self.fields is not None):
            raise ValueError(
                "'tickets' cannot be combined with 'ticket_data'/'subject'/'body'/'fields': "
                "give each ticket its own"
            )
        if self.tickets is not None and self.content_type != PLAIN_TYPE:
            raise ValueError("with 'tickets', give each ticket its own 'content_type'")
        if self.tickets is None:
            self.items()
        return self

    def items(self) -> list[TicketIn]:
        if self.tickets is not None:
            return self.tickets
        return [
            TicketIn(
                ticket_data=self.ticket_data,
                subject=self.subject,
                body=self.body,
                content_type=self.content_type,
                fields=self.fields,
            )
        ]


class SimilarRequest(TicketIn):
    """One ticket, and how many of the most similar stored tickets to list."""

    k: int = Field(5, ge=1, le=MAX_SIMILAR, description="how many tickets to list")


class SimilarTicketPublic(BaseModel):
    """A stored ticket of the version (one it was trained from)."""

    id: str = Field(
        description="the stored row: `<dataset>:<line>` for tickets uploaded to this service "
        "(GET /api/v1/train-data/{dataset}), else its row number in the file trained on"
    )
    labels: dict[str, str] = Field(description="its label per head, as uploaded")
    similarity: float = Field(description="cosine similarity of the model's embeddings, -1 to 1")
    text: str = Field(
        description="its text as stored (cleaned, and masked when masking was on), at most 280 "
        "characters"
    )


class SimilarPublic(BaseModel):
    similar: list[SimilarTicketPublic] = Field(description="the most similar first")
    model_version: int | None


class HeadPredictionPublic(BaseModel):
    label: str = Field(description="the answer: the model's label, or the fallback")
    confidence: float = Field(description="the model's probability for model_label")
    top_k: list[tuple[str, float]]
    model_label: str = Field(description="the model's own best guess")
    auto_route: bool = Field(
        description="the confidence clears this head's gate: the lowest threshold where the "
        "lower confidence bound (95 % by default) of the version's cross-validated precision "
        "reaches the target (or a configured threshold); always false while the gate is closed"
    )
    low_confidence: bool = Field(description="the confidence is below this head's gate")


class TicketPredictionPublic(BaseModel):
    """Every head's answer under the head's own name (`queue`, `priority`, `type`...: the label
    columns the version was trained on), plus the primary head (the queue, else the first head)
    as `predicted_label`/`confidence`."""

    model_config = ConfigDict(extra="allow")
    # The heads: each extra key is a head's name (training.text.head_names), never a field's.
    __pydantic_extra__: dict[str, HeadPredictionPublic] = Field(init=False)

    prediction_id: str = Field(
        description="this answer's id, for POST /api/v1/feedback while the answer is retained"
    )
    heads: list[str] = Field(
        description="the version's heads, in its order; each is a key of this answer"
    )
    predicted_label: str
    confidence: float
    auto_route: bool = Field(description="the primary head clears its gate")
    low_confidence: bool
    model_version: int | None
    rare_token_share: float | None = Field(
        None,
        description="share of the ticket's words the tokenizer split into rare pieces (3 or "
        "more, or its unknown token); high for a language the encoder does not know",
    )
    similar: list[SimilarTicketPublic] | None = Field(
        None,
        description="the most similar stored tickets, the most similar first, when the request "
        "asked for them (`similar` > 0); null otherwise, or when the version keeps no "
        "similar-ticket index (POST /api/v1/similar answers 409 for it)",
    )

    def head_predictions(self) -> dict[str, HeadPredictionPublic]:
        """Each head's answer, by name, in the version's order."""
        extra = self.__pydantic_extra__ or {}
        return {head: extra[head] for head in self.heads}


class ClassifyBatchPublic(BaseModel):
    predictions: list[TicketPredictionPublic]
    model_version: int | None


# -- feedback --------------------------------------------------------------------------------

# A label as the agent sends it; its spelling is unified with the stored data's.
Label = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
TicketText = Annotated[str, Field(max_length=TICKET_CHARS_LIMIT)]
MAX_ID_CHARS = 64
# A stored training row: `<dataset id>:<line>` (training/job.py); dataset ids are file stems.
MAX_ROW_ID_CHARS = 200
ROW_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,180}:[1-9][0-9]{0,9}$"


class FeedbackRequest(BaseModel):
    """An agent's labels for a classified ticket (`prediction_id`) or for any ticket (its text).

    By `prediction_id`, a head left out keeps the prediction's label (the agent accepted it); the
    text is the one classified, and must be sent again when the service keeps only its hash. A
    ticket never classified here needs its text and a label for every head of the stored data.
    """

    # Every other key is a head's label: `"queue": "Hardware"`, `"type": "Incident"`.
    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"prediction_id": "…", "queue": "Hardware"}]}
    )
    __pydantic_extra__: dict[str, Label | None] = Field(init=False)

    prediction_id: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)
    row_id: str | None = Field(
        None,
        pattern=ROW_ID_PATTERN,
        max_length=MAX_ROW_ID_CHARS,
        description="a stored training row (`<dataset id>:<line>`, as GET "
        "/api/v1/models/{version}/label-issues lists it): the correction replaces its labels "
        "in the next training",
    )
    ticket_data: TicketText | None = Field(None, examples=["My printer is broken"])
    subject: TicketText | None = None
    body: TicketText | None = None
    content_type: ContentType = CONTENT_TYPE_FIELD
    allow_new_labels: bool = Field(
        False, description="accept a label the stored training data does not have yet"
    )

    @model_validator(mode="after")
    def _one_ticket(self) -> FeedbackRequest:
        if len(self.labels()) > MAX_HEADS:
            raise ValueError(f"labels for at most {MAX_HEADS} heads")
        ticket = self.ticket()  # validated here, whatever else the body has
        if self.row_id is not None and (self.prediction_id is not None or ticket is not None):
            raise ValueError("a 'row_id' names a stored row: send no prediction_id nor ticket")
        if self.prediction_id is None and ticket is None and self.row_id is None:
            raise ValueError(
                "send a 'prediction_id', a 'row_id', or the ticket ('ticket_data' or "
                "'subject'/'body')"
            )
        return self

    def ticket(self) -> TicketIn | None:
        """The ticket the body carries (validated as classify does), if any."""
        if self.ticket_data is None and self.subject is None and self.body is None:
            return None
        return TicketIn(
            ticket_data=self.ticket_data,
            subject=self.subject,
            body=self.body,
            content_type=self.content_type,
        )

    def labels(self) -> dict[str, str]:
        """The labels sent, per head."""
        extra = self.__pydantic_extra__ or {}
        return {head: label for head, label in extra.items() if label is not None}


class FeedbackPublic(BaseModel):
    """One stored correction: a training row of its own."""

    feedback_id: str
    prediction_id: str | None = Field(description="none: a ticket never classified here")
    created_at: datetime = Field(description="when it was given (or last replaced)")
    model_version: int | None = Field(description="the version that made the prediction")
    text: str
    labels: dict[str, str] = Field(description="the training row's label per head")
    predicted: dict[str, str] | None = Field(description="the prediction's label per head")
    corrected: list[str] = Field(description="heads whose label differs from the prediction's")
    row_id: str | None = Field(None, description="the stored training row it relabels")


class FeedbackSavedPublic(FeedbackPublic):
    replaced: bool = Field(
        description="an earlier correction of the same prediction (or row) was replaced"
    )


class FeedbackListPublic(BaseModel):
    """A page of corrections, oldest first, and label counts over all of them."""

    total: int
    offset: int
    limit: int
    label_counts: dict[str, dict[str, int]]
    feedback: list[FeedbackPublic]


class FeedbackDeletedPublic(BaseModel):
    feedback_id: str
    deleted: Literal[True] = True


# -- monitoring --------------------------------------------------------------------------------


class AgreementPublic(BaseModel):
    """Feedback on logged predictions: how much of it agreed with the prediction."""

    total: int = Field(description="feedback (or feedback labels) on logged predictions")
    agreed: int = Field(description="of them, the ones that kept the predicted label")
    share: float | None = Field(description="agreed / total; null without feedback")


class HeadAgreementPublic(AgreementPublic):
    labels: dict[str, AgreementPublic] = Field(description="by the model's predicted label")


class FeedbackAgreementPublic(AgreementPublic):
    """A feedback agrees when every head it names kept the predicted label."""

    heads: dict[str, HeadAgreementPublic]


class AutoRoutePublic(BaseModel):
    """Logged classify answers of one head and how many cleared its auto-routing gate."""

    answers: int
    cleared: int
    unknown: int = Field(description="answers logged before the gate's result was kept")
    share: float | None = Field(description="cleared / (answers - unknown); null without any")


class QualityDayPublic(BaseModel):
    day: date = Field(description="UTC day")
    feedback: AgreementPublic
    heads: dict[str, AgreementPublic] = Field(description="feedback agreement per head")
    auto_route: dict[str, AutoRoutePublic]


class DriftSignalPublic(BaseModel):
    """One comparison of live answers with the model's reference, as shares per bin."""

    distance: float | None = Field(
        description="Jensen-Shannon distance (base 2): 0 the same distribution, 1 disjoint; "
        "null without a reference or live answers"
    )
    bins: list[str] = Field(description="the bins: labels, or value ranges")
    live: list[float] = Field(description="share of the window's answers per bin")
    reference: list[float] = Field(description="share of the reference per bin")


class HeadDriftPublic(BaseModel):
    score: float | None = Field(
        description="the largest of the head's label and confidence distances and the rare "
        "token distance; null until the window holds drift_min_predictions answers"
    )
    drifting: bool = Field(description="score > threshold")
    labels: DriftSignalPublic = Field(
        description="predicted labels vs the labels of the data the model learned from"
    )
    confidence: DriftSignalPublic = Field(
        description="confidence histogram vs the model's on validation"
    )


class DriftPublic(BaseModel):
    """Live answers of one version against what the model was trained and validated on."""

    window: int = Field(description="answers read: the version's newest, within retention")
    window_size: int = Field(description="the most answers read (drift_window)")
    min_predictions: int = Field(description="answers needed for a score")
    threshold: float = Field(description="a head drifts when its score is above this")
    status: Literal["ok", "drifting", "not_enough_data", "no_reference"] = Field(
        description="drifting: some head's score is above the threshold; no_reference: a "
        "model trained before drift references were kept"
    )
    rare_tokens: DriftSignalPublic = Field(
        description="per-ticket share of rare word pieces vs the training texts'"
    )
    rare_token_share: float | None = Field(description="mean share over the window")
    reference_rare_token_share: float | None = Field(description="mean share, training texts")
    heads: dict[str, HeadDriftPublic]


class RoutedPrecisionPublic(BaseModel):
    """Agents' feedback on answers that cleared the head's auto-routing gate: the precision the
    gate reaches live, with its 95 % Clopper-Pearson interval."""

    feedback: int = Field(description="feedback labels on auto-routed answers")
    agreed: int = Field(description="of them, the ones that kept the predicted label")
    precision: float | None = Field(description="agreed / feedback; null without feedback")
    low: float | None = Field(description="lower end of the interval; null without feedback")
    high: float | None = Field(description="upper end of the interval; null without feedback")
    target_precision: float | None = Field(description="what the gate promises")
    below_target: bool = Field(description="the interval's upper end is below the target")
    warning: str | None = Field(description="set when below_target")


class VersionQualityPublic(BaseModel):
    model_version: int
    feedback: FeedbackAgreementPublic = Field(description="over the retained window")
    auto_route: dict[str, AutoRoutePublic] = Field(description="per head, the retained window")
    auto_route_precision: dict[str, RoutedPrecisionPublic] = Field(
        description="per head, the retained window: how precise the auto-routed answers were, "
        "by agents' feedback (feedback given mostly on wrong answers makes this an underestimate)"
    )
    trend: list[QualityDayPublic] = Field(description="per UTC day, oldest first")
    drift: DriftPublic


class ConnectorStatsPublic(BaseModel):
    """One help desk's connector: its mode, last delivery and write-back outbox."""

    mode: str
    problem: str | None = Field(
        None, description="why the help desk cannot be used, as last seen (None: it answered)"
    )
    last_delivery: datetime | None = None
    pending: int = Field(description="write-backs waiting (outbox depth)")
    done: int
    failed: int = Field(description="write-backs given up (a 4xx, or out of tries)")
    last_error: str | None = None


class MonitoringPublic(BaseModel):
    """Live quality per model version: totals over the predictions log's retained window, and
    the same numbers per day for the last `days` days."""

    since: datetime = Field(description="start of the retained window of the totals")
    days: int
    versions: list[VersionQualityPublic]
    connectors: dict[str, ConnectorStatsPublic] = Field(
        default_factory=dict, description="each connected help desk's deliveries and outbox"
    )


# -- model versions --------------------------------------------------------------------------


class GateReachPublic(BaseModel):
    threshold: float
    precision: float
    precision_lower_bound: float
    coverage: float


class ClassGatePublic(BaseModel):
    """One predicted class's gate under a per-class rule: its share is of the tickets predicted
    as that class."""

    status: Literal["open", "closed"]
    threshold: float | None = Field(None, description="null: this class never routes")
    predicted: int = Field(description="held-out tickets predicted as this class")
    expected_coverage: float | None = None
    precision: float | None = None
    precision_lower_bound: float | None = None
    best_reachable: GateReachPublic | None = None


class GatePublic(BaseModel):
    """What a head's auto-routing gate promises, measured out of fold before the model shipped:
    tickets at or above `threshold` are right at least `precision_lower_bound` of the time
    (with `confidence_level` confidence), and about `expected_coverage` of tickets clear it."""

    status: Literal["open", "closed", "configured"] = Field(
        description="closed: no threshold's lower bound reaches the target, nothing is routed "
        "automatically; configured: a raw threshold set on the service, which promises nothing"
    )
    source: Literal["model", "service"] = Field(
        description="model: the gate fitted at training; service: set by the service's "
        "target_precision or confidence_thresholds"
    )
    target_precision: float | None = None
    confidence_level: float | None = None
    threshold: float | None = None
    expected_coverage: float | None = None
    precision: float | None = Field(None, description="out of fold, at the threshold")
    precision_lower_bound: float | None = None
    best_reachable: GateReachPublic | None = Field(
        None, description="a closed gate: the threshold with the highest lower bound"
    )
    rule: Literal["head", "class"] | None = Field(
        None, description="one threshold for the head, or one per predicted class (`classes`)"
    )
    classes: dict[str, ClassGatePublic] | None = Field(
        None, description="a gate per class: each predicted class's own gate"
    )
    unreachable: list[str] | None = Field(
        None, description="a gate per class: the classes no threshold opens (never routed)"
    )


class ModelVersionPublic(BaseModel):
    version: int
    is_default: bool
    loaded: bool = Field(description="registered with TorchServe right now")
    created_at: datetime
    job_id: str | None
    data_rows: int
    validation_macro_f1: float | None
    test_macro_f1: float | None
    gates: dict[str, GatePublic] = Field(
        description="per head, the auto-routing gate as the service applies it (none for a "
        "model trained before gates had a lower bound)"
    )
    metrics: dict[str, Any]


class ModelVersionListPublic(BaseModel):
    default_version: int | None
    versions: list[ModelVersionPublic]


class ModelDeletedPublic(BaseModel):
    version: int
    deleted: Literal[True] = True
    default_version: int | None


class LabelIssuePublic(BaseModel):
    """One training row whose given label the held-out scores contradict."""

    row_id: str = Field(
        description="the stored training row: `<dataset id>:<line>`, relabelled with POST "
        "/api/v1/feedback (`row_id` and the head's label); `feedback:<id>` is a correction"
    )
    text: str = Field(description="an excerpt of the training text as stored (cleaned, masked)")
    given: str = Field(description="the label the row has")
    suggested: str = Field(description="the most probable other label")
    score: float = Field(
        description="the given label's held-out probability over its class's average (cleanlab's "
        "confident threshold); lower is more suspect"
    )
    given_probability: float
    suggested_probability: float


class LabelIssuesPublic(BaseModel):
    """A page of one head's suspected label errors, the most suspect first."""

    version: int
    head: str
    available: bool = Field(description="false: this training had no held-out scores to rank")
    reason: str | None = Field(None, description="why not available")
    source: str | None = Field(None, description="which rows were scored, and by what")
    method: str | None = None
    rows_scored: int = 0
    flagged: int = Field(0, description="rows flagged in all (more than are kept: see stored)")
    stored: int = Field(0, description="flagged rows kept in the model, the most suspect first")
    per_class: dict[str, int] = Field(
        default_factory=dict, description="flagged rows per given label"
    )
    offset: int
    limit: int
    issues: list[LabelIssuePublic]


# -- operations ------------------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"] = "ok"
    torchserve: Literal["up", "restarting", "not_started"] = "up"
    restarts: int = Field(0, description="TorchServe restarts since the service started")
    detail: str | None = None


class ReadyPublic(BaseModel):
    ready: bool
    model_version: int | None
    torchserve: bool
    training: bool
    detail: str | None = None
    connectors: dict[str, str] = Field(
        default_factory=dict,
        description="each help desk: 'ok', or why it cannot be used (readiness does not "
        "depend on it: classification works without)",
    )


class ConnectorDeliveryPublic(BaseModel):
    """What became of one help-desk delivery."""

    status: Literal["accepted", "duplicate", "ignored", "feedback"] = Field(
        description="accepted: classified, write-back queued; duplicate: this delivery was "
        "accepted before; feedback: an agent's queue and priority of a ticket we classified, "
        "recorded as a correction; ignored: anything else (our own update, an agent's article "
        "on a ticket we never saw, a ticket routed before)"
    )
    delivery: str
    ticket_id: str | None = None
    prediction_id: str | None = None


# -- help-desk history imports ---------------------------------------------------------------

# Older than any help desk still in use; a later date than tomorrow (UTC) is a mistake.
EARLIEST_IMPORT = date(1990, 1, 1)
MAX_IMPORT_PAGE = 200  # Zammad's search answers at most 200 a page


class ImportRequest(BaseModel):
    """Which closed tickets to import: those changed on or after `since`."""

    model_config = ConfigDict(extra="forbid")

    since: date = Field(
        ge=EARLIEST_IMPORT,
        description="closed tickets changed on or after this day (YYYY-MM-DD); an import "
        "interrupted with the same day resumes at its cursor",
        examples=["2024-01-01"],
    )
    page_size: int = Field(
        100, ge=1, le=MAX_IMPORT_PAGE, description="tickets asked of the help desk per page"
    )

    @field_validator("since", mode="before")
    @classmethod
    def _a_day(cls, value: Any) -> Any:
        # Only "YYYY-MM-DD": pydantic would also take a timestamp or a date-time at midnight.
        if not isinstance(value, str) or len(value) != len("YYYY-MM-DD"):
            raise ValueError("must be a day as YYYY-MM-DD")
        return value

    @model_validator(mode="after")
    def _not_in_the_future(self) -> ImportRequest:
        latest = datetime.now(UTC).date() + timedelta(days=1)  # a client a time zone ahead
        if self.since > latest:
            raise ValueError(f"since {self.since.isoformat()} is in the future")
        return self


class ConnectorImportPublic(BaseModel):
    """A help desk's history import: where it is, and what it stored."""

    connector: str
    since: date
    status: Literal["running", "done", "failed"] = Field(
        description="running; done: every page read; failed: see `error` (start it again with "
        "the same `since` to resume at `cursor`)"
    )
    page_size: int
    pages: int = Field(description="pages read so far, over every resumed run of this import")
    imported: int = Field(description="tickets stored as training rows")
    duplicates: int = Field(description="tickets imported before (by their help-desk id)")
    skipped: int = Field(
        description="tickets without a queue or priority, or whose text is empty, too long or "
        "nothing after cleaning, or identical to another of the same page"
    )
    cursor: str | None = Field(
        description="where the next page starts (the help desk's own marker, e.g. the last "
        "ticket id read); null before the first page and when done"
    )
    resumed: bool = Field(description="this run went on from a stored cursor")
    error: str | None = None
    started_at: datetime
    updated_at: datetime = Field(description="when the last page was stored")
    finished_at: datetime | None = None
