"""Who is in an audience, as a SQL `select` of subscriber ids (never a Python loop over people).

Delivery receives these selects ready-made, so it never needs to know what a subscription is.
"""

from __future__ import annotations

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from ..models import Subscriber, Subscription, Suppression


def not_suppressed():
    return ~exists().where(Suppression.email_hash == Subscriber.email_hash)


def topic_audience(topic_id: int) -> Select:
    """Active, unsuppressed subscribers with an open subscription to the topic: `select(subscriber.id)`."""
    return (
        select(Subscriber.id)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.topic_id == topic_id,
            Subscription.ended_at.is_(None),
            Subscriber.status == "active",
            not_suppressed(),
        )
    )


def audience_size(session: Session, topic_id: int) -> int:
    """How many people an issue to this topic would reach now."""
    return session.scalar(select(func.count()).select_from(topic_audience(topic_id).subquery())) or 0
