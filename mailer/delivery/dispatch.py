"""Planning a send, finishing it, and the sweeper that recovers lost work.

Each function runs in one transaction and returns what the caller must enqueue *after* the commit
(the outbox pattern): a task is never published for rows another transaction cannot yet see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Select, or_, select

from ..db import Database
from ..models import Issue, Subscriber, utcnow
from . import ledger

# A send that has made no progress for this long gets its pending rows enqueued again.
QUIET_AFTER = timedelta(seconds=90)
CONFIRM_RESWEEP = timedelta(minutes=15)


def plan_issue(
    db: Database, issue_id: int, audience_for: Callable[[Issue], Select], batch_size: int
) -> list[tuple[int, int]]:
    """Snapshot the issue's audience into the ledger (once) and return the batch ranges to enqueue."""
    with db.transaction() as session:
        issue = session.get(Issue, issue_id, with_for_update=True)
        if issue is None or issue.status != "sending":
            return []
        now = utcnow()
        if issue.planned_at is None:
            issue.recipient_count = ledger.plan_deliveries(session, issue.id, audience_for(issue))
            issue.planned_at = utcnow()  # after the INSERT … SELECT, so planned_at - send_requested_at is its cost
        issue.heartbeat_at = now
        ranges = ledger.batch_ranges(session, issue.id, batch_size)
        if not ranges:
            finish_if_done(session, issue)
    return ranges


def finish_if_done(session, issue: Issue) -> bool:
    """Mark a sending issue `sent` once every one of its rows is final."""
    if issue.status == "sending" and issue.planned_at is not None and not ledger.has_unfinished(session, issue.id):
        issue.status = "sent"
        issue.finished_at = utcnow()
        return True
    return False


def after_batch(db: Database, issue_id: int) -> None:
    """Record progress and finish the issue if that batch was the last."""
    with db.transaction() as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            return
        issue.heartbeat_at = utcnow()
        finish_if_done(session, issue)


@dataclass
class SweepResult:
    requeued_rows: int = 0
    plan: list[int] = field(default_factory=list)  # issues to (re)plan
    batches: list[tuple[int, int, int]] = field(default_factory=list)  # (issue, lo, hi)
    confirmations: list[int] = field(default_factory=list)  # subscriber ids whose confirmation never went
    finished: list[int] = field(default_factory=list)


def sweep(db: Database, batch_size: int, quiet_after: timedelta = QUIET_AFTER) -> SweepResult:
    """Find lost work: expired leases, unplanned or quiet sends, unsent confirmations, finished issues."""
    result = SweepResult()
    now = utcnow()
    with db.transaction() as session:
        result.requeued_rows = ledger.requeue_expired_leases(session, now)
        for issue in session.scalars(select(Issue).where(Issue.status == "sending")):
            if issue.planned_at is None:
                if issue.send_requested_at and now - issue.send_requested_at > quiet_after:
                    result.plan.append(issue.id)
                continue
            if finish_if_done(session, issue):
                result.finished.append(issue.id)
                continue
            quiet = issue.heartbeat_at is None or now - issue.heartbeat_at > quiet_after
            if quiet and ledger.has_due(session, issue.id, now):
                result.batches += [(issue.id, lo, hi) for lo, hi in ledger.batch_ranges(session, issue.id, batch_size)]
                issue.heartbeat_at = now
        # Confirmations asked for but never sent (the broker or SMTP server was down). Each is re-enqueued
        # at most every CONFIRM_RESWEEP, so an outage does not turn into a mail per sweep once it ends.
        unsent = (
            select(Subscriber)
            .where(
                Subscriber.confirm_requested_at.is_not(None),
                Subscriber.confirm_requested_at < now - QUIET_AFTER,
                Subscriber.confirm_requested_at > now - timedelta(days=1),
                or_(Subscriber.confirm_sent_at.is_(None), Subscriber.confirm_sent_at < Subscriber.confirm_requested_at),
                or_(Subscriber.confirm_swept_at.is_(None), Subscriber.confirm_swept_at < now - CONFIRM_RESWEEP),
            )
            .limit(500)
        )
        for subscriber in session.scalars(unsent):
            subscriber.confirm_swept_at = now
            result.confirmations.append(subscriber.id)
    return result
