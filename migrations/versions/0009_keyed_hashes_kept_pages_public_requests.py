"""keyed address hashes, archive pages kept, queued public requests

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

- The address hashes kept on the suppression list and after erasure (`subscribers.email_hash`,
  `suppressions.email_hash`) were bare SHA-256 of the lower-cased address, which anyone holding a copy of the
  database could match against a list of addresses. They become HMAC-SHA256(EMAIL_HASH_KEY, that SHA-256): the
  key is over the stored value, so every row converts here without the address (erased people have none).
  The key comes from `mailer.schema.migrate(..., email_hash_key=...)` or, run by hand, from the settings
  (EMAIL_HASH_KEY). One way: the downgrade cannot restore the bare hashes and refuses.
- `issues.archive_html` and `updates.archive_html`: the archive page's content, rendered once when an issue's
  send starts or an update is published, served as it is instead of rendering Markdown per view. Pages sent
  before this are rendered on their first view and kept.
- `public_requests`: sign-ups and "email me my link" waiting for a worker, so the web request does the same
  work for every address.
"""

import hashlib
import hmac

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mailer.models.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHUNK = 5000


def _key() -> str:
    key = op.get_context().config.attributes.get("email_hash_key")
    if not key:
        from mailer.config import load_settings

        key = load_settings().email_hash_key
    return key


def _keyed(digest: str, key: str) -> str:
    # The same as mailer.models.keyed_hash, written out so this migration never changes with the app.
    return hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()


def _rekey(table_name: str) -> int:
    """Key every stored hash of `table_name`, a chunk at a time by id; returns how many rows."""
    conn = op.get_bind()
    table = sa.table(table_name, sa.column("id", sa.Integer), sa.column("email_hash", sa.String))
    change = table.update().where(table.c.id == sa.bindparam("row_id")).values(email_hash=sa.bindparam("keyed"))
    key, last, done = None, 0, 0
    while True:
        rows = conn.execute(
            sa.select(table.c.id, table.c.email_hash).where(table.c.id > last).order_by(table.c.id).limit(CHUNK)
        ).all()
        if not rows:
            return done
        key = key or _key()  # read only when there is something to convert (a fresh database needs none)
        conn.execute(change, [{"row_id": row_id, "keyed": _keyed(value, key)} for row_id, value in rows])
        last, done = rows[-1][0], done + len(rows)


def upgrade() -> None:
    _rekey("subscribers")
    _rekey("suppressions")

    op.add_column("issues", sa.Column("archive_html", sa.Text(), nullable=True))
    op.add_column("updates", sa.Column("archive_html", sa.Text(), nullable=True))

    op.create_table(
        "public_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_public_requests")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("public_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_public_requests_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    raise RuntimeError(
        "0009 cannot be undone: the address hashes are keyed now and the bare ones cannot be recovered "
        "(restore a backup taken before the upgrade instead)"
    )
