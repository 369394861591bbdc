"""Segment rules: validate a rule tree and compile it to one SQL condition over subscribers.

A rule is `{"all": [...]}` or `{"any": [...]}` (nestable) whose leaves are conditions
`{"field": ..., "op": ..., "value": ...}`. What each field means:

- `topic`: an open subscription to the topic (`is`/`in`), or none to it (`is_not`/`not_in`).
- `frequency`: an open subscription at that frequency to any topic (`is`/`in`), or none (`is_not`/`not_in`).
- `area`, `audience`: the subscriber's answer; `is_not`/`not_in` include people who did not answer.
- `service`: interested in that service (`is`/`in`: any of them), or not (`is_not`/`not_in`: none of them).
- `subscribed_at`, `confirmed_at`: `before`/`after` a date (`YYYY-MM-DD`, a whole day in UTC) or an ISO
  datetime, in the years 1900 to 2999; a person with no such date matches neither.

Validation says exactly where a rule is wrong (`rules.all[2].op: ...`), so an API caller or the admin form
can point at it. Compilation never touches the database: topic slugs are turned into bits in the query.
Topic and frequency conditions read `Subscriber.topic_mask` / `frequency_mask`, the summary of a person's
open subscriptions that a trigger keeps (migration 0005), so every condition is a test on one row.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import reduce
from operator import or_ as or_bits
from typing import Any

from sqlalchemy import BigInteger, and_, cast, false, func, literal, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from ..errors import InvalidInput
from ..models import AREAS, AUDIENCES, FREQUENCIES, FREQUENCY_BITS, SERVICES, Subscriber, Topic, services_mask

SET_OPS = ("is", "is_not", "in", "not_in")
DATE_OPS = ("before", "after")
FIELDS: dict[str, tuple[str, ...]] = {
    "topic": SET_OPS,
    "area": SET_OPS,
    "audience": SET_OPS,
    "service": SET_OPS,
    "frequency": SET_OPS,
    "subscribed_at": DATE_OPS,
    "confirmed_at": DATE_OPS,
}
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
MAX_DEPTH = 6
MAX_CONDITIONS = 200
# Dates a rule may name. Wider than any subscription can have, narrow enough that "the day after" and any UTC
# offset stay inside what Python, SQLite and PostgreSQL can all hold (a rule dated 9999-12-31 once broke every
# count, export and send that used it), and a mistyped year like 3026 is caught when the rule is saved.
FIRST_DATE = datetime(1900, 1, 1, tzinfo=UTC)
LAST_DATE = datetime(3000, 1, 1, tzinfo=UTC)


def field_choices(topic_slugs: list[str] | None = None) -> dict[str, list[str]]:
    """The allowed values of each set field."""
    return {
        "topic": list(topic_slugs or []),
        "area": list(AREAS),
        "audience": list(AUDIENCES),
        "service": list(SERVICES),
        "frequency": list(FREQUENCIES),
    }


def parse_when(value: Any) -> tuple[datetime, bool]:
    """A rule's date value as an aware UTC datetime, and whether it named a whole day.

    ValueError (with a sentence for a person) for anything else, including dates outside 1900-2999."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("give a date as YYYY-MM-DD or an ISO date and time")
    text = value.strip()
    whole_day = True
    try:
        moment = datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        whole_day = False
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not a date (YYYY-MM-DD) or an ISO date and time") from None
    if not FIRST_DATE.year <= moment.year < LAST_DATE.year:
        raise ValueError(f"give a date in the years {FIRST_DATE.year} to {LAST_DATE.year - 1}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC), whole_day


def _shown(value: Any) -> str:
    """A value someone sent, as an error message names it: a string quoted (and cut short), others by kind."""
    if isinstance(value, str):
        return repr(value[:40] + "…" if len(value) > 40 else value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    kinds = {dict: "an object", list: "a list", int: "a number", float: "a number"}
    return kinds.get(type(value), "a value of another type")


def _unknown(key: str, value: Any) -> str:
    if isinstance(value, str):
        return f"unknown {key} {_shown(value)}"
    return f"{key} must be a string, not {_shown(value)}"


def validate_rules(rules: Any, topic_slugs: list[str]) -> dict:
    """Check a rule tree; return it normalised (slugs trimmed) or raise InvalidInput naming each problem."""
    errors: dict[str, str] = {}
    count = [0]
    choices = field_choices(topic_slugs)

    def group(node: Any, path: str, depth: int) -> dict | None:
        if not isinstance(node, dict) or len(node) != 1 or next(iter(node)) not in ("all", "any"):
            errors[path] = 'must be {"all": [...]} or {"any": [...]}'
            return None
        if depth > MAX_DEPTH:
            errors[path] = f"rules may be nested at most {MAX_DEPTH} deep"
            return None
        key = next(iter(node))
        items = node[key]
        if not isinstance(items, list) or not items:
            errors[f"{path}.{key}"] = "must be a list with at least one condition"
            return None
        out = []
        for i, item in enumerate(items):
            item_path = f"{path}.{key}[{i}]"
            if isinstance(item, dict) and ("all" in item or "any" in item):
                child = group(item, item_path, depth + 1)
            else:
                child = condition(item, item_path)
            if child is not None:
                out.append(child)
        return {key: out}

    def condition(node: Any, path: str) -> dict | None:
        count[0] += 1
        if count[0] > MAX_CONDITIONS:
            errors.setdefault("rules", f"a segment may have at most {MAX_CONDITIONS} conditions")
            return None
        if not isinstance(node, dict):
            errors[path] = 'must be a condition {"field", "op", "value"} or a group {"all"|"any": [...]}'
            return None
        extra = sorted(set(node) - {"field", "op", "value"})
        if extra:
            errors[path] = f"unknown key {extra[0]!r}; a condition has field, op and value"
            return None
        field, op, value = node.get("field"), node.get("op"), node.get("value")
        # JSON gives lists, objects, numbers and null as readily as strings: name the key, never hash them.
        if not isinstance(field, str) or field not in FIELDS:
            errors[f"{path}.field"] = f"{_unknown('field', field)}; use one of {', '.join(FIELDS)}"
            return None
        if not isinstance(op, str) or op not in FIELDS[field]:
            errors[f"{path}.op"] = f"{_unknown('op', op)} for {field}; use one of {', '.join(FIELDS[field])}"
            return None
        if op in DATE_OPS:
            try:
                parse_when(value)
            except ValueError as exc:
                errors[f"{path}.value"] = str(exc)
                return None
            return {"field": field, "op": op, "value": value.strip()}
        allowed = choices[field]
        if op in ("is", "is_not"):
            if not isinstance(value, str):
                errors[f"{path}.value"] = f"{op} takes one value, a string"
                return None
            values = [value.strip()]
        else:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                errors[f"{path}.value"] = f"{op} takes a non-empty list of strings"
                return None
            values = [v.strip() for v in value]
        unknown = [v for v in values if v not in allowed]
        if unknown:
            errors[f"{path}.value"] = f"unknown {field} {_shown(unknown[0])}; use one of {', '.join(allowed)}"
            return None
        return {"field": field, "op": op, "value": values[0] if op in ("is", "is_not") else values}

    normalised = group(rules, "rules", 1)
    if not errors:
        try:
            compile_rules(normalised)  # what is saved must be what a count, an export or a send can use
        except (ValueError, OverflowError) as exc:
            errors["rules"] = f"these rules cannot be used: {exc}"
    if errors:
        raise InvalidInput(errors)
    return normalised


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


def describe(rules: dict, topic_names: dict[str, str] | None = None) -> str:
    """The rules in words, for the admin: 'Area is Isle of Wight and Audience is any of carer, staff'."""
    topic_names = topic_names or {}
    names = {"topic": topic_names, "area": AREAS, "audience": AUDIENCES}

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
