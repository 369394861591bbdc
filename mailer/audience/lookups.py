"""Named reads of the audience: what pages, API calls and commands look up. Views call these; they run no
query of their own."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, contains_eager

from ..errors import InvalidInput, NotFound
from ..inputs import Input, parse
from ..models import AdminUser, Area, ConsentEvent, Import, Issue, Segment, Subscriber, Subscription, Suppression, Topic
from ..models import email_key as key_of
from . import catalogue
from .emails import normalise_email
from .segments import areas_by_slug, topics_by_slug

M = TypeVar("M", bound=Input)
SEARCH_LIMIT = 50


def topic_context(session: Session) -> dict:
    """What an input naming topics or areas is parsed with (`mailer.inputs.parse(..., context=)`): this
    database's topics and areas, by slug. The only place topics and areas someone sent are checked; commands
    trust the parsed model."""
    return {"topics": topics_by_slug(session), "areas": areas_by_slug(session)}


def parse_in(session: Session, model: type[M], data: Any, *, prefix: str = "") -> M:
    """`data` checked against `model` and this database's topics and areas: a form shows an unknown topic
    together with its other mistakes (InvalidInput naming each)."""
    return parse(model, data, prefix=prefix, context=topic_context(session))


def find_subscriber(session: Session, email: str) -> Subscriber:
    """The current record for an address (NotFound if none, or if it was erased)."""
    try:
        address = normalise_email(email)
    except InvalidInput as exc:
        raise NotFound("No subscriber with that address") from exc
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key_of(address)))
    if subscriber is None:
        raise NotFound("No subscriber with that address")
    return subscriber


def subscriber(session: Session, subscriber_id: int) -> Subscriber:
    found = session.get(Subscriber, subscriber_id)
    if found is None:
        raise NotFound(f"There is no subscriber {subscriber_id}.")
    return found


def search_subscribers(session: Session, text: str, limit: int = SEARCH_LIMIT) -> list[Subscriber]:
    """People whose address starts with `text` (already folded to lower case), at most `limit` + 1 of them so
    the page can say there are more."""
    if not text:
        return []
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return list(
        session.scalars(
            select(Subscriber)
            .where(Subscriber.email_key.like(f"{escaped}%", escape="\\"))
            .order_by(Subscriber.email_key)
            .limit(limit + 1)
        )
    )


def open_subscriptions(session: Session, subscriber_id: int) -> list[Subscription]:
    """Someone's subscriptions now, in the display order of their topics (loaded with them)."""
    return list(
        session.scalars(
            select(Subscription)
            .join(Topic, Topic.id == Subscription.topic_id)
            .options(contains_eager(Subscription.topic))
            .where(Subscription.subscriber_id == subscriber_id, Subscription.ended_at.is_(None))
            .order_by(Topic.position)
        )
    )


def open_topics(session: Session, subscriber_id: int) -> list[Topic]:
    """The topics someone is subscribed to now, in display order."""
    return [subscription.topic for subscription in open_subscriptions(session, subscriber_id)]


def left_topics(session: Session, subscriber_id: int) -> set[int]:
    """Topics this person unsubscribed from (and has not rejoined): only they may subscribe them again."""
    ended = set(
        session.scalars(
            select(Subscription.topic_id).where(
                Subscription.subscriber_id == subscriber_id, Subscription.ended_reason == "unsubscribed"
            )
        )
    )
    return ended - {s.topic_id for s in open_subscriptions(session, subscriber_id)}


def recent_requests(session: Session, subscriber_id: int, now: datetime) -> int:
    """Subscribe requests (each one a confirmation email) for this person in the hour up to `now`."""
    return session.scalar(
        select(func.count(ConsentEvent.id)).where(
            ConsentEvent.subscriber_id == subscriber_id,
            ConsentEvent.kind == "subscribe_requested",
            ConsentEvent.created_at > now - timedelta(hours=1),
        )
    )


def suppression_reason(session: Session, subscriber: Subscriber) -> str | None:
    """Why we may not email this person (bounced, complained, erased), or None."""
    return session.scalar(select(Suppression.reason).where(Suppression.email_hash == subscriber.email_hash))


def team_emails(session: Session, ids: set[int]) -> dict[int, str]:
    """The addresses of these team members, by id (for "changed by" in a consent history)."""
    if not ids:
        return {}
    return dict(session.execute(select(AdminUser.id, AdminUser.email).where(AdminUser.id.in_(ids))).all())


def topics(session: Session) -> list[Topic]:
    """Every topic, retired ones too, in display order."""
    return list(session.scalars(select(Topic).order_by(Topic.position, Topic.id)))


def offered_topics(session: Session) -> list[Topic]:
    """The topics people may subscribe to now (none retired), in display order."""
    return list(session.scalars(select(Topic).where(Topic.retired_at.is_(None)).order_by(Topic.position, Topic.id)))


def areas(session: Session) -> list[Area]:
    """Every area, retired ones too, in display order."""
    return catalogue.in_order(session, Area)


def offered_areas(session: Session) -> list[Area]:
    """The areas the public may choose now (none retired), in display order."""
    return [area for area in catalogue.in_order(session, Area) if area.retired_at is None]


def listed(session: Session, kind, row_id: int):
    """One topic or area by id (NotFound if there is none)."""
    return catalogue.get(session, kind, row_id)


def topic(session: Session, topic_id: int) -> Topic | None:
    return session.get(Topic, topic_id)


def topic_by_slug(session: Session, slug: str) -> Topic:
    found = session.scalar(select(Topic).where(Topic.slug == slug)) if "\x00" not in slug else None
    if found is None:
        raise NotFound(f"There is no topic {slug!r}")
    return found


def segments(session: Session) -> list[Segment]:
    """Every segment, by name."""
    return list(session.scalars(select(Segment).order_by(Segment.name)))


def issues_using(session: Session, segment_id: int, limit: int = 20) -> list[Issue]:
    """The latest issues that use a segment (what deleting or changing it would touch)."""
    return list(
        session.scalars(select(Issue).where(Issue.segment_id == segment_id).order_by(Issue.id.desc()).limit(limit))
    )


def recent_imports(session: Session, limit: int = 20) -> list[Import]:
    return list(session.scalars(select(Import).order_by(Import.id.desc()).limit(limit)))


def running_imports(session: Session, limit: int = 20) -> list[Import]:
    """Imports queued or under way, oldest first (what the home page shows with each one's progress)."""
    return list(
        session.scalars(select(Import).where(Import.status.in_(("queued", "running"))).order_by(Import.id).limit(limit))
    )


def import_record(session: Session, import_id: int) -> Import:
    record = session.get(Import, import_id)
    if record is None:
        raise NotFound(f"There is no import {import_id}.")
    return record
