"""Which secret keyed what a database stores, kept as a fingerprint so a different key is noticed at start."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow

# The one key recorded so far: EMAIL_HASH_KEY, which keys Subscriber/Suppression.email_hash.
EMAIL_HASH = "email_hash"
_FINGERPRINT_TEXT = b"Trust Matters mailer: the key that keyed this database's hashes"


def key_fingerprint(key: str) -> str:
    """An HMAC of a fixed text under `key`: the same key always gives it, and it tells nothing of the key."""
    return hmac.new(key.encode(), _FINGERPRINT_TEXT, hashlib.sha256).hexdigest()


class KeyFingerprint(Base):
    """The fingerprint of a key whose work is stored here. Hashes made with one EMAIL_HASH_KEY never match those
    made with another, so a database moved to a new key would silently stop recognising everyone suppressed
    or erased (an import could bring them back): the process refuses to start instead."""

    __tablename__ = "key_fingerprints"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
