"""topics and areas the team manages: a topic can be retired (and restored), areas are a table

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

`topics.retired_at`: a retired topic is offered to nobody and sent to nobody; its subscriptions stay as history.
`areas` replaces the constant the code held; it is seeded with the areas that constant listed, under the same
slugs, so every subscriber's `area` (and every update's and segment's) stays valid as it is.
"""

import sqlalchemy as sa
from alembic import op

import mailer.models.base

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# As the code listed them before this migration (written out: a migration never changes with the code).
AREAS = [
    ("isle-of-wight", "Isle of Wight"),
    ("hampshire", "Hampshire"),
    ("southampton", "Southampton"),
    ("portsmouth", "Portsmouth"),
    ("elsewhere", "Somewhere else"),
]


def upgrade() -> None:
    with op.batch_alter_table("topics") as batch:
        batch.add_column(sa.Column("retired_at", mailer.models.base.UTCDateTime(), nullable=True))
    areas = op.create_table(
        "areas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("retired_at", mailer.models.base.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_areas")),
        sa.UniqueConstraint("slug", name=op.f("uq_areas_slug")),
    )
    op.bulk_insert(
        areas,
        [{"id": n, "slug": slug, "name": name, "position": n - 1} for n, (slug, name) in enumerate(AREAS, start=1)],
    )
    # An area some subscriber holds that the list did not (written by plain SQL): listed too, retired, so it
    # stays valid and visible to the team without being offered to the public.
    bind = op.get_bind()
    held = bind.execute(
        sa.text("SELECT DISTINCT area FROM subscribers WHERE area IS NOT NULL AND area <> '' ORDER BY area")
    ).scalars()
    known = {slug for slug, _ in AREAS}
    extra = [slug for slug in held if slug not in known]
    if extra:
        op.bulk_insert(
            areas,
            [
                {
                    "id": len(AREAS) + n,
                    "slug": slug[:32],
                    "name": slug[:120],
                    "position": len(AREAS) + n - 1,
                    "retired_at": mailer.models.base.utcnow(),
                }
                for n, slug in enumerate(extra, start=1)
            ],
        )
    if bind.dialect.name == "postgresql":
        # Rows were written with their ids: the sequence starts after them.
        op.execute("SELECT setval(pg_get_serial_sequence('areas', 'id'), (SELECT max(id) FROM areas))")


def downgrade() -> None:
    op.drop_table("areas")
    with op.batch_alter_table("topics") as batch:
        batch.drop_column("retired_at")
