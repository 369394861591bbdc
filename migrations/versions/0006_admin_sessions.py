"""admin sessions kept on the server

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Each sign-in to the admin is a row; the browser's cookie carries only a random secret whose SHA-256 is
`token_hash`. Signing out, the idle timeout (SESSION_IDLE_MINUTES) and the absolute 8 hours end the row, so
a copied cookie stops working. A new table only: nothing existing is recreated (the 0005 triggers stay).
"""

import sqlalchemy as sa
from alembic import op

import mailer.models.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("ended_at", mailer.models.base.UTCDateTime(), nullable=True),
        sa.Column("ended_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["admin_users.id"], name=op.f("fk_admin_sessions_user_id_admin_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_sessions_token_hash")),
    )
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_sessions_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_sessions_user_id"))
    op.drop_table("admin_sessions")
