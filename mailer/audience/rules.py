"""Segment rules: validate a rule tree and compile it to one SQL condition over subscribers.

A rule is `{"all": [...]}` or `{"any": [...]}` (nestable) whose leaves are conditions
`{"field": ..., "op": ..., "value": ...}`. What each field means:

- `topic`: an open subscription to the topic (`is`/`in`), or none to it (`is_not`/`not_in`).
- `frequency`: an open subscription at that frequency to any topic (`is`/`in`), or none (`is_not`/`not_in`).
- `area`, `audience`: the subscriber's answer; `is_not`/`not_in` include people who did not answer.
- `service`: interested in that service (`is`/`in`: any of them), or not (`is_not`/`not_in`: none of them).
- `subscribed_at`, `confirmed_at`: `before`/`after` a date (`YYYY-MM-DD`, a whole day in UTC) or an ISO
  datetime, in the years 1900 to 2999; a person with no such date matches neither.

The rule tree is an input model (`mailer/audience/inputs.py`: `AllOf`, `AnyOf`, `Condition`, a discriminated
union), so validation says exactly where a rule is wrong (`rules.all[2].op: ...`) and an API caller or the
admin form can point at it. Compilation never touches the database: topic slugs are turned into bits in the query.
Topic and frequency conditions read `Subscriber.topic_mask` / `frequency_mask`, the summary of a person's
open subscriptions that a trigger keeps (migration 0005), so every condition is a test on one row.
"""

from __future__ import annotations

from datetime import timedelta
from functools import reduce
from operator import or_ as or_bits

from sqlalchemy import BigInteger, and_, cast, false, func, literal, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from ..errors import InvalidInput
from ..models import AUDIENCES, FREQUENCY_BITS, SERVICES, Subscriber, Topic, services_mask
from .inputs import DATE_OPS, AllOf, AnyOf, RulesOnly, parse_when, parse_with_topics

FIELD_LABELS = {
    "topic": "Subscribed to",
    "area": "Area",
    "audience": "Audience",
    "service": "Interested in",
    "frequency": "Gets mail",
    "subscribed_at": "Subscribed",
    "confirmed_at": "Confirmed",
}
OP_LABELS = {
    "is": "is",
    "is_not": "is not",
    "in": "is any of",
    "not_in": "is none of",
    "before": "before",
    "after": "after",
}


def validate_rules(rules, topic_slugs: list[str], area_slugs: list[str]) -> dict:
    """A rule tree checked by its model (`inputs.RulesOnly`, with these topics and areas) and normalised (slugs
    trimmed), or InvalidInput naming each problem by its path (`rules.all[2].op`)."""
    topics, areas = dict.fromkeys(topic_slugs), dict.fromkeys(area_slugs)
    checked = parse_with_topics(topics, RulesOnly, {"rules": rules}, areas=areas)
    return usable(checked.rules)


def usable(rules: AllOf | AnyOf) -> dict:
    """A parsed rule tree (`inputs.Rules`, its topics checked when parsed) as the dict that is saved and compiled;
    InvalidInput if it cannot be compiled: what is saved must be what a count, an export or a send can use."""
    checked = rules.model_dump()
    try:
        compile_rules(checked)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput({"rules": f"these rules cannot be used: {exc}"}) from exc
    return checked


def _values(cond: dict) -> list[str]:
    value = cond["value"]
    return [value] if isinstance(value, str) else list(value)


def _topic_bits(slugs: list[str]) -> ColumnElement[int]:
    """The topic_mask bits of these topics, looked up by slug in the query itself (evaluated once)."""
    bit = cast(literal(1), BigInteger).op("<<")(Topic.id)
    return select(cast(func.coalesce(func.sum(bit), 0), BigInteger)).where(Topic.slug.in_(slugs)).scalar_subquery()


def _any_bit(column, bits) -> ColumnElement[bool]:
    """Whether the column has any of these bits. Written `> 0` (masks are never negative), not `!= 0`: with
    no statistics on a bitwise expression PostgreSQL guesses an inequality matches a third of the rows, where
    it guesses `= 0` (a negated rule) matches 0.5 %, and then probes subscriptions once per person for an
    issue's audience (0.65 → 1.9 s for "not Careers" to Trust Matters over a million subscribers)."""
    return column.op("&")(bits) > 0


def _condition(cond: dict) -> ColumnElement[bool]:
    field, op = cond["field"], cond["op"]
    if op in DATE_OPS:
        column = Subscriber.subscribed_at if field == "subscribed_at" else Subscriber.confirmed_at
        moment, whole_day = parse_when(cond["value"])
        if op == "before":
            return column < moment
        # "after 31 January" means from 1 February; "after 09:00" means later than 09:00.
        return column >= moment + timedelta(days=1) if whole_day else column > moment
    values = _values(cond)
    negate = op in ("is_not", "not_in")
    # Topics and frequencies read the subscriber's summary of their open subscriptions (kept by a trigger):
    # a column of the row, so "any" groups cost no per-person subquery.
    if field == "topic":
        match = _any_bit(Subscriber.topic_mask, _topic_bits(values))
    elif field == "frequency":
        match = _any_bit(Subscriber.frequency_mask, reduce(or_bits, (FREQUENCY_BITS[v] for v in values)))
    elif field == "service":
        match = _any_bit(Subscriber.services, services_mask(values))
    else:
        column = Subscriber.area if field == "area" else Subscriber.audience
        if not negate:
            return column == values[0] if len(values) == 1 else column.in_(values)
        # People who did not answer are "not in Portsmouth" too.
        return or_(column.is_(None), column.not_in(values))
    return ~match if negate else match


def compile_rules(rules: dict) -> ColumnElement[bool]:
    """A validated rule tree as one SQL boolean over `Subscriber` (and correlated subqueries)."""
    key = "all" if "all" in rules else "any"
    parts = [compile_rules(item) if ("all" in item or "any" in item) else _condition(item) for item in rules[key]]
    if not parts:
        return true() if key == "all" else false()
    return and_(*parts) if key == "all" else or_(*parts)


def describe(rules: dict, topic_names: dict[str, str] | None = None, area_names: dict[str, str] | None = None) -> str:
    """The rules in words, for the admin: 'Area is Isle of Wight and Audience is any of carer, staff'."""
    names = {"topic": topic_names or {}, "area": area_names or {}, "audience": AUDIENCES}

    def label(field: str, value: str) -> str:
        if field == "service":
            return SERVICES[value][0] if value in SERVICES else value
        return names.get(field, {}).get(value, value)

    def words(node: dict, top: bool) -> str:
        key = "all" if "all" in node else "any"
        joiner = " and " if key == "all" else " or "
        parts = []
        for item in node[key]:
            if "all" in item or "any" in item:
                parts.append(words(item, False))
                continue
            field, op = item["field"], item["op"]
            if op in DATE_OPS:
                value = item["value"]
            else:
                value = ", ".join(label(field, v) for v in _values(item))
            parts.append(f"{FIELD_LABELS[field]} {OP_LABELS[op]} {value}")
        text = joiner.join(parts)
        return text if top or len(parts) == 1 else f"({text})"

    return words(rules, True)
