"""The suppression list: addresses that refused our mail for good. Matched by hash, never by address.

Written by the feedback loop (a hard bounce, soft bounces past the limit, a complaint), by erasure, and by the
team (`add_suppression`, `remove_suppression`). Taking an address off the list subscribes nobody again: the
person signs up again and confirms (double opt-in), and confirming is what lifts a suppression by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit
from ..audit import Actor
from ..errors import Conflict, NotFound
from ..models import MAX_ID, FeedbackEvent, Issue, Subscriber, Subscription, Suppression, utcnow
from .emails import hash_address
from .inputs import NewSuppression, SuppressionQuery, SuppressionRemoval


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


# --- the list as the team sees and changes it -----------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One address on the list, with where it came from."""

    id: int
    email_hash: str
    reason: str
    detail: str | None
    created_at: datetime
    issue_id: int | None
    issue_subject: str | None
    event_id: int | None
    event_source: str | None
    event_status: str | None
    # The person behind the hash, while we still hold them (not erased): their address only for those who may
    # see people's details, which the adapter decides.
    subscriber_id: int | None
    email: str | None


@dataclass(frozen=True)
class SuppressionPage:
    rows: list[Listed]
    next_before: int | None  # the `before` of the next (older) page; None: there is none


def _person(column):
    # The newest subscriber with the listed hash (an address erased and signed up again has two rows).
    return (
        select(column)
        .where(Subscriber.email_hash == Suppression.email_hash)
        .order_by(Subscriber.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _listed_query():
    return (
        select(
            Suppression,
            Issue.subject,
            FeedbackEvent.source,
            FeedbackEvent.status,
            _person(Subscriber.id),
            _person(Subscriber.email),
        )
        .outerjoin(Issue, Issue.id == Suppression.issue_id)
        .outerjoin(FeedbackEvent, FeedbackEvent.id == Suppression.event_id)
    )


def _listed(row) -> Listed:
    suppression, subject, source, status, subscriber_id, email = row
    return Listed(
        id=suppression.id,
        email_hash=suppression.email_hash,
        reason=suppression.reason,
        detail=suppression.detail,
        created_at=suppression.created_at,
        issue_id=suppression.issue_id,
        issue_subject=subject,
        event_id=suppression.event_id,
        event_source=source,
        event_status=status,
        subscriber_id=subscriber_id,
        email=email,
    )


def list_suppressions(session: Session, query: SuppressionQuery) -> SuppressionPage:
    """The list, newest first, a page at a time: one address (found by its hash), one reason, since a day."""
    select_ = _listed_query().order_by(Suppression.id.desc()).limit(query.limit)
    if query.email is not None:
        select_ = select_.where(Suppression.email_hash == hash_address(session, query.email))
    if query.reason is not None:
        select_ = select_.where(Suppression.reason == query.reason)
    if query.since is not None:
        select_ = select_.where(Suppression.created_at >= query.since)
    if query.before:
        select_ = select_.where(Suppression.id < query.before)
    rows = [_listed(row) for row in session.execute(select_)]
    return SuppressionPage(rows, rows[-1].id if len(rows) == query.limit else None)


def listed(session: Session, suppression_id: int) -> Listed:
    if not 0 < suppression_id <= MAX_ID:
        raise NotFound(f"No suppression with id {suppression_id}")
    row = session.execute(_listed_query().where(Suppression.id == suppression_id)).first()
    if row is None:
        raise NotFound(f"No suppression with id {suppression_id}")
    return _listed(row)


def add_suppression(session: Session, data: NewSuppression, actor: Actor) -> Listed:
    """List an address by hand. A subscriber with that address is suppressed as a bounce would (their status
    says why, every subscription ends); an address we do not hold is listed by its hash alone, so it is never
    mailed if it turns up later (an import). Conflict if it is listed already. Audit: suppression.add (the
    hash, never the address)."""
    email_hash = hash_address(session, data.email)
    known = session.scalar(select(Suppression).where(Suppression.email_hash == email_hash))
    if known is not None:
        raise Conflict(
            f"That address is on the suppression list already ({known.reason}, since {known.created_at:%d %B %Y})"
        )
    detail = f"Added by {actor.label or 'the team'}" + (f": {data.note}" if data.note else "")
    people = list(session.scalars(select(Subscriber.id).where(Subscriber.email_hash == email_hash)))
    try:
        with session.begin_nested():  # two people adding the same address at once: the second is told
            if people:
                suppress(session, people, data.reason, detail)
            else:
                session.add(Suppression(email_hash=email_hash, reason=data.reason, detail=detail))
                session.flush()
    except IntegrityError:
        raise Conflict("That address is on the suppression list already") from None
    row = session.scalar(select(Suppression).where(Suppression.email_hash == email_hash))
    audit.record(
        session,
        actor,
        "suppression.add",
        row,
        reason=data.reason,
        note=data.note or None,
        subscriber=max(people, default=None),
    )
    return listed(session, row.id)


def remove_suppression(session: Session, suppression_id: int, data: SuppressionRemoval, actor: Actor) -> Listed:
    """Take an address off the list, saying why. The row goes; the audit log keeps who removed it, why, and
    what the row said. Nobody is subscribed again: they must sign up and confirm. NotFound if not listed."""
    gone = listed(session, suppression_id)
    row = session.get(Suppression, suppression_id)
    audit.record(
        session,
        actor,
        "suppression.remove",
        row,
        why=data.reason,
        reason=row.reason,
        detail=row.detail,
        email_hash=row.email_hash,
        issue=row.issue_id,
        event=row.event_id,
        listed_at=row.created_at.isoformat(),
    )
    session.delete(row)
    session.flush()
    return gone
