"""The lists the team manages: topics people subscribe to and the areas they say they live or work in.

A topic or an area is created with a slug (made from its name unless given) that never changes afterwards:
the API, CSV imports, segments, updates and exports name them by it. Names, descriptions and the order the
public sees them in change freely. Neither is ever deleted: retiring one stops offering it (and, for a topic,
sending to it) while everything that names it stays as it was; restoring undoes that.

Topic ids are bits of `Subscriber.topic_mask` (see models/topics.py), so they are handed out here, in order, up
to MAX_TOPIC_ID, and never reused: a retired topic's subscriptions are history that names its id.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import Conflict, NotFound
from ..models import MAX_ID, MAX_TOPIC_ID, Area, Topic, utcnow
from .inputs import AREA_SLUG_MAX, TOPIC_SLUG_MAX, AreaChange, AreaInput, TopicChange, TopicInput

Listed = TypeVar("Listed", Topic, Area)


def slug_from(name: str, limit: int) -> str:
    """A slug from a name: accents dropped ('Siân' → 'sian'; the standard library's Unicode decomposition does it
    well enough for the names a comms team gives), anything else between words a single hyphen."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:limit].rstrip("-")


def in_order(session: Session, kind: type[Listed]) -> list[Listed]:
    """Every row of the list, in the order the public sees them (retired ones keep their place)."""
    return list(session.scalars(select(kind).order_by(kind.position, kind.id)))


def get(session: Session, kind: type[Listed], row_id) -> Listed:
    """One topic or area by id (NotFound, naming which, if there is none)."""
    found = session.get(kind, row_id) if isinstance(row_id, int) and 0 < row_id <= MAX_ID else None
    if found is None:
        raise NotFound(f"There is no {kind.__tablename__.rstrip('s')} {row_id}")
    return found


def _move(session: Session, row: Listed, position: int) -> None:
    """Put `row` at `position` (1 is first; beyond the end is last) and number the list again from 0."""
    rows = [r for r in in_order(session, type(row)) if r is not row]
    rows.insert(min(position, len(rows) + 1) - 1, row)
    for n, each in enumerate(rows):
        each.position = n


def _slug_taken(session: Session, kind: type[Listed], slug: str) -> Conflict:
    what = kind.__tablename__.rstrip("s")
    return Conflict(f"There is already a {what} with the slug {slug!r}: give this one another slug or name")


def _new(session: Session, row: Listed, position: int | None) -> Listed:
    """Add `row` at `position` (last if None); Conflict if its slug is taken (checked first, and again by the
    unique index for two creations at once)."""
    kind = type(row)
    if session.scalar(select(kind.id).where(kind.slug == row.slug)) is not None:
        raise _slug_taken(session, kind, row.slug)
    row.position = (session.scalar(select(func.max(kind.position))) or 0) + 1
    slug = row.slug
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:  # someone else made one at the same moment: its slug, or the next topic id
        if session.scalar(select(kind.id).where(kind.slug == slug)) is not None:
            raise _slug_taken(session, kind, slug) from exc
        raise Conflict(f"Another {kind.__tablename__.rstrip('s')} was added at the same moment: try again") from exc
    if position is not None:
        _move(session, row, position)
    session.flush()
    return row


def create_topic(session: Session, data: TopicInput) -> Topic:
    """A new topic, offered on the sign-up form and the preference centre at once. Conflict if its slug is
    taken or if all MAX_TOPIC_ID topic ids have been used (retired topics keep theirs)."""
    slug = data.slug or slug_from(data.name, TOPIC_SLUG_MAX)
    if not slug:
        raise Conflict("Give the topic a slug: its name has no letters or digits to make one from")
    last = session.scalar(select(func.max(Topic.id))) or 0
    if last >= MAX_TOPIC_ID:
        raise Conflict(
            f"There can be at most {MAX_TOPIC_ID} topics, retired ones included (each is one bit of every "
            "subscriber's topic summary, which keeps segment counts to one scan): restore a retired topic "
            "or rename one instead"
        )
    topic = Topic(id=last + 1, slug=slug, name=data.name, description=data.description)
    return _new(session, topic, data.position)


def change_topic(session: Session, topic: Topic, data: TopicChange) -> dict:
    """Rename, describe or move a topic; returns what changed ({field: [before, after]})."""
    changed = {}
    for field in ("name", "description"):
        value = getattr(data, field)
        if value is not None and value != getattr(topic, field):
            changed[field] = [getattr(topic, field), value]
            setattr(topic, field, value)
    if data.position is not None:
        changed |= _moved(session, topic, data.position)
    session.flush()
    return changed


def _moved(session: Session, row: Listed, position: int) -> dict:
    before = [r.id for r in in_order(session, type(row))].index(row.id) + 1
    _move(session, row, position)
    after = [r.id for r in in_order(session, type(row))].index(row.id) + 1
    return {"position": [before, after]} if before != after else {}


def retire(session: Session, row: Listed) -> bool:
    """Stop offering (and, for a topic, sending to) `row`; False if it was retired already."""
    if row.retired_at is not None:
        return False
    row.retired_at = utcnow()
    session.flush()
    return True


def restore(session: Session, row: Listed) -> bool:
    """Offer `row` again, where it was in the list; False if it was not retired."""
    if row.retired_at is None:
        return False
    row.retired_at = None
    session.flush()
    return True


def create_area(session: Session, data: AreaInput) -> Area:
    """A new area, offered on the sign-up form and the preference centre at once (Conflict if its slug is
    taken)."""
    slug = data.slug or slug_from(data.name, AREA_SLUG_MAX)
    if not slug:
        raise Conflict("Give the area a slug: its name has no letters or digits to make one from")
    return _new(session, Area(slug=slug, name=data.name), data.position)


def change_area(session: Session, area: Area, data: AreaChange) -> dict:
    """Rename or move an area; returns what changed ({field: [before, after]})."""
    changed = {}
    if data.name is not None and data.name != area.name:
        changed["name"] = [area.name, data.name]
        area.name = data.name
    if data.position is not None:
        changed |= _moved(session, area, data.position)
    session.flush()
    return changed
