"""Every table the service stores, in one place: the queries, the Alembic migrations, the backup
and the schema check in the tests all read these definitions.

Schema version 8 (the last one before Alembic) is the baseline revision; each later version is
one more revision in `migrations/versions/`. A change here is a new revision, never an edit of a
shipped one; `tests/test_schema.py` fails while the two disagree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

metadata = MetaData()

# Milliseconds since 1970 and ever-growing row numbers pass 2**31: 64 bits where a database tells
# the sizes apart (SQLite's INTEGER is 64 bits already, and its AUTOINCREMENT wants that name).
Long = BigInteger().with_variant(Integer(), "sqlite")


def _seq() -> Column:
    # Insertion order: pruning the oldest rows is a range delete, listings page by it.
    return Column("seq", Long, primary_key=True, autoincrement=True)


# -- uploads, jobs and versions ----------------------------------------------------------------

datasets = Table(
    "datasets",
    metadata,
    Column("id", Text, primary_key=True),
    Column("file", Text, nullable=False),  # its name under datasets/
    Column("format", Text, nullable=False),  # how it was uploaded
    Column("bytes", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("heads", Text, nullable=False),  # JSON list
    Column("label_counts", Text, nullable=False),  # JSON: head -> label -> rows
    Column("created_at", Text, nullable=False),  # ISO 8601, UTC
)

# An upload's key (its Idempotency-Key, else a hash of its body and options) -> its dataset.
upload_keys = Table(
    "upload_keys",
    metadata,
    Column("key", Text, primary_key=True),
    Column("dataset_id", Text, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    _seq(),
    Column("id", Text, unique=True, nullable=False),
    Column("record", Text, nullable=False),  # the whole job record, JSON
    sqlite_autoincrement=True,
)

# A bulk classification of a file (POST /api/v1/classify-jobs): its record, JSON, like a job's.
classify_jobs = Table(
    "classify_jobs",
    metadata,
    _seq(),
    Column("id", Text, unique=True, nullable=False),
    Column("record", Text, nullable=False),
    sqlite_autoincrement=True,
)

versions = Table(
    "versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("job_id", Text),
    Column("created_at", Text, nullable=False),
    Column("model_dir", Text, nullable=False),  # relative to the data directory when inside it
    Column("archive", Text, nullable=False),
    Column("metrics", Text, nullable=False),  # JSON
    Column("score", Float, nullable=False),  # validation macro-F1, mean over heads
    Column("data_rows", Integer, nullable=False),
)

# default_version, last_version (numbers are never reused) and predictions_pruned_until_ms.
meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Work one replica does at a time for all (the training job): who holds it, until when. The
# holder renews it while it works; a lease not renewed is free again once it expires.
leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),  # the replica: host, process and a random part
    Column("job_id", Text),
    Column("expires_ms", Long, nullable=False),
)

# -- predictions and feedback --------------------------------------------------------------------

# Classify answers kept for feedback (pruned by count and age); a prediction id starts with its
# creation time.
predictions = Table(
    "predictions",
    metadata,
    _seq(),
    Column("id", Text, unique=True, nullable=False),
    Column("created_ms", Long, nullable=False),
    Column("version", Integer),
    Column("text", Text),  # NULL when the service keeps no texts
    Column("text_sha256", Text, nullable=False),
    Column("labels", Text, nullable=False),  # JSON: head -> label, confidence, auto_route
    Column("rare_token_share", Float),  # for the drift watch; NULL from older archives
    Index("predictions_created", "created_ms"),
    Index("predictions_version", "version", "created_ms"),
    sqlite_autoincrement=True,
)

# The agents' corrections: training rows of their own, apart from uploads.
feedback = Table(
    "feedback",
    metadata,
    _seq(),
    Column("id", Text, unique=True, nullable=False),
    Column("prediction_id", Text, unique=True),
    Column("created_at", Text, nullable=False),
    Column("model_version", Integer),
    Column("text", Text, nullable=False),
    Column("labels", Text, nullable=False),  # JSON: head -> label
    Column("predicted", Text),  # JSON: head -> the prediction's label
    Column("row_id", Text),  # the stored training row it corrects (`<dataset id>:<line>`)
    Index("feedback_version", "model_version", "created_at"),
    Index("feedback_row_id", "row_id", unique=True),
    sqlite_autoincrement=True,
)

# -- help-desk connectors (shim/desks) -----------------------------------------------------------

# Each webhook delivery once.
connector_deliveries = Table(
    "connector_deliveries",
    metadata,
    Column("connector", Text, nullable=False),
    Column("delivery_id", Text, nullable=False),
    Column("created_ms", Long, nullable=False),
    PrimaryKeyConstraint("connector", "delivery_id"),
)

# Each desk ticket's prediction, for agents' later changes.
connector_tickets = Table(
    "connector_tickets",
    metadata,
    Column("connector", Text, nullable=False),
    Column("ticket_id", Text, nullable=False),
    Column("prediction_id", Text, nullable=False),
    Column("created_ms", Long, nullable=False),
    PrimaryKeyConstraint("connector", "ticket_id"),
)

# The write-backs waiting or done.
outbox = Table(
    "outbox",
    metadata,
    _seq(),
    Column("connector", Text, nullable=False),
    Column("ticket_id", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("answer", Text, nullable=False),  # JSON
    Column("status", Text, nullable=False),  # pending, done, failed
    Column("attempts", Integer, nullable=False),
    Column("next_ms", Long, nullable=False),
    Column("last_error", Text),
    Column("created_ms", Long, nullable=False),
    Column("done_ms", Long),
    Index("outbox_due", "status", "next_ms"),
    sqlite_autoincrement=True,
)

# Where polling a help desk goes on from (the last ticket and transaction seen).
connector_cursors = Table(
    "connector_cursors",
    metadata,
    Column("connector", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("updated_ms", Long, nullable=False),
    PrimaryKeyConstraint("connector", "name"),
)

# History imports: each import's cursor and counts, resumed from its cursor...
connector_imports = Table(
    "connector_imports",
    metadata,
    Column("connector", Text, nullable=False),
    Column("since", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("cursor", Text),
    Column("page_size", Integer, nullable=False),
    Column("pages", Integer, nullable=False),
    Column("imported", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("resumed", Integer, nullable=False),
    Column("error", Text),
    Column("started_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("finished_at", Text),
    PrimaryKeyConstraint("connector", "since"),
)

# ...and each imported ticket, so none is stored twice.
connector_imported = Table(
    "connector_imported",
    metadata,
    Column("connector", Text, nullable=False),
    Column("ticket_id", Text, nullable=False),
    Column("dataset_id", Text, nullable=False),
    PrimaryKeyConstraint("connector", "ticket_id"),
)
