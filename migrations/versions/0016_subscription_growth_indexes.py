"""subscriptions by when they started and ended: the home page's weekly growth per topic

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-01

The home page counts, for the last 12 weeks, the subscriptions each topic gained and lost. With these two
indexes that is a range of recent rows (started or ended since the first of those weeks, with their topic in the
index), not a pass over every subscription ever made (bench/home_bench.py).
"""

from alembic import op

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_subscriptions_started_topic", "subscriptions", ["started_at", "topic_id"])
    op.create_index("ix_subscriptions_ended_topic", "subscriptions", ["ended_at", "topic_id"])


def downgrade() -> None:
    op.drop_index("ix_subscriptions_ended_topic", table_name="subscriptions")
    op.drop_index("ix_subscriptions_started_topic", table_name="subscriptions")
