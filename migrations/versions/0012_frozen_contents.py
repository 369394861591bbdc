"""what was sent is kept: each issue's content frozen when its send starts

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10

`frozen_contents` holds, per issue, the blocks with the updates and images they pulled in, and the email's
HTML and text as rendered (with the markers where each recipient's links go), written when the send starts.
Batches, resumes, people added to a digest later, the admin preview and the web version read it instead of
rendering the issue again. Issues already sending when this runs are frozen by the first batch after it.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mailer.models.base

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "frozen_contents",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("frozen_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("blocks", _json(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("markers", _json(), nullable=True),
        sa.Column("list_label", sa.String(length=200), nullable=True),
        sa.Column("list_id", sa.String(length=255), nullable=True),
        sa.Column("rendered_at", mailer.models.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name=op.f("fk_frozen_contents_issue_id_issues")),
        sa.PrimaryKeyConstraint("issue_id", name=op.f("pk_frozen_contents")),
    )


def downgrade() -> None:
    op.drop_table("frozen_contents")
