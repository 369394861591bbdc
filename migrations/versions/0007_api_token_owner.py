"""API tokens belong to a team member

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

`api_tokens.owner_id`: the person a token acts for. Its role is capped at theirs, it stops while their account
is switched off, and what it writes or approves is recorded as theirs, so APPROVAL_BY_ANOTHER holds for tokens.

Existing tokens get no owner: nothing in the database says who holds them, and guessing (the only admin, say)
would let the guessed person's name stand on work someone else did. They keep working while
APPROVAL_BY_ANOTHER is off, and are refused while it is on, until an admin issues a replacement for a person
(`mailer token create --for EMAIL`). Only `api_tokens` is rebuilt on SQLite: none of 0005's triggers are on it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_owner_id_admin_users"), "admin_users", ["owner_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_owner_id_admin_users"), type_="foreignkey")
        batch_op.drop_column("owner_id")
