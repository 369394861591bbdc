"""What the audience is asked to do, as typed inputs (`mailer.inputs`): one model per form, API body, CLI call
and CSV row, each checked once.

Adapters give a model the shape an API caller would send: the sign-up form, the preference centre and the
admin's "change on their behalf" form, `POST /subscribers`, a CSV row and `mailer subscribers add` all become
the same dicts. What a model cannot know without the database (which topics and areas exist) it checks when
it is parsed, with the database's topics and areas as context (`lookups.parse_in`; `@operation(context=...)` for an API
body), so a form shows an unknown topic with every other mistake at once and the command trusts the model:
topics are checked once. A model naming topics cannot be parsed without them (a RuntimeError: a mistake in
the code, not in the input).

Validators raise `ValueError` with the sentence a person reads (`mailer.inputs` keeps it as written, named by
the field's path: `consent.source`, `rules.all[1].op`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from ..errors import InvalidInput
from ..inputs import Input, parse
from ..models import AUDIENCES, FREQUENCIES, SERVICES, utcnow
from ..render.content import clean_text
from .emails import normalise_email

M = TypeVar("M", bound=Input)

NAME_MAX = 200
SOURCE_MAX = 500
SEGMENT_NAME_MAX = 120
FILENAME_MAX = 255


def parse_with_topics(
    topics: Mapping[str, Any], model: type[M], data: Any, *, areas: Mapping[str, Any], prefix: str = ""
) -> M:
    """`mailer.inputs.parse` that also checks topic slugs against `topics` (slug → Topic, or anything) and areas
    against `areas` (slug → Area, or its name), so a form shows an unknown topic or area with every other
    mistake at once."""
    return parse(model, data, prefix=prefix, context={"topics": topics, "areas": areas})


def _areas_of(info: ValidationInfo) -> Mapping[str, Any]:
    """The areas this input is checked against (slug → Area, or its name): the database's, never guessed."""
    areas = (info.context or {}).get("areas")
    if areas is None:
        raise RuntimeError("Areas are checked when the input is parsed: use parse_in (or @operation(context=...))")
    return areas


def _area_label(area: Any) -> str:
    return area if isinstance(area, str) else getattr(area, "name", "")


def unknown_topics(slugs, topics: Mapping[str, Any] | None) -> str | None:
    """The sentence for the slugs not among `topics`, or for those retired (a retired topic takes no new
    subscriptions; `topics` maps slug → Topic), or None (also when the topics are not known here)."""
    if topics is None:
        return None
    unknown = [slug for slug in slugs if slug not in topics]
    if unknown:
        return f"Unknown topic: {', '.join(unknown)}"
    retired = [slug for slug in slugs if getattr(topics[slug], "retired_at", None) is not None]
    if retired:
        return f"Topic {', '.join(retired)} is retired: it takes no new subscriptions"
    return None


def _topics_of(info: ValidationInfo) -> Mapping[str, Any]:
    """The topics this input is checked against. Never guessed: a model naming topics parsed without them would
    reach its command unchecked."""
    topics = (info.context or {}).get("topics")
    if topics is None:
        raise RuntimeError("Topics are checked when the input is parsed: use parse_in (or @operation(context=...))")
    return topics


def one_line(value: str) -> str:
    """Free text as one line: invisible characters out, runs of white space one space."""
    return " ".join(clean_text(value).split())


def slug_for(value: str, choices: dict) -> str | None:
    """A slug from a slug or its label, ignoring case and spacing ('Isle of Wight' → 'isle-of-wight')."""
    text = " ".join(value.split()).lower()
    for slug, label in choices.items():
        label = label[0] if isinstance(label, tuple) else label
        if text in (slug, label.lower(), slug.replace("-", " ")):
            return slug
    return None


# --- a person's answers -----------------------------------------------------------------------------------


def _email(value: Any) -> str:
    try:
        return normalise_email(value if isinstance(value, str) else "")
    except InvalidInput as exc:
        raise ValueError(exc.sentences) from None


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("Name must be text")
    text = one_line(value) or None
    if text and len(text) > NAME_MAX:
        raise ValueError(f"Name must be {NAME_MAX} characters or fewer")
    return text


def _choice(choices: dict, message: str, value: Any) -> str | None:
    """A slug of `choices` (its label will do); None when blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    slug = slug_for(value, choices) if isinstance(value, str) else None
    if slug is None:
        raise ValueError(message)
    return slug


def _services(value: Any) -> list[str]:
    """Slugs or labels, as a list or separated by ';' (a spreadsheet cell), in display order."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [s for s in value.split(";") if s.strip()]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValueError("Services must be a list of service names")
    slugs = set()
    for item in value:
        slug = slug_for(item, SERVICES)
        if slug is None:
            raise ValueError(f"Unknown service {item.strip()!r}: use {', '.join(SERVICES)}")
        slugs.add(slug)
    return [s for s in SERVICES if s in slugs]


AudienceSlug = Literal[tuple(AUDIENCES)]
ServiceSlug = Literal[tuple(SERVICES)]
Frequency = Literal[FREQUENCIES]

Email = Annotated[
    str,
    BeforeValidator(_email),
    Field(max_length=254, json_schema_extra={"format": "email"}, description="An email address"),
]
Name = Annotated[Annotated[str, Field(max_length=NAME_MAX)] | None, BeforeValidator(_name)]


def _labels(choices: dict) -> list[str]:
    return [label[0] if isinstance(label, tuple) else label for label in choices.values()]


def _slug_or_label(choices: dict) -> dict:
    """What the server accepts for one choice (the JSON schema of what is sent, not of what is kept): a slug, or
    its label in any case and spacing ('Isle of Wight', 'isle of wight')."""
    return {
        "anyOf": [
            {"type": "string", "enum": list(choices), "description": "A slug"},
            {"type": "string", "description": f"A label, in any case: {', '.join(_labels(choices))}"},
        ]
    }


def _area(value: Any, info: ValidationInfo) -> str | None:
    """An area's slug from its slug or name (any case and spacing), among the database's areas; None when blank.
    A retired area is still an answer someone may hold (the preference centre keeps it); only the public sign-up
    refuses it, as it no longer offers it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    areas = _areas_of(info)
    slug = slug_for(value, {s: _area_label(a) for s, a in areas.items()}) if isinstance(value, str) else None
    if slug is None:
        raise ValueError("Select where you live or work from the list")
    return slug


Area = Annotated[
    str | None,
    BeforeValidator(_area),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "A slug, or its name in any case (GET /areas)"},
                {"type": "null"},
            ]
        },
        mode="validation",
    ),
    Field(description="Where they live or work: a slug, or its name such as 'Isle of Wight' (kept as the slug)"),
]
Audience = Annotated[
    AudienceSlug | None,
    BeforeValidator(partial(_choice, AUDIENCES, "Select which of these describes you from the list")),
    WithJsonSchema({"anyOf": [*_slug_or_label(AUDIENCES)["anyOf"], {"type": "null"}]}, mode="validation"),
    Field(description="Who they are to us: a slug, or its label (kept as the slug)"),
]
Services = Annotated[
    list[ServiceSlug],
    BeforeValidator(_services),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": _slug_or_label(SERVICES)},
                {"type": "string", "description": "Slugs or labels separated by ;, like 'community;mental-health'"},
            ]
        },
        mode="validation",
    ),
    Field(
        description="Services they are interested in: a list of slugs or labels, or one string of them separated "
        "by ; (kept as a list of slugs)"
    ),
]


class Attributes(Input):
    """What someone tells us about themselves; every answer optional (blank is no answer)."""

    name: Name = None
    area: Area = None
    audience: Audience = None
    services: Services = []

    def answers(self) -> dict:
        return {"name": self.name, "area": self.area, "audience": self.audience, "services": list(self.services)}


# --- topics and how often -----------------------------------------------------------------------------------


class SubscriptionChoice(Input):
    """A topic and how often its news comes: as it happens, or in a weekly or monthly digest."""

    topic: str = Field(description="A topic's slug (GET /topics)")
    frequency: Frequency = "immediately"


def _wanted(item: Any) -> tuple[str, Any]:
    """(slug, frequency) from "slug", "slug:weekly" or {"topic": slug, "frequency": f}."""
    if isinstance(item, str):
        slug, _, frequency = item.strip().partition(":")
    elif isinstance(item, dict) and set(item) <= {"topic", "frequency"} and isinstance(item.get("topic"), str):
        # A frequency that is not a string (a list, an object, a number) is refused, not defaulted.
        slug, frequency = item["topic"], "" if item.get("frequency") is None else item["frequency"]
    else:
        raise ValueError('Each subscription is {"topic": slug, "frequency": ...}')
    if isinstance(frequency, str):
        frequency = (frequency or "immediately").strip()
    slug = slug.strip()
    if not isinstance(frequency, str) or frequency not in FREQUENCIES:
        raise ValueError(f"Unknown frequency {frequency!r} for {slug}: use {', '.join(FREQUENCIES)}")
    return slug, frequency


def _choices(items: Any, info: ValidationInfo, *, at_least_one: bool) -> list[SubscriptionChoice]:
    """The choices, each topic once; refused whole, with one sentence for the field, as a form shows it."""
    if not isinstance(items, list) or (at_least_one and not items):
        raise ValueError("Choose at least one topic")
    wanted: dict[str, str] = {}
    for item in items:
        slug, frequency = _wanted(item)
        if wanted.get(slug, frequency) != frequency:
            raise ValueError(f"Topic {slug} is listed twice with different frequencies")
        wanted[slug] = frequency
    if refusal := unknown_topics(wanted, _topics_of(info)):
        raise ValueError(refusal)
    return [SubscriptionChoice(topic=slug, frequency=frequency) for slug, frequency in wanted.items()]


Choice = SubscriptionChoice | Annotated[str, Field(description="slug or slug:frequency", examples=["careers:weekly"])]
Subscriptions = Annotated[
    list[Choice],
    BeforeValidator(partial(_choices, at_least_one=True)),
    Field(min_length=1, description="At least one topic, each once"),
]
Choices = Annotated[
    list[Choice],
    BeforeValidator(partial(_choices, at_least_one=False)),
    Field(description="The topics they want; none is unsubscribing from everything"),
]


def wanted(choices: list) -> dict[str, str]:
    """Checked choices as {slug: frequency}."""
    return {choice.topic: choice.frequency for choice in choices}


# --- consent collected elsewhere ----------------------------------------------------------------------------

_UK_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")


def parse_consent_date(value: Any) -> datetime | None:
    """A consent date (YYYY-MM-DD, DD/MM/YYYY or an ISO datetime) not in the future, as aware UTC; None when
    blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("Consent date must be a date like 2026-03-31 or 31/03/2026")
    text = value.strip()
    moment = _moment(text)
    if moment is None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise ValueError(f"{shown!r} is not a date like 2026-03-31 or 31/03/2026")
    if moment > utcnow():
        raise ValueError("Consent date is in the future")
    if moment.year < 2000:
        raise ValueError("Consent date is before 2000: check the date")
    return moment


def _moment(text: str) -> datetime | None:
    try:
        if _UK_DATE.fullmatch(text):  # how spreadsheets in the UK write dates: day first
            day, month, year = (int(part) for part in text.split("/"))
            return datetime(year, month, day, tzinfo=UTC)
        return datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # An offset can carry a moment past the calendar's ends (0001-01-01T00:00+01:00): OverflowError.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def clean_consent_source(value: Any, *, required: bool = True) -> str | None:
    text = one_line(value) if isinstance(value, str) else ""
    if not text and required:
        raise ValueError("Say where and how consent was given")
    if len(text) > SOURCE_MAX:
        raise ValueError(f"Consent source must be {SOURCE_MAX} characters or fewer")
    return text or None


class Consent(Input):
    """Where the person agreed to hear from us."""

    source: Annotated[str, BeforeValidator(clean_consent_source)] = Field(
        max_length=SOURCE_MAX, description="Where and how consent was given"
    )
    date: Annotated[
        datetime | None,
        BeforeValidator(parse_consent_date),
        WithJsonSchema({"type": ["string", "null"], "description": "YYYY-MM-DD or DD/MM/YYYY, since 2000"}),
    ] = None
    collected: bool = Field(
        False,
        description="true: consent was collected elsewhere, so they are active at once; "
        "false (the default): we email them to confirm",
    )


class NewSubscriber(Attributes):
    """Someone the team adds (API, import row, CLI), with where their consent came from"""

    email: Email
    subscriptions: Subscriptions
    consent: Consent

    @property
    def wanted(self) -> dict[str, str]:
        return wanted(self.subscriptions)


# --- the public's forms -------------------------------------------------------------------------------------


def _topic_slugs(value: Any, info: ValidationInfo) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValueError("Select at least one thing you would like to hear about")
    slugs = list(dict.fromkeys(s.strip() for s in value if s.strip()))
    if not slugs:
        raise ValueError("Select at least one thing you would like to hear about")
    if refusal := unknown_topics(sorted(slugs), _topics_of(info)):
        raise ValueError(refusal)
    return slugs


def _frequency(value: Any) -> str:
    if value not in FREQUENCIES:
        raise ValueError("Choose how often you would like to hear from us")
    return value


class SignUp(Attributes):
    """A subscribe request: nothing changes for the address until its owner confirms from the email."""

    email: Email
    topics: Annotated[list[str], BeforeValidator(_topic_slugs), Field(min_length=1)]
    frequency: Annotated[Frequency, BeforeValidator(_frequency)] = "immediately"


class PublicSignUp(SignUp):
    """The sign-up form on the site, where where-you-live-or-work is asked for."""

    area: Annotated[Area, Field(validate_default=True)] = None

    @field_validator("area")
    @classmethod
    def _given(cls, value: str | None, info: ValidationInfo) -> str:
        if value is None:
            raise ValueError("Select where you live or work")
        area = _areas_of(info)[value]
        if getattr(area, "retired_at", None) is not None:
            raise ValueError(f"{_area_label(area)} is no longer on the list: select where you live or work")
        return value


class ManageLinkRequest(Input):
    """The "email me my link" form: the address to send a manage link to, if we know it."""

    email: Email


class Unsubscribe(Input):
    """A press of the unsubscribe button, or a mail program's RFC 8058 one-click POST."""

    one_click: bool = False
    everything: bool = False  # the link names a topic, but they asked to leave everything


class Preferences(Attributes):
    """Topics, frequencies and answers, all at once (the preference centre, or the team on someone's behalf).

    `everything`: leave every topic and keep the answers as they are, whatever else the form held."""

    topics: Choices = []
    everything: bool = False


# --- imports ------------------------------------------------------------------------------------------------


def _filename(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("The file name must be text")
    name = one_line(value.replace("\\", "/").rsplit("/", 1)[-1])
    return name[:FILENAME_MAX] or None


class ImportUpload(Input):
    """What comes with an uploaded CSV file besides its rows."""

    # The API reads it from the query string (like web.api.spec.Query): lax, values arrive as text.
    model_config = ConfigDict(strict=False)

    filename: Annotated[str | None, BeforeValidator(_filename), Field(description="Shown in reports")] = None
    consent_source: Annotated[
        Annotated[str, Field(max_length=SOURCE_MAX)] | None,
        BeforeValidator(partial(clean_consent_source, required=False)),
        Field(description="Where consent was given, for rows without a consent_source of their own"),
    ] = None


# --- segments ------------------------------------------------------------------------------------------------

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
MAX_DEPTH = 6
MAX_CONDITIONS = 200
# Dates a rule may name. Wider than any subscription can have, narrow enough that "the day after" and any UTC
# offset stay inside what Python, SQLite and PostgreSQL can all hold (a rule dated 9999-12-31 once broke every
# count, export and send that used it), and a mistyped year like 3026 is caught when the rule is saved.
FIRST_DATE = datetime(1900, 1, 1, tzinfo=UTC)
LAST_DATE = datetime(3000, 1, 1, tzinfo=UTC)
STATIC_CHOICES = {"audience": list(AUDIENCES), "service": list(SERVICES)}
STATIC_CHOICES["frequency"] = list(FREQUENCIES)


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


def shown(value: Any) -> str:
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
        return f"unknown {key} {shown(value)}"
    return f"{key} must be a string, not {shown(value)}"


def _rule_field(value: Any) -> str:
    # JSON gives lists, objects, numbers and null as readily as strings: name the key, never hash them.
    if not isinstance(value, str) or value not in FIELDS:
        raise ValueError(f"{_unknown('field', value)}; use one of {', '.join(FIELDS)}")
    return value


def _rule_op(value: Any, info: ValidationInfo) -> str:
    field = info.data.get("field")  # absent when the field was refused: its ops are not known
    ops = FIELDS.get(field, (*SET_OPS, *DATE_OPS))
    if not isinstance(value, str) or value not in ops:
        raise ValueError(f"{_unknown('op', value)}{' for ' + field if field else ''}; use one of {', '.join(ops)}")
    return value


def _rule_value(value: Any, info: ValidationInfo) -> str | list[str]:
    field, op = info.data.get("field"), info.data.get("op")
    if field is None or op is None:  # the condition is refused for its field or op; its value only for its type
        if not isinstance(value, str) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError("value must be a string or a list of strings")
        return value
    if op in DATE_OPS:
        parse_when(value)
        return value.strip()
    if op in ("is", "is_not"):
        if not isinstance(value, str):
            raise ValueError(f"{op} takes one value, a string")
        values = [value.strip()]
    else:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{op} takes a non-empty list of strings")
        values = [v.strip() for v in value]
    # Areas and topics are the database's (retired ones too: a segment may ask about what people chose before).
    allowed = STATIC_CHOICES.get(field) or (_areas_of(info) if field == "area" else _topics_of(info))
    unknown = [v for v in values if allowed is not None and v not in allowed]
    if unknown:
        raise ValueError(f"unknown {field} {shown(unknown[0])}; use one of {', '.join(allowed)}")
    return values[0] if op in ("is", "is_not") else values


class Condition(Input):
    """One test on a person (see mailer/audience/rules.py for what each field means)"""

    field: Annotated[Literal[tuple(FIELDS)], BeforeValidator(_rule_field)]
    op: Annotated[Literal[(*SET_OPS, *DATE_OPS)], BeforeValidator(_rule_op)] = Field(
        description="is, is_not (one value), in, not_in (a list) for topic, area, audience, service and frequency; "
        "before, after for subscribed_at and confirmed_at"
    )
    value: Annotated[str | list[str], BeforeValidator(_rule_value)] = Field(
        description="A slug (is, is_not), a non-empty list of slugs (in, not_in), or a date: YYYY-MM-DD (a whole "
        "day, UTC) or an ISO date and time, in the years 1900 to 2999 (before, after)"
    )


GROUP_SHAPE = 'must be {"all": [...]} or {"any": [...]}'


def _group(node: Any) -> Any:
    if not isinstance(node, dict) or len(node) != 1 or next(iter(node)) not in ("all", "any"):
        raise ValueError(GROUP_SHAPE)
    return node


def _node(node: Any) -> Any:
    """A condition or a group, each refused whole when it is neither (before a shape is chosen for it)."""
    if isinstance(node, dict) and ("all" in node or "any" in node):
        return _group(node)
    if not isinstance(node, dict):
        raise ValueError('must be a condition {"field", "op", "value"} or a group {"all"|"any": [...]}')
    extra = sorted(set(node) - {"field", "op", "value"})
    if extra:
        raise ValueError(f"unknown key {extra[0]!r}; a condition has field, op and value")
    return node


def _items(items: Any) -> Any:
    if not isinstance(items, list) or not items:
        raise ValueError("must be a list with at least one condition")
    return items


def _kind(node: Any) -> str:
    """The shape of a node sent (a dict) or checked (a model). Tags are names no rule uses as a key, so an
    error's path names only what the caller sent."""
    if isinstance(node, AllOf | AnyOf):
        return type(node).__name__
    if isinstance(node, dict) and "all" in node:
        return "AllOf"
    if isinstance(node, dict) and "any" in node:
        return "AnyOf"
    return "Condition"


Node = Annotated[
    Annotated["AllOf", Tag("AllOf")] | Annotated["AnyOf", Tag("AnyOf")] | Annotated[Condition, Tag("Condition")],
    Discriminator(_kind),
    BeforeValidator(_node),
]
Items = Annotated[list[Node], BeforeValidator(_items), Field(min_length=1)]


class AllOf(Input):
    """People who match every item"""

    all: Items


class AnyOf(Input):
    """People who match at least one item"""

    any: Items


def depth_and_size(node: AllOf | AnyOf) -> tuple[int, int]:
    """How deep groups nest (1: no group inside) and how many conditions there are."""
    depth, size = 1, 0
    for item in node.all if isinstance(node, AllOf) else node.any:
        if isinstance(item, Condition):
            size += 1
        else:
            inner_depth, inner_size = depth_and_size(item)
            depth, size = max(depth, inner_depth + 1), size + inner_size
    return depth, size


def _bounded(rules: AllOf | AnyOf) -> AllOf | AnyOf:
    depth, size = depth_and_size(rules)
    if depth > MAX_DEPTH:
        raise ValueError(f"rules may be nested at most {MAX_DEPTH} deep")
    if size > MAX_CONDITIONS:
        raise ValueError(f"a segment may have at most {MAX_CONDITIONS} conditions")
    return rules


Rules = Annotated[
    Annotated[AllOf, Tag("AllOf")] | Annotated[AnyOf, Tag("AnyOf")],
    Discriminator(_kind),
    BeforeValidator(_group),
    AfterValidator(_bounded),
    Field(
        description=f'{{"all": [...]}} or {{"any": [...]}} of conditions and groups, nested at most {MAX_DEPTH} '
        f"deep, at most {MAX_CONDITIONS} conditions",
        examples=[{"all": [{"field": "area", "op": "is", "value": "isle-of-wight"}]}],
    ),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()


def _segment_name(value: Any) -> str:
    name = one_line(value) if isinstance(value, str) else ""
    if not name:
        raise ValueError("Enter a name for the segment")
    if len(name) > SEGMENT_NAME_MAX:
        raise ValueError(f"Name must be {SEGMENT_NAME_MAX} characters or fewer")
    return name


def _description(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("Description must be text")
    return clean_text(value).strip()


SegmentName = Annotated[str, BeforeValidator(_segment_name), Field(min_length=1, max_length=SEGMENT_NAME_MAX)]
Description = Annotated[str, BeforeValidator(_description)]


class RulesOnly(Input):
    """Rules not yet saved, to count whom they match"""

    rules: Rules


class SegmentInput(RulesOnly):
    """A named set of rules over subscribers"""

    name: SegmentName
    description: Description = ""


class SegmentChange(Input):
    """What changes in a segment: only the fields given"""

    name: SegmentName | None = None
    description: Description | None = None
    rules: Rules | None = None


# --- the suppression list --------------------------------------------------------------------------------

# Why the team lists an address by hand: it does not work, its owner complained, or asked never to be mailed.
SUPPRESSION_REASONS = ("bounced", "complained", "unsubscribed")
# What the list can say (erasure lists the hash of who it erased).
LISTED_REASONS = (*SUPPRESSION_REASONS, "erased")
NOTE_MAX = 2000


def _note(value: Any, *, required: bool = False, what: str = "The note") -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    text = clean_text(value).strip()
    if len(text) > NOTE_MAX:
        raise ValueError(f"{what} must be {NOTE_MAX:,} characters or fewer")
    if required and not text:
        raise ValueError(f"Say why: {what.lower()} is kept in the audit log")
    return text


def _why(value: Any) -> str:
    return _note(value, required=True, what="The reason")


class NewSuppression(Input):
    """An address the team lists so it is never mailed again: anyone subscribed with it stops getting mail at once"""

    email: Email
    reason: Literal[SUPPRESSION_REASONS] = Field(
        description="bounced: the address does not work; complained: they reported our mail as spam; "
        "unsubscribed: they asked never to be mailed again"
    )
    note: Annotated[str, BeforeValidator(_note)] = Field(
        "", max_length=NOTE_MAX, description="What happened, for whoever reads the list later"
    )


class SuppressionRemoval(Input):
    """Why an address comes off the list. Nobody is subscribed again: they must sign up again and confirm"""

    reason: Annotated[str, BeforeValidator(_why)] = Field(
        min_length=1, max_length=NOTE_MAX, description="Kept in the audit log with who removed it"
    )


def _search_email(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _email(value)


def _since(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            day = None
        if day is not None and day.year >= 2000:
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
    raise ValueError("Give the date as YYYY-MM-DD, since 2000")


class SuppressionQuery(Input):
    """Which of the suppression list to show: an address (matched by its hash), a reason, since a day; newest first"""

    model_config = ConfigDict(strict=False)  # from a query string: values arrive as text

    email: Annotated[
        str | None,
        BeforeValidator(_search_email),
        Field(
            description="Find this address (the list keeps only a hash of it)", json_schema_extra={"format": "email"}
        ),
    ] = None
    reason: Annotated[Literal[LISTED_REASONS] | None, BeforeValidator(lambda v: v or None)] = None
    since: Annotated[
        datetime | None,
        BeforeValidator(_since),
        WithJsonSchema(
            {"type": ["string", "null"], "format": "date", "description": "Listed on or after (YYYY-MM-DD)"}
        ),
    ] = None
    before: int = Field(0, ge=0, le=2**31 - 1, description="The next_before of the page before (0: the newest)")
    limit: int = Field(100, ge=1, le=500)


# --- the lists the team manages: topics and areas -----------------------------------------------------------

TOPIC_NAME_MAX = 120
TOPIC_DESCRIPTION_MAX = 1000
TOPIC_SLUG_MAX = 64
AREA_NAME_MAX = 120
AREA_SLUG_MAX = 32
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _listed_name(value: Any, *, what: str, limit: int) -> str:
    name = one_line(value) if isinstance(value, str) else ""
    if not name:
        raise ValueError(f"Enter a name for the {what}")
    if len(name) > limit:
        raise ValueError(f"Name must be {limit} characters or fewer")
    return name


def _listed_slug(value: Any, *, limit: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # derived from the name
    if not isinstance(value, str) or not _SLUG.fullmatch(value.strip()) or len(value.strip()) > limit:
        raise ValueError(f"A slug is lower-case letters, digits and single hyphens, {limit} characters or fewer")
    return value.strip()


def _topic_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("Description must be text")
    text = one_line(value)
    if len(text) > TOPIC_DESCRIPTION_MAX:
        raise ValueError(f"Description must be {TOPIC_DESCRIPTION_MAX:,} characters or fewer")
    return text


def _place(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise ValueError("Position is a whole number from 1 (first)")
    return value


TopicName = Annotated[
    str,
    BeforeValidator(partial(_listed_name, what="topic", limit=TOPIC_NAME_MAX)),
    Field(min_length=1, max_length=TOPIC_NAME_MAX, description="What the public sees, such as 'Name consultation'"),
]
TopicSlugInput = Annotated[
    Annotated[str, Field(max_length=TOPIC_SLUG_MAX, pattern=_SLUG.pattern)] | None,
    BeforeValidator(partial(_listed_slug, limit=TOPIC_SLUG_MAX)),
    Field(description="How the API, imports and segments name it; never changes. Omitted: made from the name"),
]
TopicDescription = Annotated[
    str, BeforeValidator(_topic_description), Field(max_length=TOPIC_DESCRIPTION_MAX, description="One line")
]
Place = Annotated[int, BeforeValidator(_place), Field(ge=1, le=10_000, description="1 is first; the rest move down")]
AreaName = Annotated[
    str,
    BeforeValidator(partial(_listed_name, what="area", limit=AREA_NAME_MAX)),
    Field(min_length=1, max_length=AREA_NAME_MAX, description="What the public sees, such as 'Isle of Wight'"),
]
AreaSlugInput = Annotated[
    Annotated[str, Field(max_length=AREA_SLUG_MAX, pattern=_SLUG.pattern)] | None,
    BeforeValidator(partial(_listed_slug, limit=AREA_SLUG_MAX)),
    Field(description="Never changes. Omitted: made from the name"),
]


class TopicInput(Input):
    """A new topic people can subscribe to (placed last unless a position is given)"""

    name: TopicName
    slug: TopicSlugInput = None
    description: TopicDescription = ""
    position: Place | None = None


class TopicChange(Input):
    """What changes in a topic: only the fields given (its slug never changes)"""

    name: TopicName | None = None
    description: TopicDescription | None = None
    position: Place | None = None


class AreaInput(Input):
    """A new area people can say they live or work in (placed last unless a position is given)"""

    name: AreaName
    slug: AreaSlugInput = None
    position: Place | None = None


class AreaChange(Input):
    """What changes in an area: only the fields given (its slug never changes)"""

    name: AreaName | None = None
    position: Place | None = None
