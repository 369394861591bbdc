"""The suppression list: addresses that refused our mail for good. Matched by hash, never by address."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Subscriber, Subscription, Suppression, utcnow


def suppress(
    session: Session,
    subscriber_ids: list[int],
    reason: str,
    detail: str | None = None,
    *,
    event_id: int | None = None,
    issue_id: int | None = None,
) -> int:
    """Suppress these subscribers (hard bounce, complaint): status changes, subscriptions end, hash listed.
    `event_id` and `issue_id` say from which report and which message, when one caused it. Returns how many
    were newly listed."""
    if not subscriber_ids:
        return 0
    now = utcnow()
    people = list(session.scalars(select(Subscriber).where(Subscriber.id.in_(subscriber_ids))))
    known = set(
        session.scalars(
            select(Suppression.email_hash).where(Suppression.email_hash.in_([p.email_hash for p in people]))
        )
    )
    count = 0
    for subscriber in people:
        if subscriber.email_hash not in known:
            session.add(
                Suppression(
                    email_hash=subscriber.email_hash,
                    reason=reason,
                    detail=detail,
                    event_id=event_id,
                    issue_id=issue_id,
                )
            )
            known.add(subscriber.email_hash)
            count += 1
        if subscriber.status in ("active", "pending"):
            subscriber.status = reason
            subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
        for subscription in session.scalars(
            select(Subscription).where(Subscription.subscriber_id == subscriber.id, Subscription.ended_at.is_(None))
        ):
            subscription.end(reason, now)
    session.flush()
    return count
