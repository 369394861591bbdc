"""the feedback loop: bounce and complaint reports, suppressions that say from which message, auto-pause

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

`feedback_events` holds each bounce (a DSN after the relay accepted, a provider's receipt, a refusal while we
sent) and each complaint (an ARF report), one row per report and recipient, keyed so a report read twice is
one row. A suppression now names the event and the issue behind it. An issue keeps why it paused itself, and
whether it still may (a publisher who resumed it decided).
"""

import sqlalchemy as sa
from alembic import op

import mailer.models.base

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=True),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("received_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_events")),
        sa.UniqueConstraint("key", name=op.f("uq_feedback_events_key")),
    )
    op.create_index("ix_feedback_events_subscriber_received", "feedback_events", ["subscriber_id", "received_at"])
    op.create_index("ix_feedback_events_issue_kind", "feedback_events", ["issue_id", "kind"])
    op.create_index(op.f("ix_feedback_events_received_at"), "feedback_events", ["received_at"])
    with op.batch_alter_table("suppressions") as batch:
        batch.add_column(sa.Column("event_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("issue_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("paused_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("auto_pause", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("auto_pause")
        batch.drop_column("paused_reason")
    with op.batch_alter_table("suppressions") as batch:
        batch.drop_column("issue_id")
        batch.drop_column("event_id")
    op.drop_index(op.f("ix_feedback_events_received_at"), table_name="feedback_events")
    op.drop_index("ix_feedback_events_issue_kind", table_name="feedback_events")
    op.drop_index("ix_feedback_events_subscriber_received", table_name="feedback_events")
    op.drop_table("feedback_events")
