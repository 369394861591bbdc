"""Who is in an audience, as a SQL `select` of subscriber ids (never a Python loop over people).

Delivery receives these selects ready-made, so it never needs to know what a subscription or a segment is.
"""

from __future__ import annotations

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NotFound
from ..models import MAX_ID, Area, Segment, Subscriber, Subscription, Suppression, Topic
from .inputs import RulesOnly
from .rules import compile_rules, usable, validate_rules


def not_suppressed():
    return ~exists().where(Suppression.email_hash == Subscriber.email_hash)


def reachable() -> list:
    """Conditions every audience shares: confirmed, still subscribed, not on the suppression list."""
    return [Subscriber.status == "active", not_suppressed()]


def topic_audience(topic_id: int, rules: dict | None = None) -> Select:
    """Who an issue to the topic goes to now: `select(subscriber.id)`.

    Those who chose the topic "as it happens"; weekly and monthly subscribers get it in their digest.
    With `rules`, only those who also match the segment. Nobody while the topic is retired: its subscriptions
    are history (a send under way when it was retired skips everyone left, as `still_wanted` asks this).
    """
    query = (
        select(Subscriber.id)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.topic_id == topic_id,
            Subscription.ended_at.is_(None),
            Subscription.frequency == "immediately",
            # Uncorrelated: the database answers it once per query, not per row.
            exists().where(Topic.id == topic_id, Topic.retired_at.is_(None)),
            *reachable(),
        )
    )
    if rules:
        query = query.where(compile_rules(rules))
    return query


def reachable_audience() -> Select:
    """Everyone we may email now."""
    return select(Subscriber.id).where(*reachable())


def segment_audience(rules: dict) -> Select:
    """Everyone reachable who matches the rules, whatever their topics."""
    return select(Subscriber.id).where(*reachable(), compile_rules(rules))


def count(session: Session, query: Select) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0


def audience_size(session: Session, topic_id: int, rules: dict | None = None) -> int:
    """How many people an issue to this topic (and segment) would reach now."""
    return count(session, topic_audience(topic_id, rules))


def topic_slugs(session: Session) -> list[str]:
    """Every topic's slug, retired ones too: segments may still name a retired topic (its subscriptions are
    history a segment can ask about)."""
    return list(session.scalars(select(Topic.slug).order_by(Topic.position)))


def topics_by_slug(session: Session) -> dict[str, Topic]:
    """Every topic by its slug, retired ones too (a CHECK keeps them to 62 rows); inputs refuse a retired one
    where it would start something (a subscription, an issue, an update: `inputs.unknown_topics`). Slugs
    someone sent are looked up here, never put in SQL: PostgreSQL refuses a NUL character in text, so a slug
    holding one was a 500 there."""
    return {topic.slug: topic for topic in session.scalars(select(Topic))}


def topic_names(session: Session) -> dict[str, str]:
    return {slug: name for slug, name in session.execute(select(Topic.slug, Topic.name))}


def areas_by_slug(session: Session) -> dict[str, Area]:
    """Every area by its slug, retired ones too (inputs refuse a retired one where someone chooses it)."""
    return {area.slug: area for area in session.scalars(select(Area).order_by(Area.position, Area.id))}


def area_names(session: Session) -> dict[str, str]:
    """Every area's name by its slug, in display order (retired ones too: people may still hold them)."""
    return {slug: name for slug, name in session.execute(select(Area.slug, Area.name).order_by(Area.position, Area.id))}


def check_rules(session: Session, rules) -> dict:
    """Validated, normalised rules (InvalidInput naming each problem)."""
    return validate_rules(rules, topic_slugs(session), list(area_names(session)))


def usable_rules(session: Session, rules, what: str = "the segment") -> dict:
    """Stored rules checked again before a count, an export or a send uses them.

    Rules saved before validation refused what they hold (a date like 9999-12-31) are a Conflict saying what to
    change, never a 500 and never a send that cannot start."""
    try:
        return check_rules(session, rules)
    except InvalidInput as exc:
        raise Conflict(f"The rules of {what} can no longer be used ({exc}): change them and save again") from exc


def segment_rules(session: Session, segment: Segment) -> dict:
    """A stored segment's rules, ready to compile (Conflict if they can no longer be used)."""
    return usable_rules(session, segment.rules, f"segment {segment.name!r}")


def get_segment(session: Session, segment_id) -> Segment:
    segment = session.get(Segment, segment_id) if isinstance(segment_id, int) and 0 < segment_id <= MAX_ID else None
    if segment is None:
        raise NotFound("No such segment")
    return segment


def segment_count(session: Session, segment: Segment) -> int:
    """How many reachable people a stored segment matches now (Conflict if its rules can no longer be used)."""
    return count(session, segment_audience(segment_rules(session, segment)))


def rules_count(session: Session, rules) -> tuple[dict, int]:
    """Rules not yet saved, checked (InvalidInput naming each problem), and how many reachable people they
    match now."""
    checked = check_rules(session, rules)
    return checked, count(session, segment_audience(checked))


def rules_matching(session: Session, data: RulesOnly) -> tuple[dict, int]:
    """Parsed rules not yet saved (their topics checked when parsed) and how many reachable people they match."""
    checked = usable(data.rules)
    return checked, count(session, segment_audience(checked))


def update_audience(topic_id: int, areas: list[str], services: int) -> Select:
    """Who gets a progress update as it happens: the topic's "as it happens" subscribers in one of its areas
    (or who did not say where they are) and, if it names services, interested in one of them (or in none
    in particular)."""
    query = topic_audience(topic_id)
    if areas:
        query = query.where(or_(Subscriber.area.in_(areas), Subscriber.area.is_(None)))
    if services:
        query = query.where(or_(Subscriber.services.op("&")(services) != 0, Subscriber.services == 0))
    return query
