"""Streamed CSV export of an audience (a segment or a topic): constant memory, one page of people at a time.

The file is written for spreadsheets (`mailer.spreadsheet`): a byte order mark, and no cell a spreadsheet
would run as a formula. Imported again (as is, or as Excel saves it back), it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..db import Database
from ..models import Subscriber, Subscription, Topic, services_of
from ..spreadsheet import SpreadsheetCsv
from .rules import compile_rules
from .segments import reachable

EXPORT_COLUMNS = ("email", "name", "topics", "area", "audience", "services", "subscribed_at", "confirmed_at")
PAGE = 2000


def export_audience(topic_id: int | None = None, rules: dict | None = None) -> Select:
    """Reachable people with an open subscription to the topic (any frequency) and/or matching the rules."""
    query = select(Subscriber.id).where(*reachable())
    if topic_id is not None:
        query = query.where(
            select(Subscription.id)
            .where(
                Subscription.subscriber_id == Subscriber.id,
                Subscription.topic_id == topic_id,
                Subscription.ended_at.is_(None),
            )
            .exists()
        )
    if rules:
        query = query.where(compile_rules(rules))
    return query


def _page(session: Session, audience: Select, after: int) -> list[list[str]]:
    ids = audience.where(Subscriber.id > after).order_by(Subscriber.id).limit(PAGE).subquery()
    people = session.execute(
        select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.area,
            Subscriber.audience,
            Subscriber.services,
            Subscriber.subscribed_at,
            Subscriber.confirmed_at,
        )
        .join(ids, ids.c.id == Subscriber.id)
        .order_by(Subscriber.id)
    ).all()
    if not people:
        return []
    topics: dict[int, list[str]] = {}
    for subscriber_id, slug, frequency in session.execute(
        select(Subscription.subscriber_id, Topic.slug, Subscription.frequency)
        .join(Topic, Topic.id == Subscription.topic_id)
        .where(Subscription.subscriber_id.in_([p.id for p in people]), Subscription.ended_at.is_(None))
        .order_by(Subscription.subscriber_id, Topic.position)
    ):
        topics.setdefault(subscriber_id, []).append(slug if frequency == "immediately" else f"{slug}:{frequency}")
    return [
        [
            p.id,
            p.email,
            p.name,
            ";".join(topics.get(p.id, [])),
            p.area or "",
            p.audience or "",
            ";".join(services_of(p.services or 0)),
            p.subscribed_at.date().isoformat() if p.subscribed_at else "",
            p.confirmed_at.date().isoformat() if p.confirmed_at else "",
        ]
        for p in people
    ]


def export_csv(db: Database, audience: Select) -> Iterator[str]:
    """CSV text, a page at a time, in the import's column style (topics as slug or slug:frequency)."""
    out = SpreadsheetCsv(EXPORT_COLUMNS)
    yield out.take()
    after = 0
    while True:
        with db.sessions() as session:  # a short read per page: a long export holds no snapshot or lock
            rows = _page(session, audience, after)
        if not rows:
            return
        for row in rows:
            out.row(row[1:])
        after = rows[-1][0]
        yield out.take()
