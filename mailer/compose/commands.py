"""The compose room's use cases, one function each: what the admin, the API and the CLI call.

A command takes its input already checked by its model (compose/inputs.py), checks what needs the database,
writes, records its audit row (mailer/audit.py) and registers the tasks that follow with the unit of work
(`after_commit`: they are enqueued once it commits, never if it rolls back). The adapter opens the unit of work,
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
    queued: bool | None = None  # once the unit of work has committed: whether a worker has it


def request_digest(session: Session, data: DigestRunInput, actor: Actor) -> DigestRequest:
    """Have a worker run this period's digest (a long run must not hang on a web request); running it again in the
    same period sends nothing more. `queued` says, after the commit, whether the queue took it. Audit:
    digest.request."""
    request = DigestRequest(data.frequency, digests.period_of(data.frequency, utcnow()))
    audit.record(session, actor, "digest.request", None, frequency=request.frequency, period=request.period)
    after_commit(session, _hand_to_a_worker, request)
    return request


def _hand_to_a_worker(request: DigestRequest) -> None:
    request.queued = enqueue(run_digest_task, request.frequency)


def run_digest(
    db: Database, data: DigestRunInput, actor: Actor, settings: Settings, at: datetime | None = None
) -> tuple[digests.RunReport, list[int]]:
    """Run the digest for the period containing `at` (default now) in this process, then enqueue its emails'
    planning: the report, and the emails the queue did not take (the sweeper sends them when it answers).
    The run commits as it goes, chunk by chunk, so this takes the database, not a session. Audit:
    digest.request (and digest.run, by the system, the first time the period is run)."""
    with db.transaction() as session:
        period = digests.period_of(data.frequency, at or utcnow())
        audit.record(session, actor, "digest.request", None, frequency=data.frequency, period=period)
    report = digests.run_digest(db, data.frequency, at, settings=settings)
    return report, [issue_id for issue_id in report.emails if not enqueue(plan_issue, issue_id)]
