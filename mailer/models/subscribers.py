"""Subscribers, their subscriptions (ended, never deleted), consent records and the suppression list."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import FunctionElement

from .base import Base, BigId, Json, UTCDateTime, utcnow
from .topics import Topic

SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained", "erased")
FREQUENCIES = ("immediately", "weekly", "monthly")
# Bits of Subscriber.frequency_mask; the trigger in migration 0005 uses the same numbers.
FREQUENCY_BITS = {"immediately": 1, "weekly": 2, "monthly": 4}
END_REASONS = ("unsubscribed", "bounced", "complained", "erased")
# Who someone is to us; asked on sign-up, optional.
AUDIENCES = {
    "patient": "Patient or service user",
    "carer": "Carer, family member or friend",
    "staff": "Member of staff",
    "partner": "Partner organisation",
    "community-group": "Community or voluntary group",
    "other": "Other",
}
# Services someone is interested in, stored as bits of one integer so a segment tests them without a join.
# The bit of a service never changes once used: stored values depend on it.
SERVICES = {
    "community": ("Community services", 1),
    "mental-health": ("Mental health services", 2),
    "learning-disability": ("Learning disability services", 4),
}
FREQUENCY_LABELS = {
    "immediately": "As it happens",
    "weekly": "Weekly digest",
    "monthly": "Monthly digest",
}


def services_mask(slugs) -> int:
    """The stored bits for a list of service slugs (unknown slugs must be rejected before this)."""
    mask = 0
    for slug in slugs:
        mask |= SERVICES[slug][1]
    return mask


def services_of(mask: int) -> list[str]:
    """The service slugs set in a stored mask, in display order."""
    return [slug for slug, (_, bit) in SERVICES.items() if mask & bit]


def email_key(email: str) -> str:
    """The case-insensitive identity of an address: two spellings that differ only in case are one person."""
    return email.strip().lower()


def address_digest(email: str) -> str:
    """SHA-256 of the address's identity: never stored on its own (a list of addresses would match it), only
    keyed by `keyed_hash`. Manage links sent before migration 0008 carry a prefix of it."""
    return hashlib.sha256(email_key(email).encode()).hexdigest()


def keyed_hash(digest: str, key: str) -> str:
    """HMAC-SHA256 of an `address_digest` under EMAIL_HASH_KEY. Keyed over the digest, not the address, so
    migration 0009 could convert hashes stored bare without knowing the addresses behind them."""
    if not key:
        raise ValueError("an email hash needs EMAIL_HASH_KEY")
    return hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()


def email_hash(email: str, key: str) -> str:
    """The one-way hash kept on the suppression list (and after erasure) instead of the address.

    Keyed with EMAIL_HASH_KEY (a secret kept out of the database), so a leaked database cannot be matched
    against a list of addresses; the same address and key always give the same hash."""
    return keyed_hash(address_digest(email), key)


def new_public_id() -> str:
    """A random name for a person in signed links: 128 bits, never reused (see `Subscriber.public_id`)."""
    return secrets.token_hex(16)


class random_public_id(FunctionElement):  # noqa: N801 - an SQL function, named like one
    """The database's own default for `public_id`, for rows written by plain SQL (a bench, psql)."""

    type = String()
    inherit_cache = True


@compiles(random_public_id, "sqlite")
def _random_public_id_sqlite(element, compiler, **kw) -> str:
    return "(lower(hex(randomblob(16))))"


@compiles(random_public_id, "postgresql")
def _random_public_id_postgresql(element, compiler, **kw) -> str:
    return "replace(gen_random_uuid()::text, '-', '')"


class Subscriber(Base):
    __tablename__ = "subscribers"
    # SQLite would otherwise hand a deleted row's id to the next person (retention deletes sign-ups); ids
    # reach Message-IDs and old links, so they are never reused (PostgreSQL's sequences never reuse them).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What signed links (unsubscribe, manage, confirm) name: random, unique, never reused, so a link can only
    # ever reach the person it was sent to, whatever happens to row ids.
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=new_public_id, server_default=random_public_id()
    )
    email: Mapped[str | None] = mapped_column(String(320))
    email_key: Mapped[str | None] = mapped_column(String(320), unique=True)
    # Kept after erasure, so the suppression list can still match the address without holding it
    # (`email_hash`: keyed with EMAIL_HASH_KEY).
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    area: Mapped[str | None] = mapped_column(String(32))  # an Area's slug (models/areas.py)
    audience: Mapped[str | None] = mapped_column(String(32))
    services: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A summary of the open subscriptions, kept by a database trigger (migration 0005), never written here:
    # bit 1 << topic id per topic, and FREQUENCY_BITS of the frequencies. Segment rules read these.
    topic_mask: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    frequency_mask: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When they first asked to subscribe (the consent date of an import); segments filter on it.
    subscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a confirmation mail was last asked for and when a worker actually sent it: the sweeper
    # re-enqueues requests whose mail never went (the broker was down at the time).
    confirm_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirm_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the sweeper last re-enqueued a confirmation, so an outage is not answered with a mail per sweep.
    confirm_swept_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the address and name were removed (erasure, or the retention job for ended subscribers).
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="subscriber")

    @property
    def open_subscriptions(self) -> list[Subscription]:
        return [s for s in self.subscriptions if s.ended_at is None]


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        # At most one open subscription per person and topic; ended ones are history.
        Index(
            "uq_subscriptions_open",
            "subscriber_id",
            "topic_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_subscriptions_topic_open", "topic_id", "subscriber_id"),
        # An issue's audience (open, one topic, "as it happens") as an index-only range; measured on a
        # million subscribers in bench/audience_bench.py (p95 of topic counts 1.40 → 0.96 s).
        Index(
            "ix_subscriptions_topic_frequency_open",
            "topic_id",
            "frequency",
            "subscriber_id",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        # Frequency rules and digests: who has an open subscription at a frequency.
        Index(
            "ix_subscriptions_frequency_open",
            "frequency",
            "subscriber_id",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        # Everything about one person, ended subscriptions included (imports, the profile, subject access):
        # without it each is a scan of the whole table (324 ms a batch at 1.5 M rows, 3 ms with it).
        Index("ix_subscriptions_subscriber", "subscriber_id"),
        # Subscriptions started and ended in the last weeks, by topic (stats.topic_growth, the home page): a
        # range of recent rows instead of a pass over every subscription (migration 0016, bench/home_bench.py).
        Index("ix_subscriptions_started_topic", "started_at", "topic_id"),
        Index("ix_subscriptions_ended_topic", "ended_at", "topic_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    frequency: Mapped[str] = mapped_column(String(16), default="immediately")
    # When the frequency was last set: a digest never carries news from before (they had it as it happened).
    frequency_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32), default="web")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(16))

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship()

    def end(self, reason: str, at: datetime | None = None) -> None:
        """Close this subscription for `reason`; the row stays as the record of what was."""
        if reason not in END_REASONS:
            raise ValueError(f"unknown end reason {reason!r}")
        if self.ended_at is None:
            self.ended_at = at or utcnow()
            self.ended_reason = reason


class ConsentEvent(Base):
    """What someone agreed to, when, how, and under which wording; a subscribe request is one too."""

    __tablename__ = "consent_events"
    # A subscribe request's id is in its confirmation link (with the person's public id): never reused.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    # subscribe_requested, confirm, subscribe (consent collected elsewhere: API, import, admin), change,
    # unsubscribe, erase
    kind: Mapped[str] = mapped_column(String(24))
    channel: Mapped[str] = mapped_column(String(16))  # web, email, api, import, admin
    wording_version: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict] = mapped_column(Json, default=dict)
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    admin_user_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    # The CSV import that recorded this consent, if any (its row number is in details).
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))
    # A confirm event points at the request it confirms; unique, so one request confirms once.
    confirms_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    subscriber: Mapped[Subscriber] = relationship()


class Suppression(Base):
    """Addresses we must never mail again (hard bounce, complaint, erasure), kept only as a hash."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    # From which message: the report that caused it (a bounce or complaint) and the issue it answered, if known.
    event_id: Mapped[int | None] = mapped_column(Integer)
    issue_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
