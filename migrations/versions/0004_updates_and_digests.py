"""updates and digests

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Issues get a kind (newsletter, update, digest) and what they carry; digest runs and their subscribers.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mailer.models.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("cutoff", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("planned_at", mailer.models.base.UTCDateTime(), nullable=True),
        sa.Column("subscribers", sa.Integer(), nullable=False),
        sa.Column("emails", sa.Integer(), nullable=False),
        sa.Column("renders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_runs")),
        sa.UniqueConstraint("frequency", "period", name="uq_digest_runs_frequency_period"),
    )
    op.create_table(
        "digest_run_subscribers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column(
            "update_ids", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),

        sa.Column(
            "topic_ids", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("cutoff", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("processed_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["digest_runs.id"], name=op.f("fk_digest_run_subscribers_run_id_digest_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_run_subscribers")),
        sa.UniqueConstraint("run_id", "subscriber_id", name="uq_digest_run_subscribers_run_subscriber"),
    )
    with op.batch_alter_table("digest_run_subscribers", schema=None) as batch_op:
        batch_op.create_index("ix_digest_run_subscribers_subscriber", ["subscriber_id", "cutoff"], unique=False)

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="newsletter", nullable=False))
        batch_op.add_column(sa.Column("update_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("digest_run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("digest_key", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_issues_digest_run_id_digest_runs"), "digest_runs", ["digest_run_id"], ["id"]
        )
        batch_op.create_foreign_key(batch_op.f("fk_issues_update_id_updates"), "updates", ["update_id"], ["id"])


    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frequency_since", mailer.models.base.UTCDateTime(), nullable=True))
        batch_op.create_index(
            "ix_subscriptions_topic_frequency_open",
            ["topic_id", "frequency", "subscriber_id"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.create_index(
            "ix_subscriptions_frequency_open",
            ["frequency", "subscriber_id"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.create_index("ix_subscriptions_subscriber", ["subscriber_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_subscriber")
        batch_op.drop_index("ix_subscriptions_frequency_open")
        batch_op.drop_index("ix_subscriptions_topic_frequency_open")
        batch_op.drop_column("frequency_since")

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_issues_update_id_updates"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_issues_digest_run_id_digest_runs"), type_="foreignkey")
        batch_op.drop_column("digest_key")
        batch_op.drop_column("digest_run_id")
        batch_op.drop_column("update_id")
        batch_op.drop_column("kind")

    with op.batch_alter_table("digest_run_subscribers", schema=None) as batch_op:
        batch_op.drop_index("ix_digest_run_subscribers_subscriber")

    op.drop_table("digest_run_subscribers")
    op.drop_table("digest_runs")
