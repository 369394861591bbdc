"""account security: a TOTP second factor and recovery codes, password reset links, lockout per address

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

`admin_users` gains the TOTP factor (its secret encrypted with a key derived from SECRET_KEY, when it was
switched on, the last time step a code was accepted for). `recovery_codes` holds the SHA-256 of each one-time
recovery code, `password_resets` that of each emailed reset token, `sign_in_lockouts` the failed sign-ins per
address typed (a keyed hash, whether or not an account has the address). New columns are nullable: existing
accounts have no second factor until they enrol.
"""

import sqlalchemy as sa
from alembic import op

import mailer.models.base

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("totp_enabled_at", mailer.models.base.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("used_at", mailer.models.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["admin_users.id"], name=op.f("fk_recovery_codes_user_id_admin_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_recovery_codes_code_hash")),
    )
    op.create_index(op.f("ix_recovery_codes_user_id"), "recovery_codes", ["user_id"])
    op.create_table(
        "password_resets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("used_at", mailer.models.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["admin_users.id"], name=op.f("fk_password_resets_user_id_admin_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_resets")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_resets_token_hash")),
    )
    op.create_index(op.f("ix_password_resets_user_id"), "password_resets", ["user_id"])
    op.create_table(
        "sign_in_lockouts",
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("locked_until", mailer.models.base.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("address_hash", name=op.f("pk_sign_in_lockouts")),
    )


def downgrade() -> None:
    op.drop_table("sign_in_lockouts")
    op.drop_index(op.f("ix_password_resets_user_id"), table_name="password_resets")
    op.drop_table("password_resets")
    op.drop_index(op.f("ix_recovery_codes_user_id"), table_name="recovery_codes")
    op.drop_table("recovery_codes")
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_enabled_at")
        batch.drop_column("totp_secret")
