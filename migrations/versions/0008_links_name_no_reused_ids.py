"""signed links name a random public id; SQLite never reuses subscriber or consent event ids

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Signed links named plain row ids, and SQLite hands the id of a deleted row (retention deletes unconfirmed
sign-ups) to the next row: an old unsubscribe link then reached the next, unrelated person. Each subscriber
gets `public_id`, 128 random bits that links name instead (existing rows get theirs here), and on SQLite
`subscribers` and `consent_events` become AUTOINCREMENT tables, whose ids are never handed out twice.

SQLite cannot add AUTOINCREMENT to a table, so both are recreated (a batch migration: copy, drop, rename;
foreign keys stay off in migrations). The 0005 triggers on `subscriptions` name `subscribers`, so they are
dropped first and created again after, from 0005's own statements. Ids used by rows deleted before this
upgrade may be given out once more (SQLite kept no record of them): links made before it are handled for
that in mailer/audience/signed_links.py.

A later migration that recreates either table on SQLite (any `batch_alter_table` that rebuilds it) must pass
`table_kwargs={"sqlite_autoincrement": True}`: SQLAlchemy does not read AUTOINCREMENT back from the schema, so a
plain rebuild silently drops it (and, for `subscribers`, must drop and re-create the 0005 triggers as here).
tests/test_schema.py checks both at head.

On PostgreSQL ids come from sequences and are never reused: only the column is added. Filling it rewrites
the table under an exclusive lock (about 3 s for a million subscribers).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_RANDOM_ID = "(lower(hex(randomblob(16))))"
POSTGRESQL_RANDOM_ID = "replace(gen_random_uuid()::text, '-', '')"


def _summary_triggers() -> list[str]:
    """0005's SQLite triggers, as 0005 writes them (one definition, whichever migration needs it)."""
    script = op.get_context().script
    return script.get_revision("0005").module.SQLITE


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.add_column(
            "subscribers",
            sa.Column("public_id", sa.String(32), server_default=sa.text(POSTGRESQL_RANDOM_ID), nullable=False),
        )
        op.create_unique_constraint(op.f("uq_subscribers_public_id"), "subscribers", ["public_id"])
        return

    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER subscriptions_summary_{name}")
    # The copy names the old columns only, so every existing row gets its own random public id by default.
    with op.batch_alter_table("subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(
            sa.Column("public_id", sa.String(32), server_default=sa.text(SQLITE_RANDOM_ID), nullable=False)
        )
        batch.create_unique_constraint(batch.f("uq_subscribers_public_id"), ["public_id"])
    with op.batch_alter_table("consent_events", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass
    for statement in _summary_triggers():
        op.execute(statement)


def downgrade() -> None:
    # Ids that were never reused stay so: AUTOINCREMENT is kept, only the column goes.
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("uq_subscribers_public_id"), "subscribers", type_="unique")
        op.drop_column("subscribers", "public_id")
        return
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER subscriptions_summary_{name}")
    with op.batch_alter_table("subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint(batch.f("uq_subscribers_public_id"), type_="unique")
        batch.drop_column("public_id")
    for statement in _summary_triggers():
        op.execute(statement)
