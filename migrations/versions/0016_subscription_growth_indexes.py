"""subscriptions by when they started and ended, and topics' counts kept: the home page's subscribers per topic

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-01

The home page counts, for the last 12 weeks, the subscriptions each topic gained and lost. With these two
indexes that is a range of recent rows (started or ended since the first of those weeks, with their topic in the
index), not a pass over every subscription ever made (bench/home_bench.py). `topic_counts` keeps each topic's open
subscriptions at a moment (the hourly retention job writes it); the page adds and takes away what started and
ended since, instead of counting every open subscription.
"""

import sqlalchemy as sa
from alembic import op

import mailer.models.base

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "topic_counts",
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("counted_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("open_subscriptions", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["topic_id"], ["topics.id"], name=op.f("fk_topic_counts_topic_id_topics")),
        sa.PrimaryKeyConstraint("topic_id", name=op.f("pk_topic_counts")),
    )
    op.create_index("ix_subscriptions_started_topic", "subscriptions", ["started_at", "topic_id"])
    op.create_index("ix_subscriptions_ended_topic", "subscriptions", ["ended_at", "topic_id"])


def downgrade() -> None:
    op.drop_index("ix_subscriptions_ended_topic", table_name="subscriptions")
    op.drop_index("ix_subscriptions_started_topic", table_name="subscriptions")
    op.drop_table("topic_counts")
