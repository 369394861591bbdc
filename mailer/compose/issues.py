"""Newsletter issues: write, preview, send, follow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import audit
from ..audience.segments import check_rules, topics_by_slug, usable_rules
from ..audit import SYSTEM, Actor
from ..config import Settings
from ..delivery import ledger
from ..errors import Conflict, InvalidInput, NotFound
from ..models import EDITABLE, MAX_ID, Issue, Segment, Topic, utcnow
from ..render.content import clean_text, has_control_characters, nesting_problem
from ..render.headers import header_problem
from .blocks import ISSUE_TEXT_MAX, archive_page, blocks_of, resolve_blocks, validate_blocks
from .mail import freeze

LONDON = ZoneInfo("Europe/London")
SUBJECT_MAX = 200
BODY_MAX = ISSUE_TEXT_MAX  # an issue written as one Markdown body holds what its text blocks could


@dataclass
class IssueInput:
    subject: str
    body: str
    topic: str  # slug
    preheader: str = ""
    segment: int | None = None  # only the topic's subscribers who match this segment
    blocks: list | None = None  # the composer's blocks; None: the issue is the Markdown `body`


def _validated(session: Session, data: IssueInput) -> tuple[dict, Topic | None]:
    errors: dict[str, str] = {}
    subject = (data.subject or "").strip()
    body = clean_text(data.body or "")  # stray invisible characters pasted from elsewhere are dropped
    preheader = (data.preheader or "").strip()
    if not subject:
        errors["subject"] = "Enter a subject"
    elif len(subject) > SUBJECT_MAX or "\n" in subject or "\r" in subject:
        errors["subject"] = f"Subject must be one line of {SUBJECT_MAX} characters or fewer"
    elif has_control_characters(subject):
        errors["subject"] = "Subject contains invisible control characters: retype it"
    elif problem := header_problem(subject):
        errors["subject"] = f"Subject {problem}"
    blocks = None
    if data.blocks is not None:
        try:
            blocks = validate_blocks(session, data.blocks)
        except InvalidInput as exc:
            errors.update(exc.errors)
        else:
            if not blocks:
                errors["blocks"] = "Add at least one block: a heading, some text, an image or a button"
        body = ""
    elif not body.strip():
        errors["body"] = "Write the body of the issue"
    elif len(body) > BODY_MAX:
        errors["body"] = f"Body must be {BODY_MAX:,} characters or fewer"
    elif problem := nesting_problem(body):
        errors["body"] = problem
    if len(preheader) > 200 or "\n" in preheader or has_control_characters(preheader):
        errors["preheader"] = "Preview text must be one line of 200 characters or fewer"
    topic = topics_by_slug(session).get(data.topic.strip()) if isinstance(data.topic, str) and data.topic else None
    if topic is None:
        errors["topic"] = "Choose a topic" if not data.topic else f"Unknown topic: {data.topic}"
    segment_id = data.segment
    if segment_id is not None:
        if isinstance(segment_id, bool) or not isinstance(segment_id, int) or not 0 < segment_id <= MAX_ID:
            errors["segment"] = "Segment must be the id of a segment"
        elif (segment := session.get(Segment, segment_id)) is None:
            errors["segment"] = f"No segment with id {segment_id}"
        else:
            try:
                usable_rules(session, segment.rules, f"segment {segment.name!r}")
            except Conflict as exc:
                errors["segment"] = str(exc)
    if errors:
        raise InvalidInput(errors)
    values = {"subject": subject, "body": body, "preheader": preheader, "segment_id": segment_id, "blocks": blocks}
    return values, topic


def create_issue(
    session: Session, data: IssueInput, created_by_id: int | None = None, actor: Actor | None = None
) -> Issue:
    """A new draft issue, written by the actor's person unless `created_by_id` says who; InvalidInput names every
    field that is wrong."""
    values, topic = _validated(session, data)
    if created_by_id is None and actor is not None:
        created_by_id = actor.person_id
    issue = Issue(topic_id=topic.id, status="draft", created_by_id=created_by_id, **values)
    issue.topic = topic
    session.add(issue)
    session.flush()
    audit.record(session, actor, "issue.create", issue)
    return issue


def update_issue(session: Session, issue_id: int, data: IssueInput, actor: Actor | None = None) -> Issue:
    """Change an issue not yet scheduled or sending. A change after review or approval makes it a draft
    again: what a second person checked is what goes out."""
    issue = _locked(session, issue_id)
    _written(issue)
    if issue.status not in EDITABLE:
        raise Conflict(f"Issue {issue.id} is {issue.status} and can no longer be edited")
    values, topic = _validated(session, data)
    reopened = issue.status != "draft"
    for key, value in values.items():
        setattr(issue, key, value)
    issue.topic_id = topic.id
    issue.topic = topic
    if reopened:
        _back_to_draft(issue)
    audit.record(session, actor, "issue.edit", issue, reopened=reopened or None)
    session.flush()
    return issue


def assign_slug(session: Session, issue: Issue) -> None:
    """Give a sent issue its archive address, /news/<date>-<subject words>, unique."""
    if issue.slug:
        return
    words = re.sub(r"[^a-z0-9]+", "-", issue.subject.lower()).strip("-")[:80].rstrip("-") or "issue"
    base = f"{utcnow().astimezone(LONDON):%Y-%m-%d}-{words}"
    slug, n = base, 1
    while session.scalar(select(Issue.id).where(Issue.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    issue.slug = slug


def keep_archive_page(session: Session, issue: Issue) -> str:
    """The issue's archive page content, rendered the first time it is asked for and kept on the issue: what
    was sent, served as it is to every visitor. Called when the send starts, after `freeze`, so the page shows
    exactly the blocks and updates the email carries. (An issue sent before contents were frozen gets its
    topic's updates as they were when its send started.)"""
    if issue.archive_html is None:
        if issue.frozen is not None:
            issue.archive_html = archive_page(None, issue.frozen.blocks)
        else:
            # Sent before contents were frozen: its email took the newest updates of every topic then.
            blocks = resolve_blocks(session, blocks_of(issue), topic_id=None, before=issue.send_requested_at)
            issue.archive_html = archive_page(None, blocks)
    return issue.archive_html


def _start_sending(session: Session, issue: Issue, now: datetime, settings: Settings | None) -> None:
    """What every send start does: the archive address, and what goes out frozen (see compose.mail.freeze)
    with its archive page made from the same blocks. Given the settings, the email is rendered now too."""
    issue.status = "sending"
    issue.send_requested_at = now
    assign_slug(session, issue)
    freeze(session, issue, settings)
    keep_archive_page(session, issue)


def _written(issue: Issue) -> None:
    """Update emails and digests are made by the system from published updates, not written here."""
    if issue.kind != "newsletter":
        raise Conflict(f"Issue {issue.id} is an automatic {issue.kind} email: change the update instead")


def _back_to_draft(issue: Issue) -> None:
    issue.status = "draft"
    issue.audience_rules = None
    issue.submitted_at = issue.submitted_by_id = None
    issue.approved_at = issue.approved_by_id = None
    issue.send_at = None


def submit_issue(session: Session, issue_id: int, actor: Actor | None = None) -> Issue:
    """An editor asks for review: draft → in_review."""
    issue = _locked(session, issue_id)
    _written(issue)
    if issue.status != "draft":
        raise Conflict(f"Only a draft can be submitted for review; issue {issue.id} is {issue.status}")
    issue.status = "in_review"
    issue.submitted_at = utcnow()
    issue.submitted_by_id = actor.person_id if actor else None
    audit.record(session, actor, "issue.submit", issue)
    session.flush()
    return issue


def approve_issue(session: Session, issue_id: int, actor: Actor | None = None, *, by_another: bool = False) -> Issue:
    """A publisher approves: in_review → approved. With `by_another`, only a known person (signed in, or with a
    token of their own) who neither wrote nor submitted it, however each of them did it (browser or token)."""
    issue = _locked(session, issue_id)
    if issue.status != "in_review":
        raise Conflict(f"Only an issue in review can be approved; issue {issue.id} is {issue.status}")
    if by_another:
        if actor is None or actor.person_id is None:
            raise Conflict(
                "A second person must approve this issue: signed in to the admin, or with an API token of their own"
            )
        if actor.person_id in (issue.submitted_by_id, issue.created_by_id):
            raise Conflict("Someone other than the person who wrote or submitted this issue must approve it")
    # Who it goes to is part of what was approved: later edits to the segment do not widen this send.
    rules = None
    if issue.segment is not None:
        rules = usable_rules(session, issue.segment.rules, f"segment {issue.segment.name!r}")
    issue.status = "approved"
    issue.approved_at = utcnow()
    # Who it goes to is part of what was approved: later edits to the segment do not widen this send.
    issue.audience_rules = rules
    issue.approved_by_id = actor.person_id if actor else None
    audit.record(session, actor, "issue.approve", issue)
    session.flush()
    return issue


def return_issue(session: Session, issue_id: int, actor: Actor | None = None, note: str = "") -> Issue:
    """A reviewer sends an issue back to its writer: in_review or approved → draft, with a note."""
    issue = _locked(session, issue_id)
    if issue.status not in ("in_review", "approved"):
        raise Conflict(f"Only an issue in review or approved can be sent back; issue {issue.id} is {issue.status}")
    _back_to_draft(issue)
    audit.record(session, actor, "issue.return", issue, note=clean_text(note or "").strip()[:2000] or None)
    session.flush()
    return issue


SCHEDULE_LIMIT = timedelta(days=366)


def parse_send_at(value, now=None) -> datetime:
    """ISO-8601 to aware UTC; a time without an offset is UK time (Europe/London), the clock the team reads.

    A time that does not exist in the UK (the hour skipped when the clocks go forward in March) is refused; one
    that happens twice (the hour repeated in October) means the first of the two (still summer time)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput({"send_at": "Give the time to send as an ISO-8601 date and time, like 2026-12-01T09:00"})
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput({"send_at": f"{value!r} is not an ISO-8601 date and time, like 2026-12-01T09:00"}) from None
    if not 2000 <= moment.year <= 9000:  # far outside any schedule (and beyond what a time zone can convert)
        raise InvalidInput({"send_at": "Choose a time within the next year"})
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=LONDON)
        # Round-tripping through UTC moves a time in the skipped hour: it never happens on UK clocks.
        if local.astimezone(UTC).astimezone(LONDON).replace(tzinfo=None) != moment:
            raise InvalidInput(
                {"send_at": f"{moment:%H:%M} does not happen in the UK on {moment:%d %B %Y}: the clocks go forward"}
            )
        moment = local
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput({"send_at": "Choose a time within the next year"}) from None
    now = now or utcnow()
    if moment <= now:
        raise InvalidInput({"send_at": "Choose a time in the future"})
    if moment > now + SCHEDULE_LIMIT:
        raise InvalidInput({"send_at": "Choose a time within the next year"})
    return moment


def uk_time(moment: datetime | None) -> str:
    """A moment as the team reads it: 'Tuesday 1 December 2026 at 09:00 (GMT)'."""
    if moment is None:
        return ""
    local = moment.astimezone(LONDON)
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} ({local.tzname()})"


def _unusable(session: Session, issue: Issue) -> str | None:
    """What is wrong with the approved audience rules, checked again before a send: rules approved before
    validation refused what they hold (a date like 9999-12-31); None when they can be used."""
    if not issue.audience_rules:
        return None
    try:
        check_rules(session, issue.audience_rules)
    except InvalidInput as exc:
        return f"Issue {issue.id} was approved for segment rules that can no longer be used ({exc})"
    return None


def _audience_rules(session: Session, issue: Issue) -> None:
    """A Conflict before the send starts, not an issue stuck sending to nobody, if the rules cannot be used."""
    problem = _unusable(session, issue)
    if problem:
        raise Conflict(f"{problem}: change the segment, send the issue back and approve it again")


def schedule_issue(session: Session, issue_id: int, send_at: datetime, actor: Actor | None = None) -> Issue:
    """approved → scheduled: beat starts it at `send_at` (a polled row, so restarts cannot lose or repeat it)."""
    issue = _locked(session, issue_id)
    if issue.status not in ("approved", "scheduled"):
        raise Conflict(f"Only an approved issue can be scheduled; issue {issue.id} is {issue.status}")
    _audience_rules(session, issue)
    issue.status = "scheduled"
    issue.send_at = send_at
    audit.record(session, actor, "issue.schedule", issue, send_at=send_at.isoformat())
    session.flush()
    return issue


def unschedule_issue(session: Session, issue_id: int, actor: Actor | None = None) -> Issue:
    issue = _locked(session, issue_id)
    if issue.status != "scheduled":
        raise Conflict(f"Only a scheduled issue can be unscheduled; issue {issue.id} is {issue.status}")
    issue.status = "approved"
    issue.send_at = None
    audit.record(session, actor, "issue.unschedule", issue)
    session.flush()
    return issue


def start_due(session: Session, now: datetime | None = None, settings: Settings | None = None) -> list[int]:
    """Scheduled issues whose time has come become `sending`, their content frozen (and, given the settings,
    their email rendered); returns their ids for planning.

    The status change is a compare-and-set, so two beats firing together start each issue once."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(Issue.id).where(Issue.status == "scheduled", Issue.send_at <= now).order_by(Issue.send_at)
        )
    )
    started = []
    for issue_id in due:
        issue = session.get(Issue, issue_id)
        problem = _unusable(session, issue)
        if problem:
            reason = f"{problem}, so it was not started: change the segment, send the issue back and approve it again"
            _not_started(session, issue, reason)
            continue
        won = session.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == "scheduled")
            .where(Issue.send_at <= now)  # rescheduled to later meanwhile: not yet
            .values(status="sending", send_requested_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won:
            audit.record(session, SYSTEM, "issue.send", issue, scheduled_for=issue.send_at.isoformat())
            _start_sending(session, issue, now, settings)
            started.append(issue_id)
    session.flush()
    return started


def _not_started(session: Session, issue: Issue, reason: str) -> None:
    """A scheduled issue that cannot go: back to approved, with the reason in the audit log and on its page."""
    won = session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status == "scheduled")
        .values(status="approved", send_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won:
        audit.record(session, SYSTEM, "issue.not_sent", issue, reason=reason)
        session.refresh(issue)


def stop_unsendable(session: Session, issue_id: int) -> bool:
    """Before planning: an issue sending to rules that can no longer be used (approved before validation
    refused them) is cancelled with the reason recorded, instead of staying `sending` with nobody planned.
    Returns whether it was stopped."""
    issue = session.get(Issue, issue_id, with_for_update=True) if 0 < issue_id <= MAX_ID else None
    if issue is None or issue.status != "sending" or issue.planned_at is not None:
        return False
    problem = _unusable(session, issue)
    if problem is None:
        return False
    issue.status = "cancelled"
    issue.cancelled_at = issue.finished_at = utcnow()
    issue.recipient_count = 0
    audit.record(session, SYSTEM, "issue.not_sent", issue, reason=f"{problem}, so it was cancelled: nobody got it")
    session.flush()
    return True




def get_issue(session: Session, issue_id: int) -> Issue:
    if not 0 < issue_id <= MAX_ID:
        raise NotFound(f"No issue with id {issue_id}")
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise NotFound(f"No issue with id {issue_id}")
    return issue


def list_issues(session: Session, limit: int = 100) -> list[Issue]:
    return list(session.scalars(select(Issue).order_by(Issue.id.desc()).limit(limit)))


def request_send(
    session: Session, issue_id: int, actor: Actor | None = None, settings: Settings | None = None
) -> Issue:
    """Send an approved issue now: its content is frozen (and, given the settings, its email rendered) in
    this transaction, so what goes out is what was approved at this moment. The caller enqueues planning
    after its transaction commits."""
    issue = _locked(session, issue_id)
    if issue.status in ("draft", "in_review"):
        raise Conflict(f"Issue {issue.id} is {issue.status.replace('_', ' ')}: it must be approved before it is sent")
    if issue.status not in ("approved", "scheduled"):
        raise Conflict(f"Issue {issue.id} is already {issue.status}")
    _audience_rules(session, issue)
    audit.record(session, actor, "issue.send", issue)
    _start_sending(session, issue, utcnow(), settings)
    session.flush()
    return issue


def _locked(session: Session, issue_id: int) -> Issue:
    issue = session.get(Issue, issue_id, with_for_update=True) if 0 < issue_id <= MAX_ID else None
    if issue is None:
        raise NotFound(f"No issue with id {issue_id}")
    return issue


def pause_issue(session: Session, issue_id: int, actor: Actor | None = None) -> Issue:
    """Stop claiming more recipients; what is in flight finishes. Resume carries on where it stopped."""
    issue = _locked(session, issue_id)
    if issue.status != "sending":
        raise Conflict(f"Only a sending issue can be paused; issue {issue.id} is {issue.status}")
    issue.status = "paused"
    issue.paused_at = utcnow()
    audit.record(session, actor, "issue.pause", issue)
    session.flush()
    return issue


def resume_issue(session: Session, issue_id: int, actor: Actor | None = None) -> Issue:
    """Carry on a paused send. Only rows still pending are sent: a row that was sent never goes again.

    The caller enqueues planning after the commit (it re-plans nothing: it cuts the pending rows into batches).
    """
    issue = _locked(session, issue_id)
    if issue.status != "paused":
        raise Conflict(f"Only a paused issue can be resumed; issue {issue.id} is {issue.status}")
    issue.status = "sending"
    issue.paused_at = None
    audit.record(session, actor, "issue.resume", issue)
    session.flush()
    return issue


def cancel_issue(session: Session, issue_id: int, actor: Actor | None = None) -> Issue:
    """Stop for good: every recipient not yet sent to becomes `cancelled`."""
    issue = _locked(session, issue_id)
    if issue.status not in ("sending", "paused"):
        raise Conflict(f"Only a sending or paused issue can be cancelled; issue {issue.id} is {issue.status}")
    issue.status = "cancelled"
    issue.cancelled_at = utcnow()
    audit.record(session, actor, "issue.cancel", issue)
    ledger.cancel_pending(session, issue.id)
    session.flush()
    return issue


def issue_progress(session: Session, issue: Issue) -> dict:
    """The issue as the API and the progress page show it."""
    counts = ledger.status_counts(session, issue.id)
    return {
        "id": issue.id,
        "subject": issue.subject,
        "preheader": issue.preheader,
        "kind": issue.kind,
        "topic": issue.topic.slug,
        "segment": issue.segment_id,
        "status": issue.status,
        "send_at": issue.send_at.isoformat() if issue.send_at else None,
        "submitted_at": issue.submitted_at.isoformat() if issue.submitted_at else None,
        "approved_at": issue.approved_at.isoformat() if issue.approved_at else None,
        "recipients": issue.recipient_count,
        "counts": counts,
        "created_at": issue.created_at.isoformat(),
        "send_requested_at": issue.send_requested_at.isoformat() if issue.send_requested_at else None,
        "finished_at": issue.finished_at.isoformat() if issue.finished_at else None,
    }
