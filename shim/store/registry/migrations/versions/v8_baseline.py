"""The registry's tables at schema version 8, the baseline: what the steps before Alembic built
(shim/store/registry/legacy.py), so a registry they built is stamped at this revision as it is."""

import sqlalchemy as sa
from alembic import op

# As tables.Long: 64 bits, INTEGER on SQLite.
LONG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "8"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_cursors",
        sa.Column("connector", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_ms", LONG, nullable=False),
        sa.PrimaryKeyConstraint("connector", "name"),
    )
    op.create_table(
        "connector_deliveries",
        sa.Column("connector", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.Text(), nullable=False),
        sa.Column("created_ms", LONG, nullable=False),
        sa.PrimaryKeyConstraint("connector", "delivery_id"),
    )
    op.create_table(
        "connector_imported",
        sa.Column("connector", sa.Text(), nullable=False),
        sa.Column("ticket_id", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("connector", "ticket_id"),
    )
    op.create_table(
        "connector_imports",
        sa.Column("connector", sa.Text(), nullable=False),
        sa.Column("since", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("page_size", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("resumed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("connector", "since"),
    )
    op.create_table(
        "connector_tickets",
        sa.Column("connector", sa.Text(), nullable=False),
        sa.Column("ticket_id", sa.Text(), nullable=False),
        sa.Column("prediction_id", sa.Text(), nullable=False),
        sa.Column("created_ms", LONG, nullable=False),
        sa.PrimaryKeyConstraint("connector", "ticket_id"),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("heads", sa.Text(), nullable=False),
        sa.Column("label_counts", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "feedback",
        sa.Column("seq", LONG, autoincrement=True, nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("prediction_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("predicted", sa.Text(), nullable=True),
        sa.Column("row_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("prediction_id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("feedback_row_id", ["row_id"], unique=True)
        batch_op.create_index("feedback_version", ["model_version", "created_at"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("seq", LONG, autoincrement=True, nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", LONG, autoincrement=True, nullable=False),
        sa.Column("connector", sa.Text(), nullable=False),
        sa.Column("ticket_id", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_ms", LONG, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_ms", LONG, nullable=False),
        sa.Column("done_ms", LONG, nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("outbox_due", ["status", "next_ms"], unique=False)

    op.create_table(
        "predictions",
        sa.Column("seq", LONG, autoincrement=True, nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("created_ms", LONG, nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("text_sha256", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("rare_token_share", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index("predictions_created", ["created_ms"], unique=False)
        batch_op.create_index("predictions_version", ["version", "created_ms"], unique=False)

    op.create_table(
        "upload_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("model_dir", sa.Text(), nullable=False),
        sa.Column("archive", sa.Text(), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("data_rows", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )


def downgrade() -> None:
    op.drop_table("versions")
    op.drop_table("upload_keys")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("predictions_version")
        batch_op.drop_index("predictions_created")

    op.drop_table("predictions")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("outbox_due")

    op.drop_table("outbox")
    op.drop_table("meta")
    op.drop_table("jobs")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("feedback_version")
        batch_op.drop_index("feedback_row_id")

    op.drop_table("feedback")
    op.drop_table("datasets")
    op.drop_table("connector_tickets")
    op.drop_table("connector_imports")
    op.drop_table("connector_imported")
    op.drop_table("connector_deliveries")
    op.drop_table("connector_cursors")
