"""audience: attributes, segments, imports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Subscriber attributes (audience, services), subscribed_at for segments, anonymised_at for retention;
segments and issues.segment_id; imports and the import a consent event came from.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mailer.models.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("admin_user_id", sa.Integer(), nullable=True),
        sa.Column("api_token_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("finished_at", mailer.models.base.UTCDateTime(), nullable=True),
        sa.Column(
            "counts", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "report", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["admin_user_id"], ["admin_users.id"], name=op.f("fk_imports_admin_user_id_admin_users")
        ),
        sa.ForeignKeyConstraint(["api_token_id"], ["api_tokens.id"], name=op.f("fk_imports_api_token_id_api_tokens")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "rules", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["admin_users.id"], name=op.f("fk_segments_created_by_id_admin_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("name", name=op.f("uq_segments_name")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_consent_events_import_id_imports"), "imports", ["import_id"], ["id"])

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segment_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "audience_rules",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.create_foreign_key(batch_op.f("fk_issues_segment_id_segments"), "segments", ["segment_id"], ["id"])

    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audience", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("services", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("subscribed_at", mailer.models.base.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("anonymised_at", mailer.models.base.UTCDateTime(), nullable=True))

    # Everyone so far subscribed when their row was made.
    op.execute("UPDATE subscribers SET subscribed_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("anonymised_at")
        batch_op.drop_column("subscribed_at")
        batch_op.drop_column("services")
        batch_op.drop_column("audience")

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_issues_segment_id_segments"), type_="foreignkey")
        batch_op.drop_column("audience_rules")
        batch_op.drop_column("segment_id")

    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_consent_events_import_id_imports"), type_="foreignkey")
        batch_op.drop_column("import_id")

    op.drop_table("segments")
    op.drop_table("imports")
