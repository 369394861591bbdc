"""What the compose room is asked to do, as typed inputs: checked once, here, whichever adapter it came through.

Each model is what one use case takes (see commands.py): the API reads it from the JSON body (and documents it
from the same model), the admin turns its form into the same shape, the CLI its options. Every sentence below is
what a person is shown next to the field. What needs the database is checked once: a topic when the input is
parsed, with the database's topics as context (the audience room's convention too); that a segment exists and can
be used, or an image was uploaded, by the command.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, Union
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator

from ..audience.emails import normalise_email
from ..errors import InvalidInput
from ..inputs import Input
from ..models import (
    DELIVERY_STATUSES,
    ISSUE_STATUSES,
    MAX_ID,
    RECIPIENT_FILTERS,
    SERVICES,
    utcnow,
)
from ..render.content import clean_text, has_control_characters, nesting_problem
from ..render.headers import header_problem

LONDON = ZoneInfo("Europe/London")
SUBJECT_MAX = 200
PREHEADER_MAX = 200
MAX_BLOCKS = 60
TEXT_MAX = 20_000
# All the Markdown one issue may hold: far beyond a newsletter (~8,000 words; Gmail clips the email at 102 KB
# of HTML long before), and it bounds what rendering one costs: markdown-it-py's worst input (`![` repeated)
# takes ~25 ms a thousand characters, HTML and text, so ~1.3 s at this size (bench/archive_bench.py).
ISSUE_TEXT_MAX = 50_000
BODY_MAX = ISSUE_TEXT_MAX  # an issue written as one Markdown body holds what its text blocks could
TITLE_MAX = 200
SUMMARY_MAX = 600
UPDATE_BODY_MAX = 20_000
MAX_TEST_ADDRESSES = 10
SCHEDULE_LIMIT = timedelta(days=366)
# One line with no invisible control characters (what `has_control_characters` refuses), for the description.
ONE_LINE = "^[^\\n\\r\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff]*$"


def _described(**schema) -> Field:
    """What the API description says of a field whose checks are sentences of ours (so not pydantic's own
    constraints, which would answer in pydantic's words, and before the text is cleaned)."""
    return Field(json_schema_extra=schema)


# --- pieces of text ------------------------------------------------------------------------------------------


def line(limit: int, missing: str | None, too_long: str):
    """One line of at most `limit` characters, its runs of white space (line breaks too) made one space;
    `missing` is said when it is empty (None: it may be)."""

    def check(value: str) -> str:
        text = " ".join(clean_text(value).split())
        if not text and missing:
            raise ValueError(missing)
        if len(text) > limit:
            raise ValueError(too_long)
        return text

    schema = {"maxLength": limit, "description": "One line: line breaks become spaces"}
    return Annotated[str, AfterValidator(check), _described(**schema | ({"minLength": 1} if missing else {}))]


def markdown(limit: int, missing: str | None, too_long: str):
    """Markdown of at most `limit` characters (stray invisible characters dropped), nested at most MAX_NESTING."""

    def check(value: str) -> str:
        text = clean_text(value)
        if missing and not text.strip():
            raise ValueError(missing)
        if len(text) > limit:
            raise ValueError(too_long)
        if problem := nesting_problem(text):
            raise ValueError(problem)
        return text

    return Annotated[str, AfterValidator(check), _described(maxLength=limit, description="Markdown")]


def web_address(value: str | None, *, mail_ok: bool = False) -> str | None:
    """A full http(s) address (or, `mail_ok`, a mailto: one) as typed; None for nothing typed."""
    text = (value or "").strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc and not has_control_characters(text) and " " not in text:
        return text
    if mail_ok and parts.scheme == "mailto" and "@" in parts.path:
        return text
    raise ValueError("Enter a full web address starting with https://" + (" (or mailto:)" if mail_ok else ""))


Link = Annotated[str | None, AfterValidator(web_address), _described(format="uri", description="http(s)")]


def _topic_in(value: str, info: ValidationInfo) -> str:
    """A topic's slug, checked when the input is parsed against the database's topics (`context={"topics": ...}`,
    as `audience.lookups.parse_in` and `@operation(context=...)` give it), like every topic the audience room is
    sent: one convention for both rooms, and the form shows it with every other mistake. The command trusts it."""
    slug = value.strip()
    if not slug:
        raise ValueError("Choose a topic")
    topics = (info.context or {}).get("topics")
    if topics is None:
        raise RuntimeError("Topics are checked when the input is parsed: use parse_in (or @operation(context=...))")
    if slug not in topics:
        raise ValueError(f"Unknown topic: {slug}")
    if getattr(topics[slug], "retired_at", None) is not None:
        raise ValueError(f"Topic {slug} is retired: nothing is sent to it (an admin can restore it)")
    return slug


TopicSlug = Annotated[
    str, AfterValidator(_topic_in), _described(description="A topic's slug (GET /topics), not a retired one")
]


# --- blocks ----------------------------------------------------------------------------------------------------


HeadingText = line(200, "Write the heading", "A heading must be 200 characters or fewer")
BlockText = markdown(TEXT_MAX, "Write the text, or remove the block", f"Text must be {TEXT_MAX:,} characters or fewer")
AltText = line(
    300, "Describe the image for people who cannot see it (alt text)", "Alt text must be 300 characters or fewer"
)
Caption = line(300, None, "A caption must be 300 characters or fewer")
ButtonLabel = line(60, "Write what the button says", "Button text must be 60 characters or fewer")


class HeadingBlock(Input):
    """A heading"""

    type: Literal["heading"]
    text: HeadingText


class TextBlock(Input):
    """Some text, in Markdown"""

    type: Literal["text"]
    markdown: BlockText


class ImageBlock(Input):
    """An image uploaded in the admin's composer, described for people who cannot see it"""

    type: Literal["image"]
    media: int | None = Field(ge=1, le=MAX_ID, description="The uploaded image's id")
    alt: AltText
    caption: Caption = ""
    link: Link = None


def _button_url(value: str) -> str:
    url = web_address(value, mail_ok=True)
    if url is None:
        raise ValueError("Enter where the button goes")
    return url


class ButtonBlock(Input):
    """A button linking to a page (or an email address)"""

    type: Literal["button"]
    label: ButtonLabel
    url: Annotated[str, AfterValidator(_button_url), _described(format="uri", description="http(s) or mailto:")]


def _count(value):
    """1 to 10; a form's "3" is 3."""
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) < 4:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
        raise ValueError("Show between 1 and 10 updates")
    return value


class UpdatesBlock(Input):
    """The latest progress updates of the issue's topic, as they are when its send starts"""

    type: Literal["updates"]
    count: Annotated[int, BeforeValidator(_count), _described(minimum=1, maximum=10)] = 3


class DividerBlock(Input):
    """A line between blocks"""

    type: Literal["divider"]


BLOCK_MODELS = (HeadingBlock, TextBlock, ImageBlock, ButtonBlock, UpdatesBlock, DividerBlock)
Block = Annotated[Union[BLOCK_MODELS], Field(discriminator="type")]  # noqa: UP007 - a union of the tuple's models


def _block_list(value):
    if value is not None and not isinstance(value, list):
        raise ValueError("Blocks must be a list")
    if value is not None and len(value) > MAX_BLOCKS:
        raise ValueError(f"An issue can have at most {MAX_BLOCKS} blocks")
    return value


def _some_text(blocks: list | None) -> list | None:
    if blocks is None:
        return None
    if not blocks:
        raise ValueError("Add at least one block: a heading, some text, an image or a button")
    total = sum(len(b.markdown) for b in blocks if isinstance(b, TextBlock))
    if total > ISSUE_TEXT_MAX:
        raise ValueError(
            f"An issue can hold at most {ISSUE_TEXT_MAX:,} characters of text; this one has {total:,}. "
            "Shorten it or split it into two issues"
        )
    return blocks


# --- issues ----------------------------------------------------------------------------------------------------


def _subject(value: str) -> str:
    subject = value.strip()
    if not subject:
        raise ValueError("Enter a subject")
    if len(subject) > SUBJECT_MAX or "\n" in subject or "\r" in subject:
        raise ValueError(f"Subject must be one line of {SUBJECT_MAX} characters or fewer")
    if has_control_characters(subject):
        raise ValueError("Subject contains invisible control characters: retype it")
    if problem := header_problem(subject):
        raise ValueError(f"Subject {problem}")
    return subject


def _preheader(value: str) -> str:
    text = value.strip()
    if len(text) > PREHEADER_MAX or "\n" in text or has_control_characters(text):
        raise ValueError(f"Preview text must be one line of {PREHEADER_MAX} characters or fewer")
    return text


def _segment_id(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID):
        raise ValueError("Segment must be the id of a segment")
    return value


class IssueInput(Input):
    """A newsletter issue as its writer gives it: its content is `blocks`, or one Markdown `body`"""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["body"]}, {"required": ["blocks"]}]})

    subject: Annotated[
        str,
        AfterValidator(_subject),
        _described(minLength=1, maxLength=SUBJECT_MAX, pattern=ONE_LINE, description="The email's subject"),
    ]
    topic: TopicSlug
    preheader: Annotated[
        str,
        AfterValidator(_preheader),
        _described(maxLength=PREHEADER_MAX, pattern=ONE_LINE, description="What inboxes show after the subject"),
    ] = ""
    segment: Annotated[
        int | None,
        BeforeValidator(_segment_id),
        WithJsonSchema(
            {
                "anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_ID}, {"type": "null"}],
                "description": "Only the topic's subscribers in this segment (its id)",
            }
        ),
    ] = None
    blocks: Annotated[
        list[Block] | None,
        BeforeValidator(_block_list),
        AfterValidator(_some_text),
        _described(maxItems=MAX_BLOCKS, description="The content, block by block (or give body)"),
    ] = None
    # After blocks: its check reads them. The body of an issue written in blocks is empty.
    body: str = Field(
        "", validate_default=True, json_schema_extra={"maxLength": BODY_MAX}, description="Markdown, unless blocks"
    )

    @field_validator("body")
    @classmethod
    def _body(cls, value: str, info: ValidationInfo) -> str:
        if "blocks" not in info.data or info.data["blocks"] is not None:
            return ""  # written in blocks (or blocks that are wrong: their errors say what to fix)
        text = clean_text(value)  # stray invisible characters pasted from elsewhere are dropped
        if not text.strip():
            raise ValueError("Write the body of the issue")
        if len(text) > BODY_MAX:
            raise ValueError(f"Body must be {BODY_MAX:,} characters or fewer")
        if problem := nesting_problem(text):
            raise ValueError(problem)
        return text


def send_moment(value, now: datetime | None = None) -> datetime:
    """ISO-8601 to aware UTC; a time without an offset is UK time (Europe/London), the clock the team reads.

    A time that does not exist in the UK (the hour skipped when the clocks go forward in March) is refused; one
    that happens twice (the hour repeated in October) means the first of the two (still summer time)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("Give the time to send as an ISO-8601 date and time, like 2026-12-01T09:00")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date and time, like 2026-12-01T09:00") from None
    if not 2000 <= moment.year <= 9000:  # far outside any schedule (and beyond what a time zone can convert)
        raise ValueError("Choose a time within the next year")
    if moment.tzinfo is None:
        moment = _uk(moment)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("Choose a time within the next year") from None
    now = now or utcnow()
    if moment <= now:
        raise ValueError("Choose a time in the future")
    if moment > now + SCHEDULE_LIMIT:
        raise ValueError("Choose a time within the next year")
    return moment


def _uk(moment: datetime) -> datetime:
    local = moment.replace(tzinfo=LONDON)
    # Round-tripping through UTC moves a time in the skipped hour: it never happens on UK clocks.
    if local.astimezone(UTC).astimezone(LONDON).replace(tzinfo=None) != moment:
        raise ValueError(f"{moment:%H:%M} does not happen in the UK on {moment:%d %B %Y}: the clocks go forward")
    return local


def parse_send_at(value, now: datetime | None = None) -> datetime:
    """`send_moment`, refusing as InvalidInput on the field `send_at`."""
    try:
        return send_moment(value, now)
    except ValueError as exc:
        raise InvalidInput({"send_at": str(exc)}) from None


class ScheduleInput(Input):
    """When to send an approved issue"""

    send_at: Annotated[
        datetime,
        BeforeValidator(send_moment),
        WithJsonSchema(
            {
                "type": "string",
                "description": "ISO 8601, within the next year; without an offset it is UK time (Europe/London)",
                "examples": ["2026-12-01T09:00"],
            }
        ),
    ]


class ReturnInput(Input):
    """Why a reviewer sends an issue back to its writer"""

    note: Annotated[str, AfterValidator(lambda note: clean_text(note).strip()[:2000])] = ""


def _address(value: str) -> str:
    try:
        return normalise_email(value)
    except InvalidInput as exc:
        raise ValueError(exc.sentences) from None


def _addresses(value):
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TEST_ADDRESSES:
        raise ValueError(f"Enter between 1 and {MAX_TEST_ADDRESSES} email addresses to send the test to")
    return value


class TestSendInput(Input):
    """Who gets a test of the issue, marked [TEST], with example links"""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    to: Annotated[
        list[Annotated[str, AfterValidator(_address), _described(format="email")]],
        BeforeValidator(_addresses),
        Field(min_length=1, max_length=MAX_TEST_ADDRESSES),
    ]


class DeliveriesQuery(Input):
    """Which deliveries of an issue to list: by status, a page after a row"""

    # From a query string: values arrive as text, so numbers are read from it (like web.api.spec.Query).
    model_config = ConfigDict(strict=False)

    status: Annotated[
        Literal[DELIVERY_STATUSES] | None, BeforeValidator(lambda v: v or None), Field(description="Only these")
    ] = None
    who: Annotated[
        Literal[RECIPIENT_FILTERS] | None,
        BeforeValidator(lambda v: v or None),
        Field(description="Only those whose message bounced, who reported it as spam, or who are no longer subscribed"),
    ] = None
    after: int = Field(0, ge=0, le=2**63 - 1, description="The next_after of the page before")
    limit: int = Field(100, ge=1, le=1000)


ISSUES_PAGE_SIZES = (10, 25, 50, 100)
MAX_ISSUES_PAGE = 10_000  # far past any team's issues at 100 a page; bounds the OFFSET a link can ask for


def _issue_status(value):
    """An issue status as the list's filter names it ('in_review'; 'in review' as shown), or None for all."""
    if value in (None, ""):
        return None
    text = value.strip().lower().replace(" ", "_") if isinstance(value, str) else value
    if text not in ISSUE_STATUSES:
        raise ValueError(f"Status must be one of: {', '.join(s.replace('_', ' ') for s in ISSUE_STATUSES)}")
    return text


def _optional_topic(value):
    return None if value in (None, "") else value


def _page_number(value):
    number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_ISSUES_PAGE:
        raise ValueError(f"Page must be a whole number from 1 to {MAX_ISSUES_PAGE:,}")
    return number


def _page_size(value):
    size = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
    if size not in ISSUES_PAGE_SIZES:
        raise ValueError(f"Show {', '.join(map(str, ISSUES_PAGE_SIZES))} issues a page")
    return size


class IssuesQuery(Input):
    """Which issues to list, newest first: by status and topic, a page at a time"""

    # From a query string: values arrive as text, so numbers are read from it (like DeliveriesQuery).
    model_config = ConfigDict(strict=False)

    status: Annotated[
        Literal[ISSUE_STATUSES] | None,
        BeforeValidator(_issue_status),
        Field(description="Only issues in this state"),
    ] = None
    # Checked against the database's topics when parsed (`lookups.parse_in`), retired ones too: old issues keep theirs.
    topic: Annotated[TopicSlug | None, BeforeValidator(_optional_topic)] = None
    page: Annotated[
        int,
        BeforeValidator(_page_number),
        _described(minimum=1, maximum=MAX_ISSUES_PAGE, description="Which page, from 1"),
    ] = 1
    size: Annotated[
        int, BeforeValidator(_page_size), _described(enum=list(ISSUES_PAGE_SIZES), description="Issues a page")
    ] = 25


# --- progress updates and digests ------------------------------------------------------------------------------


def _choices(allowed, what: str):
    """A list of distinct values from `allowed`, in the order `allowed` has them."""

    def check(values: list[str]) -> list[str]:
        if not all(v in allowed for v in values):
            raise ValueError(f"{what} must be from: {', '.join(allowed)}")
        return [v for v in allowed if v in values]

    return Annotated[list[str], AfterValidator(check), _described(items={"enum": list(allowed)})]


def _title(value: str) -> str:
    title = " ".join(clean_text(value).split())
    if not title:
        raise ValueError("Give the update a title")
    if len(title) > TITLE_MAX or has_control_characters(title):
        raise ValueError(f"The title must be one line of {TITLE_MAX} characters or fewer")
    if problem := header_problem(title):  # the title is the email's subject
        raise ValueError(f"The title {problem}")
    return title


Summary = line(SUMMARY_MAX, None, f"The summary must be {SUMMARY_MAX} characters or fewer")
UpdateBody = markdown(UPDATE_BODY_MAX, None, f"The body must be {UPDATE_BODY_MAX:,} characters or fewer")
def _areas_in(values: list[str], info: ValidationInfo) -> list[str]:
    """Areas' slugs, each once, checked when the input is parsed against the database's areas (retired ones too:
    people who chose one before keep it), in the areas' order."""
    areas = (info.context or {}).get("areas")
    if areas is None:
        raise RuntimeError("Areas are checked when the input is parsed: use parse_in (or @operation(context=...))")
    unknown = [v for v in values if v not in areas]
    if unknown:
        raise ValueError(f"Unknown area {unknown[0]!r}: use one of {', '.join(areas)} (GET /areas)")
    return [slug for slug in areas if slug in values]


Areas = Annotated[list[str], AfterValidator(_areas_in), _described(description="Areas' slugs (GET /areas)")]
Services = _choices(SERVICES, "Services")


class UpdateInput(Input):
    """A progress update; with `publish`, published and sent at once"""

    title: Annotated[str, AfterValidator(_title), _described(minLength=1, maxLength=TITLE_MAX)]
    topic: TopicSlug
    summary: Summary = ""
    body: UpdateBody = ""
    areas: Areas = Field(default_factory=list, description="Empty: everywhere")
    services: Services = Field(default_factory=list, description="Empty: all")
    link: Link = None
    publish: bool = Field(False, description="true: publish and send now; otherwise a draft")


class DigestRunInput(Input):
    """Which digest to run for the current period"""

    frequency: Literal["weekly", "monthly"]
