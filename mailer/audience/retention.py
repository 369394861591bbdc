"""Retention: what we stop keeping, and when (described to the public on /privacy).

- A sign-up never confirmed is deleted `unconfirmed_days` after the last request: we only ever had the
  address because someone typed it, and its owner never agreed.
- Someone who left (unsubscribed, bounced, complained) keeps their address on file for
  `anonymise_after_days`, so an import cannot quietly resubscribe them; then the address and name go,
  and only a one-way hash of the address is kept for the same purpose.
- Bounce and complaint reports (which quote addresses, and a complaint the whole message) lose their text
  `anonymise_after_days` after they came, whoever they were about; what they said (kind, status) stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from ..models import ConsentEvent, FeedbackEvent, Subscriber, Subscription, utcnow
from .erasure import anonymise, delete_consent_events

CHUNK = 1000


@dataclass
class RetentionReport:
    deleted_unconfirmed: int = 0
    anonymised: int = 0
    reports_cleared: int = 0


def clear_old_reports(session: Session, days: int, now=None) -> int:
    """Blank the report and diagnostic of feedback events older than `days` (at most CHUNK per call)."""
    now = now or utcnow()
    ids = list(
        session.scalars(
            select(FeedbackEvent.id)
            .where(
                FeedbackEvent.received_at < now - timedelta(days=days),
                or_(FeedbackEvent.report.is_not(None), FeedbackEvent.diagnostic.is_not(None)),
            )
            .limit(CHUNK)
        )
    )
    if ids:
        session.execute(update(FeedbackEvent).where(FeedbackEvent.id.in_(ids)).values(report=None, diagnostic=None))
    return len(ids)


def delete_unconfirmed(session: Session, days: int, now=None) -> int:
    """Delete pending sign-ups whose latest request is older than `days` (at most CHUNK per call)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    recent_request = exists().where(
        ConsentEvent.subscriber_id == Subscriber.id,
        ConsentEvent.kind == "subscribe_requested",
        ConsentEvent.created_at >= cutoff,
    )
    ids = list(
        session.scalars(
            select(Subscriber.id)
            .where(
                Subscriber.status == "pending",
                Subscriber.confirmed_at.is_(None),
                Subscriber.created_at < cutoff,
                ~recent_request,
                ~exists().where(Subscription.subscriber_id == Subscriber.id),
            )
            .limit(CHUNK)
        )
    )
    if not ids:
        return 0
    delete_consent_events(session, ids)
    session.execute(delete(Subscriber).where(Subscriber.id.in_(ids)))
    return len(ids)


def anonymise_ended(session: Session, days: int, now=None) -> int:
    """Remove address and name of people who left more than `days` ago (at most CHUNK per call)."""
    now = now or utcnow()
    people = list(
        session.scalars(
            select(Subscriber)
            .where(
                Subscriber.status.in_(("unsubscribed", "bounced", "complained")),
                Subscriber.anonymised_at.is_(None),
                Subscriber.unsubscribed_at < now - timedelta(days=days),
            )
            .limit(CHUNK)
        )
    )
    for subscriber in people:
        anonymise(session, subscriber, now)
    return len(people)
