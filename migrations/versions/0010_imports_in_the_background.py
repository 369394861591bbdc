"""imports run in the background

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

An upload is stored in the database (`import_chunks`, in pieces) for a Celery worker on any host to import;
the import row records the worker's progress with each batch, who holds it and since when, so the sweeper can
give a lost import to another worker or mark it failed.

Imports left `running` by the old code can never finish (their file was never kept): they become `failed`,
saying so. Only columns are added to `imports` (no table is recreated), so 0005's triggers are untouched.
"""

import sqlalchemy as sa
from alembic import op

import mailer.models.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NEW_COLUMNS = (
    ("consent_source", sa.String(length=500), True, None),
    ("encoding", sa.String(length=16), False, "utf-8-sig"),
    ("size", sa.BigInteger(), False, "0"),
    ("last_row", sa.Integer(), False, "1"),
    ("bytes_read", sa.BigInteger(), False, "0"),
    ("claim", sa.String(length=32), True, None),
    ("heartbeat_at", mailer.models.base.UTCDateTime(), True, None),
    ("attempts", sa.Integer(), False, "0"),
    ("failure", sa.Text(), True, None),
)


def upgrade() -> None:
    for name, type_, nullable, default in NEW_COLUMNS:
        op.add_column("imports", sa.Column(name, type_, nullable=nullable, server_default=default))
    op.create_table(
        "import_chunks",
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"], ["imports.id"], name=op.f("fk_import_chunks_import_id_imports"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("import_id", "seq", name=op.f("pk_import_chunks")),
    )
    op.execute(
        "UPDATE imports SET status = 'failed', failure = 'Interrupted before this version of the mailer: its file "
        "was not kept, so it cannot be finished. Import the file again: rows already imported are left as they are.' "
        "WHERE status = 'running'"
    )


def downgrade() -> None:
    op.drop_table("import_chunks")
    with op.batch_alter_table("imports") as batch_op:
        for name, *_ in reversed(NEW_COLUMNS):
            batch_op.drop_column(name)
