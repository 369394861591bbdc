"""The compose room's use cases, one function each: what the admin, the API and the CLI call.

A command takes its input already checked by its model (compose/inputs.py), checks what needs the database,
writes, records its audit row (mailer/audit.py) and registers the tasks that follow with the unit of work
(`after_commit`: they are enqueued once it commits, never if it rolls back; request_digest alone hands its task over
first, see there). The adapter (an admin view, an API route, a CLI command, a Celery task) opens the unit of work,
calls one command and shows what it returns:

    with db.transaction() as session:
        issue = commands.send_issue(session, issue_id, actor, settings)

Commands never commit. The rules they apply live beside them: the issue workflow (which state may follow which,
who may approve) in issues.py, progress updates in updates.py, digest runs in digests.py, images in media.py.
The workflow's functions write and audit but enqueue nothing, so tests can drive a send step by step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from .. import audit
from ..audit import Actor
from ..config import Settings
from ..db import Database, after_commit
from ..models import Issue, Media, Update, utcnow
from ..tasks import enqueue, plan_issue, run_digest_task, send_test
from . import digests, issues, media, updates
from .inputs import DigestRunInput, IssueInput, ReturnInput, ScheduleInput, TestSendInput, UpdateInput

# --- issues ------------------------------------------------------------------------------------------------------


def create_issue(session: Session, data: IssueInput, actor: Actor) -> Issue:
    """A new draft, written by the actor's person. Audit: issue.create."""
    return issues.create_issue(session, data, actor=actor)


def edit_issue(session: Session, issue_id: int, data: IssueInput, actor: Actor) -> Issue:
    """Change a draft (or an issue in review or approved, which becomes a draft again). Audit: issue.edit."""
    return issues.update_issue(session, issue_id, data, actor)


def submit_issue(session: Session, issue_id: int, actor: Actor) -> Issue:
    """Ask for review: draft → in_review. Audit: issue.submit."""
    return issues.submit_issue(session, issue_id, actor)


def approve_issue(session: Session, issue_id: int, actor: Actor, settings: Settings) -> Issue:
    """in_review → approved; by someone who neither wrote nor submitted it when the team asks for two people
    (APPROVAL_BY_ANOTHER). Audit: issue.approve."""
    return issues.approve_issue(session, issue_id, actor, by_another=settings.approval_by_another)


def return_issue(session: Session, issue_id: int, data: ReturnInput, actor: Actor) -> Issue:
    """Send it back to its writer with a note: in_review or approved → draft. Audit: issue.return."""
    return issues.return_issue(session, issue_id, actor, note=data.note)


def schedule_issue(session: Session, issue_id: int, data: ScheduleInput, actor: Actor) -> Issue:
    """approved → scheduled at `send_at` (beat's sweep starts it). Audit: issue.schedule."""
    return issues.schedule_issue(session, issue_id, data.send_at, actor)


def unschedule_issue(session: Session, issue_id: int, actor: Actor) -> Issue:
    """scheduled → approved. Audit: issue.unschedule."""
    return issues.unschedule_issue(session, issue_id, actor)


def send_issue(session: Session, issue_id: int, actor: Actor, settings: Settings) -> Issue:
    """Send an approved (or scheduled) issue now: what it says is frozen and its email rendered in this unit of
    work, and its planning is enqueued once it commits. Audit: issue.send."""
    issue = issues.request_send(session, issue_id, actor, settings=settings)
    after_commit(session, enqueue, plan_issue, issue.id)
    return issue


def pause_issue(session: Session, issue_id: int, actor: Actor) -> Issue:
    """Nobody else gets it until it is resumed. Audit: issue.pause."""
    return issues.pause_issue(session, issue_id, actor)


def resume_issue(session: Session, issue_id: int, actor: Actor) -> Issue:
    """Carry on a paused send (its pending rows are cut into batches again, once committed). Audit: issue.resume."""
    issue = issues.resume_issue(session, issue_id, actor)
    after_commit(session, enqueue, plan_issue, issue.id)
    return issue


def cancel_issue(session: Session, issue_id: int, actor: Actor) -> Issue:
    """Stop for good: everyone not yet sent to is cancelled. Audit: issue.cancel."""
    return issues.cancel_issue(session, issue_id, actor)


def send_a_test(session: Session, issue_id: int, data: TestSendInput, actor: Actor) -> list[str]:
    """Send the issue as it stands to the team's addresses, marked [TEST] (the task is enqueued once this
    commits); returns the addresses as they will be written. Audit: issue.test."""
    issue = issues.get_issue(session, issue_id)
    addresses = list(data.to)
    audit.record(session, actor, "issue.test", issue, to=addresses)
    after_commit(session, enqueue, send_test, issue.id, addresses)
    return addresses


def upload_image(session: Session, data: bytes, filename: str, var_dir: Path, actor: Actor) -> Media:
    """Keep an uploaded image for an image block (stored once by content: the same picture again is the same
    row). Audit: media.upload."""
    image = media.save_image(session, data, filename, var_dir, actor.person_id)
    audit.record(session, actor, "media.upload", image, filename=image.filename)
    return image


# --- progress updates ----------------------------------------------------------------------------------------


def create_update(session: Session, data: UpdateInput, actor: Actor, settings: Settings) -> tuple[Update, Issue | None]:
    """A draft update; with `publish`, published and sent at once (see publish_update). Returns the update and
    the email sending it, if any. Audit: update.create (and update.publish)."""
    update = updates.create_update(session, data, actor)
    return update, publish_update(session, update.id, actor, settings) if data.publish else None


def edit_update(session: Session, update_id: int, data: UpdateInput, actor: Actor) -> Update:
    """Change a draft update (a published one has been sent: it cannot change). Audit: update.edit."""
    return updates.edit_update(session, update_id, data, actor)


def publish_update(session: Session, update_id: int, actor: Actor, settings: Settings) -> Issue:
    """Publish: the archive and the feeds now, its email to the "as it happens" subscribers (planned once this
    commits), digests from now on. Returns the email. Audit: update.publish."""
    issue = updates.publish_update(session, update_id, actor, settings)
    after_commit(session, enqueue, plan_issue, issue.id)
    return issue


# --- digests -----------------------------------------------------------------------------------------------------


@dataclass
class DigestRequest:
    frequency: str
    period: str
    queued: bool = False  # whether the queue took it: a worker will run it


def request_digest(session: Session, data: DigestRunInput, actor: Actor) -> DigestRequest:
    """Have a worker run this period's digest (a long run must not hang on a web request); running it again in the
    same period sends nothing more. `queued` says whether the queue took it; the adapter tells the person when it
    did not. Audit: digest.request, only when it was queued.

    The one command that hands its task over before the commit, not after: the task reads nothing this unit of
    work writes (it is given only the frequency), so it need not wait for it, and waiting would leave the audit row
    written before anyone knew whether the queue answered: a row for work nothing picked up, another on every try
    again. Recorded only once the task is queued, the log says what happened. (Should the unit then roll back, the
    run still goes ahead and is recorded as digest.run; running a period again sends nothing more.)"""
    request = DigestRequest(data.frequency, digests.period_of(data.frequency, utcnow()))
    request.queued = enqueue(run_digest_task, request.frequency)
    if request.queued:
        audit.record(session, actor, "digest.request", None, frequency=request.frequency, period=request.period)
    return request


def run_digest(
    db: Database, data: DigestRunInput, actor: Actor | None, settings: Settings, at: datetime | None = None
) -> tuple[digests.RunReport, list[int]]:
    """Run the digest for the period containing `at` (default now) in this process: the report, and the emails the
    queue did not take (the sweeper sends them when it answers). What the CLI and the `mailer.run_digest` task
    (beat's, or one requested) call. The run commits as it goes, chunk by chunk, so this takes the database, not a
    session; each email's planning is enqueued once the unit of work that starts the emails has committed, and
    never if it rolls back. Audit: digest.request when an actor asked here (the CLI; the task's run was recorded
    when it was requested, beat's needs no request), and digest.run, by the system, the first time the period is
    run."""
    if actor is not None:
        with db.transaction() as session:
            period = digests.period_of(data.frequency, at or utcnow())
            audit.record(session, actor, "digest.request", None, frequency=data.frequency, period=period)
    unsent: list[int] = []

    def plan_once_committed(session: Session, report: digests.RunReport) -> None:
        for issue_id in report.emails:
            after_commit(session, _plan_digest_email, issue_id, unsent)

    report = digests.run_digest(db, data.frequency, at, settings=settings, then=plan_once_committed)
    return report, unsent


def _plan_digest_email(issue_id: int, unsent: list[int]) -> None:
    if not enqueue(plan_issue, issue_id):
        unsent.append(issue_id)


# --- beat's schedule ---------------------------------------------------------------------------------------------


def start_scheduled(session: Session, settings: Settings | None) -> list[int]:
    """Start the scheduled issues whose time has come (beat's sweep calls this every 30 s; each is started once
    however many beats fire); each one's planning is enqueued once this unit of work commits. Returns their ids.
    Audit: issue.send by the system for each, issue.not_sent for one that can no longer go."""
    started = issues.start_due(session, settings=settings)
    for issue_id in started:
        after_commit(session, enqueue, plan_issue, issue_id)
    return started
