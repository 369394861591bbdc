"""API for newsletter issues: write, review, schedule, send, follow. Each view parses (its body and query by
`@operation`, with the compose room's input models), calls one command of mailer/compose/commands.py and
answers with its output model below, which the OpenAPI document describes."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import g, jsonify, url_for
from pydantic import Field, WithJsonSchema

from ...audience.lookups import topic_context
from ...audit import Actor
from ...compose import commands
from ...compose.inputs import DeliveriesQuery, IssueInput, IssuesQuery, ScheduleInput, TestSendInput
from ...compose.issues import deliveries_page, get_issue, issue_progress, list_issues
from ...inputs import Output
from ...models import (
    DELIVERY_STATUSES,
    FEEDBACK_KINDS,
    FEEDBACK_SOURCES,
    ISSUE_STATUSES,
    SEVERITIES,
    SUBSCRIBER_STATUSES,
)
from ..context import db_session, runtime_of_app
from ..limits import TEST_SEND_LIMIT, limiter
from . import bp, created, token_required
from .spec import operation

# When something happened: ISO 8601 with its offset, as the database keeps it.
Moment = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Counts = Annotated[
    dict[str, int],
    WithJsonSchema(
        {
            "type": "object",
            "description": "How many of its deliveries are in each state",
            "properties": {status: {"type": "integer", "minimum": 0} for status in DELIVERY_STATUSES},
            "required": list(DELIVERY_STATUSES),
            "additionalProperties": False,
        }
    ),
]


Rate = Annotated[float, Field(ge=0, le=1, description="A share of the messages sent, 0 to 1")]


class Figures(Output):
    """Bounces and complaints against the messages a server answered for (sent, bounced or failed)"""

    sent: int = Field(ge=0, description="Messages a server answered for")
    hard_bounces: int = Field(ge=0, description="The mailbox does not exist (at sending, or by a report later)")
    soft_bounces: int = Field(ge=0, description="People whose mailbox put it off (full, away) until the relay gave up")
    complaints: int = Field(ge=0, description="People who reported it as spam")
    bounce_rate: Rate
    soft_bounce_rate: Rate
    complaint_rate: Rate
    bounce_warning: bool = Field(description="The hard bounce rate is 2 % or more")
    complaint_warning: bool = Field(description="The complaint rate is 0.1 % or more")


class Issue(Output):
    """The issue; its status becomes 'sent' when every delivery is final"""

    id: int
    subject: str
    preheader: str
    kind: Literal["newsletter", "update", "digest"]
    topic: str
    segment: int | None
    status: Literal[ISSUE_STATUSES]
    send_at: Moment | None
    submitted_at: Moment | None
    approved_at: Moment | None
    recipients: int | None
    counts: Counts
    created_at: Moment
    send_requested_at: Moment | None
    finished_at: Moment | None
    paused_reason: str | None = Field(description="Why the send paused itself (its figures), while it is paused so")
    auto_pause: bool = Field(description="Whether the send still pauses itself on bad figures (false once resumed)")
    figures: Figures


class Heard(Output):
    """The last bounce or complaint heard about this recipient's message"""

    kind: Literal[FEEDBACK_KINDS]
    severity: Literal[SEVERITIES] | None
    status: str | None = Field(description="The status code the report gave: 5.1.1, or a provider's")
    diagnostic: str | None = Field(description="What the receiving server said")
    source: Literal[FEEDBACK_SOURCES]
    received_at: Moment


class Delivery(Output):
    """One recipient of the issue and how it went"""

    id: int
    email: str | None  # None once the person was erased
    status: Literal[DELIVERY_STATUSES]
    attempts: int
    reason: str | None
    sent_at: Moment | None
    subscriber_status: Literal[SUBSCRIBER_STATUSES] | None = Field(
        description="The person now: active, or how they left"
    )
    heard: Heard | None


class Deliveries(Output):
    """A page of deliveries; pass next_after as after for the next"""

    deliveries: list[Delivery]
    next_after: int | None


class Issues(Output):
    """A page of issues, newest first; ask for page + 1 while page < pages"""

    issues: list[Issue]
    total: int = Field(ge=0, description="How many issues the filters match")
    page: int = Field(ge=1)
    size: int = Field(ge=1)
    pages: int = Field(ge=1)


class TestSent(Output):
    """Queued: the test goes to these addresses"""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    id: int
    to: list[str]


def _actor() -> Actor:
    return Actor.token(g.api_token)


def _issue(session, issue) -> dict:
    return Issue(**issue_progress(session, issue)).dump()


@bp.get("/issues")
@token_required
@operation(query=IssuesQuery, context=lambda: topic_context(db_session()), responses={200: Issues}, errors=(400,))
def index(query: IssuesQuery):
    """List issues, by status and topic, a page at a time (as the admin's issues list)"""
    session = db_session()
    found = list_issues(session, query)
    return jsonify(
        Issues(
            issues=[_issue(session, issue) for issue in found.issues],
            total=found.total,
            page=found.page,
            size=found.size,
            pages=found.pages,
        ).dump()
    )


@bp.post("/issues")
@token_required
@operation(
    body=IssueInput,
    context=lambda: topic_context(db_session()),
    responses={201: Issue},
    errors=(400, 413, 415),
    headers={201: {"Location": "The new issue"}},
)
def create(body: IssueInput):
    """Create a draft issue"""
    with runtime_of_app().db.transaction() as session:
        answer = _issue(session, commands.create_issue(session, body, _actor()))
    return created(answer, url_for("api.show", issue_id=answer["id"]))


@bp.get("/issues/<int:issue_id>")
@token_required
@operation(responses={200: Issue}, errors=(404,))
def show(issue_id: int):
    """An issue with its delivery counts"""
    session = db_session()
    return jsonify(_issue(session, get_issue(session, issue_id)))


@bp.post("/issues/<int:issue_id>/submit")
@token_required
@operation(responses={200: Issue}, errors=(404, 409))
def submit(issue_id: int):
    """Submit a draft for review"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_issue(session, commands.submit_issue(session, issue_id, _actor())))


@bp.post("/issues/<int:issue_id>/approve")
@token_required(role="publisher")
@operation(responses={200: Issue}, errors=(404, 409))
def approve(issue_id: int):
    """Approve an issue in review

    When the team asks for two people, the approver must be a person (a signed-in account, or a token of their
    own) who neither wrote nor submitted it."""
    settings = runtime_of_app().settings
    with runtime_of_app().db.transaction() as session:
        return jsonify(_issue(session, commands.approve_issue(session, issue_id, _actor(), settings)))


@bp.post("/issues/<int:issue_id>/schedule")
@token_required(role="publisher")
@operation(body=ScheduleInput, responses={200: Issue}, errors=(400, 404, 409, 413, 415))
def schedule(issue_id: int, body: ScheduleInput):
    """Schedule an approved issue; a time without an offset is UK time (Europe/London)"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_issue(session, commands.schedule_issue(session, issue_id, body, _actor())))


@bp.post("/issues/<int:issue_id>/unschedule")
@token_required(role="publisher")
@operation(responses={200: Issue}, errors=(404, 409))
def unschedule(issue_id: int):
    """Take a scheduled issue back to approved"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_issue(session, commands.unschedule_issue(session, issue_id, _actor())))


@bp.post("/issues/<int:issue_id>/send")
@token_required(role="publisher")
@operation(responses={202: Issue}, errors=(404, 409))
def send(issue_id: int):
    """Send an approved (or scheduled) issue now to the topic's subscribers (and its segment)"""
    settings = runtime_of_app().settings
    with runtime_of_app().db.transaction() as session:
        return jsonify(_issue(session, commands.send_issue(session, issue_id, _actor(), settings))), 202


_CONTROLS = {"pause": commands.pause_issue, "resume": commands.resume_issue, "cancel": commands.cancel_issue}


@bp.post("/issues/<int:issue_id>/<any(pause, resume, cancel):action>")
@token_required(role="publisher")
@operation(responses={200: Issue}, errors=(404, 409))
def control(issue_id: int, action: str):
    """Pause, resume or cancel a send

    Pause: nobody else gets it until it is resumed. Resume: only recipients not yet sent to get it. Cancel: every
    recipient not yet sent to becomes 'cancelled'."""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_issue(session, _CONTROLS[action](session, issue_id, _actor())))


@bp.post("/issues/<int:issue_id>/test")
@limiter.limit(TEST_SEND_LIMIT, override_defaults=False)  # as well as the API's own limits
@token_required
@operation(body=TestSendInput, responses={202: TestSent}, errors=(400, 404, 413, 415))
def test(issue_id: int, body: TestSendInput):
    """Send a test of the issue, marked [TEST], to up to 10 addresses"""
    with runtime_of_app().db.transaction() as session:
        addresses = commands.send_a_test(session, issue_id, body, _actor())
    return jsonify(TestSent(id=issue_id, to=addresses).dump()), 202


@bp.get("/issues/<int:issue_id>/deliveries")
@token_required(role="publisher")  # addresses: people's personal data
@operation(query=DeliveriesQuery, responses={200: Deliveries}, errors=(400, 404))
def deliveries(issue_id: int, query: DeliveriesQuery):
    """Who got the issue and how it went, in pages"""
    page = deliveries_page(db_session(), issue_id, query.status, query.after, query.limit, query.who)
    return jsonify(
        Deliveries(
            deliveries=[
                Delivery(
                    id=r.delivery_id,
                    email=r.email,
                    status=r.status,
                    attempts=r.attempts,
                    reason=r.last_error,
                    sent_at=r.sent_at.isoformat() if r.sent_at else None,
                    subscriber_status=r.subscriber_status,
                    heard=_heard(page.heard.get(r.delivery_id)),
                )
                for r in page.rows
            ],
            next_after=page.next_after,
        ).dump()
    )


def _heard(heard) -> Heard | None:
    if heard is None:
        return None
    return Heard(
        kind=heard.kind,
        severity=heard.severity,
        status=heard.status,
        diagnostic=heard.diagnostic,
        source=heard.source,
        received_at=heard.received_at.isoformat(),
    )
