"""the fingerprint of the key that keyed the stored address hashes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

Hashes made with one EMAIL_HASH_KEY never match those made with another: a database moved to a new key (a trial
in development, then production with a fresh key) silently stopped recognising everyone suppressed or erased,
so an import brought them back. `key_fingerprints` keeps an HMAC of a fixed text under the key, never the key;
`Database.check_email_hash_key` records it on first start and refuses a different key after.

The fingerprint of the key this upgrade is given (`mailer init` gives the configured one) is recorded here, so a
database upgraded with the key it was keyed with refuses any other from then on. Run without one given, the
first process to start records its own.
"""

import hashlib
import hmac
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import mailer.models.base

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The same as mailer.models.keys, written out so this migration never changes with the app.
_TEXT = b"Trust Matters mailer: the key that keyed this database's hashes"


def upgrade() -> None:
    table = op.create_table(
        "key_fingerprints",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", mailer.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_key_fingerprints")),
    )
    key = op.get_context().config.attributes.get("email_hash_key")
    if key:
        fingerprint = hmac.new(key.encode(), _TEXT, hashlib.sha256).hexdigest()
        now = datetime.now(UTC)
        op.bulk_insert(table, [{"name": "email_hash", "fingerprint": fingerprint, "created_at": now}])


def downgrade() -> None:
    op.drop_table("key_fingerprints")
