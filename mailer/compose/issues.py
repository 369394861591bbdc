"""Newsletter issues: write, preview, send, follow."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, true, update
from sqlalchemy.orm import Session, joinedload

from .. import audit
from ..audience.rules import describe
from ..audience.segments import area_names, audience_size, check_rules, topic_names, topics_by_slug, usable_rules
from ..audit import SYSTEM, Actor
from ..config import Settings
from ..delivery import ledger
from ..errors import Conflict, InvalidInput, NotFound
from ..feedback.reads import Heard, heard_about, recipients_who
from ..models import (
    DELIVERY_STATUSES,
    EDITABLE,
    FINAL_STATUSES,
    MAX_ID,
    AdminUser,
    AuditEvent,
    Issue,
    Media,
    Segment,
    Topic,
    utcnow,
)
from ..stats import issue_figures
from .blocks import archive_page, blocks_of, missing_images, resolve_blocks, stored
from .inputs import LONDON, IssueInput, IssuesQuery
from .mail import freeze, updates_shown


def _in_database(session: Session, data: IssueInput) -> Topic:
    """The issue's topic (checked when parsed); InvalidInput naming every field that names something the database
    does not have (or, for a segment, has but cannot use)."""
    errors: dict[str, str] = {}
    topic = topics_by_slug(session)[data.topic]  # checked when the input was parsed (`lookups.parse_in`)
    if data.segment is not None:
        segment = session.get(Segment, data.segment)
        if segment is None:
            errors["segment"] = f"No segment with id {data.segment}"
        else:
            try:
                usable_rules(session, segment.rules, f"segment {segment.name!r}")
            except Conflict as exc:
                errors["segment"] = str(exc)
    errors |= missing_images(session, stored(data.blocks) or [])
    if errors:
        raise InvalidInput(errors)
    return topic


def _values(data: IssueInput) -> dict:
    return {
        "subject": data.subject,
        "body": data.body,
        "preheader": data.preheader,
        "segment_id": data.segment,
        "blocks": stored(data.blocks),
    }


def create_issue(
    session: Session, data: IssueInput, created_by_id: int | None = None, actor: Actor | None = None
) -> Issue:
    """A new draft issue, written by the actor's person unless `created_by_id` says who; InvalidInput names every
    field that names what the database does not have."""
    topic = _in_database(session, data)
    if created_by_id is None and actor is not None:
        created_by_id = actor.person_id
    issue = Issue(topic_id=topic.id, status="draft", created_by_id=created_by_id, **_values(data))
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
    topic = _in_database(session, data)
    reopened = issue.status != "draft"
    for key, value in _values(data).items():
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
    exactly the blocks and updates the email carries. (An issue sent before contents were frozen gets the
    updates its email took then: `mail.updates_shown`.)"""
    if issue.archive_html is None:
        if issue.frozen is not None:
            issue.archive_html = archive_page(None, issue.frozen.blocks)
        else:
            topic_id, before = updates_shown(issue)
            blocks = resolve_blocks(session, blocks_of(issue), topic_id=topic_id, before=before)
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
    """A reviewer sends an issue back to its writer: in_review or approved → draft, with a note (ReturnInput's,
    cleaned)."""
    issue = _locked(session, issue_id)
    if issue.status not in ("in_review", "approved"):
        raise Conflict(f"Only an issue in review or approved can be sent back; issue {issue.id} is {issue.status}")
    _back_to_draft(issue)
    audit.record(session, actor, "issue.return", issue, note=note or None)
    session.flush()
    return issue


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


def _retired_topic(issue: Issue) -> str | None:
    """Why an issue cannot go to its topic (retired: nothing is sent to it), or None."""
    if issue.topic is not None and issue.topic.retired_at is not None:
        return (
            f"Issue {issue.id} is for {issue.topic.name}, a retired topic: nothing is sent to it until an admin "
            "restores it"
        )
    return None


def _audience_rules(session: Session, issue: Issue) -> None:
    """A Conflict before the send starts, not an issue stuck sending to nobody, if the rules cannot be used
    or its topic was retired."""
    if retired := _retired_topic(issue):
        raise Conflict(retired)
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
        if retired := _retired_topic(issue):
            _not_started(session, issue, f"{retired}, so it was not started")
            continue
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


@dataclass
class IssuesPage:
    """One page of the issues list, newest first, and how many the filters match in all."""

    issues: list[Issue]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def list_issues(session: Session, query: IssuesQuery) -> IssuesPage:
    """The issues `query` asks for (its status and topic), newest first, a page of them. Offset paging: the team
    has hundreds of issues, not millions, and a page number is what a person can pass on; the topic's row is
    loaded with each issue (one query, not one a row)."""
    where = []
    if query.status is not None:
        where.append(Issue.status == query.status)
    if query.topic is not None:
        where.append(Issue.topic_id == select(Topic.id).where(Topic.slug == query.topic).scalar_subquery())
    total = session.scalar(select(func.count()).select_from(Issue).where(*where)) or 0
    rows = session.scalars(
        select(Issue)
        .options(joinedload(Issue.topic))
        .where(*where)
        .order_by(Issue.id.desc())
        .offset((query.page - 1) * query.size)
        .limit(query.size)
    )
    return IssuesPage(list(rows), total, query.page, query.size)


# --- what the home page shows of issues ------------------------------------------------------------------------

HOME_LIMIT = 20  # rows a home panel lists; the issues list (filtered) has the rest


@dataclass
class Waiting:
    """An issue waiting for someone: a publisher to approve it, or its writer to change it after it came back."""

    issue: Issue
    returned: str | None = None  # who sent it back and when ("by … on …"), for a draft that came back
    note: str | None = None  # what the reviewer said


@dataclass
class WaitingFor:
    """What waits for one person: issues others submitted that they may approve (publishers and admins), and
    their own issues not yet approved (drafts, those sent back first, and those waiting for a publisher)."""

    to_approve: list[Waiting]
    own: list[Waiting]


def waiting_for(session: Session, person_id: int | None, may_approve: bool) -> WaitingFor:
    to_approve: list[Waiting] = []
    if may_approve:
        # Someone else's: with APPROVAL_BY_ANOTHER these are the ones this person may approve; an issue
        # submitted through an ownerless token (nobody's) is someone else's too.
        others = Issue.submitted_by_id.is_(None) | (Issue.submitted_by_id != person_id)
        to_approve = [
            Waiting(issue)
            for issue in session.scalars(
                select(Issue)
                .options(joinedload(Issue.topic))
                .where(Issue.status == "in_review", others if person_id is not None else true())
                .order_by(Issue.submitted_at, Issue.id)
                .limit(HOME_LIMIT)
            )
        ]
    own: list[Waiting] = []
    if person_id is not None:
        issues = list(
            session.scalars(
                select(Issue)
                .options(joinedload(Issue.topic))
                .where(Issue.created_by_id == person_id, Issue.status.in_(("draft", "in_review")))
                .order_by(Issue.updated_at.desc(), Issue.id.desc())
                .limit(HOME_LIMIT)
            )
        )
        returns = _latest_returns(session, [i.id for i in issues if i.status == "draft"])
        for issue in issues:
            event = returns.get(issue.id)
            own.append(
                Waiting(issue, f"by {event.actor_label} on {uk_time(event.at)}", event.details.get("note"))
                if event
                else Waiting(issue)
            )
        # What came back first: it is what the writer has to act on.
        own.sort(key=lambda w: w.returned is None)
    return WaitingFor(to_approve, own)


def _latest_returns(session: Session, issue_ids: list[int]) -> dict[int, AuditEvent]:
    """The last time each of these issues was sent back to its writer, by issue id (one query)."""
    if not issue_ids:
        return {}
    latest: dict[int, AuditEvent] = {}
    for event in session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.action == "issue.return",
            AuditEvent.target_type == "issue",
            AuditEvent.target_id.in_(issue_ids),
        )
        .order_by(AuditEvent.id)
    ):
        latest[event.target_id] = event
    return latest


def scheduled_issues(session: Session, limit: int = HOME_LIMIT) -> list[Issue]:
    """Issues waiting for their time, soonest first."""
    return list(
        session.scalars(
            select(Issue)
            .options(joinedload(Issue.topic))
            .where(Issue.status == "scheduled")
            .order_by(Issue.send_at, Issue.id)
            .limit(limit)
        )
    )


@dataclass
class Sending:
    """A send under way (or paused): how many of its recipients are done, from its ledger."""

    issue: Issue
    done: int  # rows with a final status: sent, failed, bounced, skipped or cancelled
    sent: int
    total: int | None  # its recipients, once planned (None while its ledger is being written)

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def sending_now(session: Session) -> list[Sending]:
    """Every send sending or paused, oldest first, with its progress: the ledger's rows not yet sent, for all of
    them in one grouped query (`ledger.planned_counts`); a send still being planned has no figures yet."""
    issues = list(
        session.scalars(
            select(Issue)
            .options(joinedload(Issue.topic))
            .where(Issue.status.in_(("sending", "paused")))
            .order_by(Issue.send_requested_at, Issue.id)
            .limit(HOME_LIMIT)
        )
    )
    planned = {issue.id: issue.recipient_count for issue in issues if issue.recipient_count is not None}
    counts = ledger.planned_counts(session, planned)
    empty = dict.fromkeys(DELIVERY_STATUSES, 0)
    return [
        Sending(
            issue,
            done=sum(counts.get(issue.id, empty)[status] for status in FINAL_STATUSES),
            sent=counts.get(issue.id, empty)["sent"],
            total=issue.recipient_count,
        )
        for issue in issues
    ]


@dataclass
class RecipientsPage:
    rows: list[ledger.RecipientRow]
    next_after: int | None  # the `after` of the next page; None: there is none
    heard: dict[int, Heard]  # the last bounce or complaint heard about a row, by its delivery id


def deliveries_page(
    session: Session, issue_id: int, status: str | None, after: int, limit: int, who: str | None = None
) -> RecipientsPage:
    """Up to `limit` of the issue's deliveries after the row `after` (in `status`, and among `who` of
    feedback.reads.WHO: bounced, complained, left, if given), with what was heard about each."""
    issue = get_issue(session, issue_id)
    rows = ledger.recipients(session, issue.id, status, after, limit, where=recipients_who(who))
    heard = heard_about(session, issue.id, [r.delivery_id for r in rows])
    return RecipientsPage(rows, rows[-1].delivery_id if len(rows) == limit else None, heard)


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
    # A send that paused itself, resumed by a publisher who has seen its figures, does not pause itself again.
    overridden = issue.paused_reason
    if overridden:
        issue.auto_pause = False
        issue.paused_reason = None
    audit.record(session, actor, "issue.resume", issue, overrode_auto_pause=overridden)
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
        "paused_reason": issue.paused_reason,
        "auto_pause": issue.auto_pause,
        "figures": issue_figures(session, issue.id).as_dict(),
    }


# --- what the admin's pages read -------------------------------------------------------------------------------


@dataclass
class Overview:
    """What the issue's page says besides the issue itself: who it would reach now, who checked it, and why it
    went back to its writer or was not sent."""

    progress: dict
    audience: int | None = None
    audience_problem: str | None = None
    segment_summary: str | None = None
    workflow: dict = field(default_factory=dict)


def overview(session: Session, issue: Issue) -> Overview:
    rules = issue.segment.rules if issue.segment is not None else None
    seen = Overview(progress=issue_progress(session, issue), workflow=_workflow(session, issue))
    if issue.status in EDITABLE + ("scheduled",):
        try:
            usable = usable_rules(session, rules, f"segment {issue.segment.name!r}") if rules else None
            seen.audience = audience_size(session, issue.topic_id, usable)
        except Conflict as exc:  # rules saved before validation refused them: say so, the page still works
            seen.audience_problem = str(exc)
    if rules or issue.audience_rules:
        seen.segment_summary = describe(issue.audience_rules or rules, topic_names(session), area_names(session))
    return seen


def _latest_event(session: Session, issue: Issue, action: str) -> AuditEvent | None:
    return session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == action, AuditEvent.target_type == "issue", AuditEvent.target_id == issue.id)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )


def _workflow(session: Session, issue: Issue) -> dict:
    """Who submitted and approved it, and the last note from a reviewer who sent it back."""
    names = dict(session.execute(select(AdminUser.id, AdminUser.email)).all())

    def who(user_id, when):
        return f"by {names.get(user_id, 'someone')} on {uk_time(when)}" if when else None

    returned = _latest_event(session, issue, "issue.return")
    not_sent = _latest_event(session, issue, "issue.not_sent")
    local = issue.send_at.astimezone(LONDON).strftime("%Y-%m-%dT%H:%M") if issue.send_at else ""
    return {
        "submitted": who(issue.submitted_by_id, issue.submitted_at),
        "approved": who(issue.approved_by_id, issue.approved_at),
        "returned": {
            "when": f"by {returned.actor_label} on {uk_time(returned.at)}",
            "note": returned.details.get("note"),
        }
        if returned and issue.status == "draft"
        else None,
        "send_at_local": local,
        # Why the system did not send it (its segment's rules could no longer be used), until it is sent.
        "not_sent": not_sent.details.get("reason")
        if not_sent and issue.status in ("approved", "cancelled") and not_sent.at >= (issue.approved_at or not_sent.at)
        else None,
    }


@dataclass
class ComposerChoices:
    """What the composer's form offers: topics, segments, and the images its blocks point at (by id)."""

    topics: list[Topic]
    segments: list[Segment]
    media: dict[int, Media]


def topic_choices(session: Session) -> list[Topic]:
    """The topics an issue or an update can be about (none retired: nothing is sent to those), in their order."""
    return list(session.scalars(select(Topic).where(Topic.retired_at.is_(None)).order_by(Topic.position, Topic.id)))


def composer_choices(session: Session, blocks: list[dict]) -> ComposerChoices:
    media_ids = [b.get("media") for b in blocks if b.get("type") == "image" and b.get("media")]
    media = {m.id: m for m in session.scalars(select(Media).where(Media.id.in_(media_ids)))} if media_ids else {}
    return ComposerChoices(
        topics=topic_choices(session),
        segments=list(session.scalars(select(Segment).order_by(Segment.name))),
        media=media,
    )
