"""What the audience shows of itself: one person (profile, subject access), a segment, an import's progress.

Each shape is an output model (`mailer.inputs.Output`): the API answers with `.dump()` and its OpenAPI document
is generated from these classes (their names are the schema names), and the admin pages render the same
objects, so the two never disagree about what a subscriber or a segment is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, WithJsonSchema
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import models
from ..inputs import Output
from ..models import AUDIENCES, DELIVERY_STATUSES, FREQUENCIES, IMPORT_STATUSES, SERVICES
from ..models.subscribers import SUBSCRIBER_STATUSES
from . import wording
from .changes import attributes_of
from .rules import describe
from .segments import area_names, segment_count, topic_names

Moment = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Subscription(Output):
    """A subscription to a topic, open or ended"""

    topic: str
    frequency: Literal[FREQUENCIES]
    source: str | None
    started_at: Moment
    ended_at: Moment | None
    ended_reason: str | None


class ConsentEvent(Output):
    """One thing the person agreed to or changed, and how"""

    id: int
    kind: str = Field(examples=["subscribe", "confirm", "change", "unsubscribe"])
    channel: str = Field(examples=["web", "email", "api", "import", "admin", "cli"])
    at: Moment
    wording_version: str | None
    wording: str | None = Field(description="What they were shown when they agreed")
    details: dict[str, Any] | None
    admin_user_id: int | None = Field(description="The team member who made the change for them")
    import_id: int | None


class Subscriber(Output):
    """A subscriber: answers, subscriptions and consent history"""

    id: int
    email: str | None = Field(description="null once erased or anonymised")
    status: Literal[SUBSCRIBER_STATUSES]
    name: str | None
    area: str | None = Field(description="An area's slug (GET /areas)")
    audience: Literal[tuple(AUDIENCES)] | None
    services: list[Literal[tuple(SERVICES)]]
    subscribed_at: Moment | None
    confirmed_at: Moment | None
    unsubscribed_at: Moment | None
    subscriptions: list[Subscription]
    consent: list[ConsentEvent]


class ConfirmationEmails(Output):
    last_requested_at: Moment | None
    last_sent_at: Moment | None


class EmailSent(Output):
    issue: int
    subject: str
    status: Literal[DELIVERY_STATUSES]
    sent_at: Moment | None
    note: str | None


class Suppressed(Output):
    reason: str
    since: Moment


class SubjectAccess(Subscriber):
    """Everything held about the person (UK GDPR article 15)"""

    created_at: Moment
    confirmation_emails: ConfirmationEmails
    emails_sent: list[EmailSent]
    suppressed: Suppressed | None
    what_we_keep_and_why: str


WHAT_WE_KEEP = (
    "Your email address and choices, to send you the updates you asked for; a record of when and how you "
    "agreed, to show we had your consent; a record of each email we sent you, to avoid sending it twice."
)


def consent_history(session: Session, subscriber_id: int) -> list[ConsentEvent]:
    events = session.scalars(
        select(models.ConsentEvent)
        .where(models.ConsentEvent.subscriber_id == subscriber_id)
        .order_by(models.ConsentEvent.id)
    )
    return [
        ConsentEvent(
            id=e.id,
            kind=e.kind,
            channel=e.channel,
            at=e.created_at,
            wording_version=e.wording_version,
            wording=wording.WORDING.get(e.wording_version) if e.wording_version else None,
            details=e.details,
            admin_user_id=e.admin_user_id,
            import_id=e.import_id,
        )
        for e in events
    ]


def _fields(session: Session, subscriber: models.Subscriber) -> dict:
    topics = {topic_id: slug for topic_id, slug in session.execute(select(models.Topic.id, models.Topic.slug))}
    subscriptions = session.scalars(
        select(models.Subscription)
        .where(models.Subscription.subscriber_id == subscriber.id)
        .order_by(models.Subscription.id)
    )
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "status": subscriber.status,
        **attributes_of(subscriber),
        "subscribed_at": subscriber.subscribed_at,
        "confirmed_at": subscriber.confirmed_at,
        "unsubscribed_at": subscriber.unsubscribed_at,
        "subscriptions": [
            Subscription(
                topic=topics[s.topic_id],
                frequency=s.frequency,
                source=s.source,
                started_at=s.started_at,
                ended_at=s.ended_at,
                ended_reason=s.ended_reason,
            )
            for s in subscriptions
        ],
        "consent": consent_history(session, subscriber.id),
    }


def profile(session: Session, subscriber: models.Subscriber) -> Subscriber:
    """What the API and the admin show for one person: answers, subscriptions and consent history."""
    return Subscriber(**_fields(session, subscriber))


def subject_access(session: Session, subscriber: models.Subscriber) -> SubjectAccess:
    """Everything we hold about a person (UK GDPR article 15)."""
    deliveries = session.execute(
        select(
            models.Delivery.issue_id,
            models.Issue.subject,
            models.Delivery.status,
            models.Delivery.sent_at,
            models.Delivery.last_error,
        )
        .join(models.Issue, models.Issue.id == models.Delivery.issue_id)
        .where(models.Delivery.subscriber_id == subscriber.id)
        .order_by(models.Delivery.id)
    )
    suppression = session.scalar(
        select(models.Suppression).where(models.Suppression.email_hash == subscriber.email_hash)
    )
    return SubjectAccess(
        **_fields(session, subscriber),
        created_at=subscriber.created_at,
        confirmation_emails=ConfirmationEmails(
            last_requested_at=subscriber.confirm_requested_at, last_sent_at=subscriber.confirm_sent_at
        ),
        emails_sent=[
            EmailSent(issue=d.issue_id, subject=d.subject, status=d.status, sent_at=d.sent_at, note=d.last_error)
            for d in deliveries
        ],
        suppressed=Suppressed(reason=suppression.reason, since=suppression.created_at) if suppression else None,
        what_we_keep_and_why=WHAT_WE_KEEP,
    )


# --- segments -------------------------------------------------------------------------------------------------


class Segment(Output):
    """A segment: named rules over subscribers"""

    id: int
    name: str
    description: str
    rules: Annotated[
        dict[str, Any],
        # Stored rules are not parsed again to be shown; what they are is the input's rule tree.
        WithJsonSchema({"anyOf": [{"$ref": "#/components/schemas/AllOf"}, {"$ref": "#/components/schemas/AnyOf"}]}),
    ] = Field(description="The rules as saved: the rule tree SegmentInput takes")
    summary: str = Field(description="The rules in words")
    created_at: Moment
    updated_at: Moment


class CountedSegment(Segment):
    """The segment saved, with how many reachable people it matches now"""

    count: int = Field(ge=0)


class SegmentCount(Output):
    """How many reachable people match the segment now"""

    id: int
    count: int = Field(ge=0)


class AudienceCount(Output):
    """How many reachable people the rules match now"""

    count: int = Field(ge=0)


def segment_shown(session: Session, segment: models.Segment, names: dict[str, str] | None = None) -> Segment:
    return Segment(
        id=segment.id,
        name=segment.name,
        description=segment.description,
        rules=segment.rules,
        summary=describe(segment.rules, names if names is not None else topic_names(session), area_names(session)),
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


def counted_segment(session: Session, segment: models.Segment) -> CountedSegment:
    return CountedSegment(**dict(segment_shown(session, segment)), count=segment_count(session, segment))


# --- imports -------------------------------------------------------------------------------------------------


class ImportProgress(Output):
    rows: int = Field(ge=0)
    last_row: int = Field(description="The spreadsheet row reached; the header is row 1")
    bytes_read: int = Field(ge=0)
    bytes_total: int = Field(ge=0)
    percent: int = Field(ge=0, le=100)


class RowError(Output):
    """A row not imported because something in it is wrong"""

    row: int
    error: str


class RowNote(Output):
    """A row not imported (they left or were suppressed), or a note on one that was"""

    row: int
    reason: str


class ImportStatus(Output):
    """An import: where it is, its counts so far and the rows to look at"""

    id: int
    import_: int = Field(serialization_alias="import", description="The id again (as before imports ran alone)")
    status: Literal[IMPORT_STATUSES]
    filename: str | None
    channel: str
    created_at: Moment
    finished_at: Moment | None
    encoding: str | None = Field(description="How the file was read: UTF-8 or Windows-1252")
    progress: ImportProgress
    failure: str | None = Field(description="Why a failed import stopped and what was saved")
    rows: int = Field(ge=0)
    imported: int = Field(ge=0)
    updated: int = Field(ge=0)
    unchanged: int = Field(ge=0)
    skipped: int = Field(ge=0)
    error_count: int = Field(ge=0)
    truncated: bool = Field(description="More rows to look at than are listed")
    skipped_rows: list[RowNote]
    errors: list[RowError]

    def dump(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)
