"""The delivery ledger: every SQL statement that moves a recipient's row, named by what it does.

A row goes pending → sending (a lease, claimed conditionally so two workers never hold the same row) →
sent / failed / bounced / skipped / cancelled. Every write here is one statement per call, whatever the number
of rows: set-based, or, where each row has values of its own (a server's reply), one statement executed with
every row's parameters at once. Nothing loops over recipients issuing statements.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, bindparam, exists, func, insert, literal, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..models import DELIVERY_STATUSES, Delivery, Issue, Subscriber, utcnow
from ..models.base import UTCDateTime

MAX_ATTEMPTS = 5
ACTIVE_STATUSES = ("pending", "sending")


def backoff(attempts: int) -> timedelta:
    """Wait before the next try of a temporary failure: 1, 2, 4, 8 … minutes, at most an hour."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 60))


def plan_deliveries(session: Session, issue_id: int, audience: Select) -> int:
    """Snapshot `audience` (a select of subscriber ids) into pending rows with one INSERT … SELECT.

    Idempotent: rows that already exist are left alone (the unique (issue, subscriber) index).
    Returns how many rows the issue's ledger holds afterwards (drivers disagree on INSERT … SELECT rowcount).
    """
    people = audience.subquery()
    rows = (
        select(
            literal(issue_id).label("issue_id"),
            people.c.id.label("subscriber_id"),
            literal("pending").label("status"),
            literal(0).label("attempts"),
        )
        .where(true())  # SQLite needs a WHERE to parse INSERT … SELECT … ON CONFLICT
        .order_by(people.c.id)
    )
    columns = ["issue_id", "subscriber_id", "status", "attempts"]
    if session.scalar(select(Delivery.id).where(Delivery.issue_id == issue_id).limit(1)) is None:
        # The usual case: nothing planned yet (callers hold the issue's lock). A plain INSERT is a third
        # faster on PostgreSQL than one that must check every row for a conflict.
        session.execute(insert(Delivery.__table__).from_select(columns, rows))
    else:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(
            dialect.insert(Delivery.__table__)
            .from_select(columns, rows)
            .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
        )
    return session.scalar(select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue_id)) or 0


def batch_ranges(session: Session, issue_id: int, size: int) -> list[tuple[int, int]]:
    """Cut the issue's pending rows into id ranges of about `size` rows each (keyset, no OFFSET)."""
    numbered = (
        select(Delivery.id, func.row_number().over(order_by=Delivery.id).label("n"))
        .where(Delivery.issue_id == issue_id, Delivery.status == "pending")
        .subquery()
    )
    starts = list(session.scalars(select(numbered.c.id).where((numbered.c.n - 1) % size == 0).order_by(numbered.c.id)))
    if not starts:
        return []
    last = session.scalar(
        select(func.max(Delivery.id)).where(Delivery.issue_id == issue_id, Delivery.status == "pending")
    )
    ends = [s - 1 for s in starts[1:]] + [last]
    return list(zip(starts, ends, strict=True))


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    attempts: int
    email: str
    name: str | None
    public_id: str = ""  # what the recipient's links name (mailer/links.py)


def new_claim_token() -> str:
    return secrets.token_hex(16)


def claim_batch(
    session: Session,
    issue_id: int,
    lo: int,
    hi: int,
    *,
    eligible: Select,
    lease_seconds: int,
    token: str,
    limit: int = 100,
    now: datetime | None = None,
) -> tuple[list[Claimed], int]:
    """Take up to `limit` due pending rows of the range under `token`; returns (claimed rows, rows skipped).

    Rows whose subscriber is no longer in `eligible` (unsubscribed, suppressed since planning) become
    `skipped` instead. Only rows still pending are touched, so a row is never held by two workers.
    """
    now = now or utcnow()
    in_range = and_(Delivery.issue_id == issue_id, Delivery.id.between(lo, hi), Delivery.status == "pending")
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)
    # Pause and cancel take effect at the next chunk: nothing is claimed unless the issue is still sending.
    sending = exists(select(Issue.id).where(Issue.id == issue_id, Issue.status == "sending"))
    chunk = select(Delivery.id).where(in_range, due, sending).order_by(Delivery.id).limit(limit).scalar_subquery()
    claimed = session.execute(
        update(Delivery)
        # The outer status check matters: under concurrency PostgreSQL re-checks it on the locked row,
        # so a row another worker claimed meanwhile is left out rather than claimed twice.
        .where(Delivery.id.in_(chunk), Delivery.status == "pending")
        .values(
            status="sending",
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=Delivery.attempts + 1,
            claim_token=token,
        )
        .returning(Delivery.id, Delivery.subscriber_id, Delivery.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    if not claimed:
        return [], 0
    # Still wanted? Checked for just these people (an indexed lookup of a hundred ids), not by
    # matching the whole audience against the range: unsubscribes and suppressions since planning.
    wanted = set(session.scalars(eligible.where(Subscriber.id.in_([c.subscriber_id for c in claimed]))))
    gone = [c.id for c in claimed if c.subscriber_id not in wanted]
    if gone:
        session.execute(
            update(Delivery)
            .where(_held(gone, token))
            .values(
                status="skipped", last_error="no longer subscribed", lease_until=None, attempts=Delivery.attempts - 1
            )
            .execution_options(synchronize_session=False)
        )
    claimed = [c for c in claimed if c.subscriber_id in wanted]
    if not claimed:
        return [], len(gone)
    people = {
        row.id: row
        for row in session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.public_id).where(
                Subscriber.id.in_([c.subscriber_id for c in claimed])
            )
        )
    }
    rows = [
        Claimed(c.id, c.subscriber_id, c.attempts, person.email, person.name, person.public_id)
        for c in sorted(claimed, key=lambda c: c.id)
        for person in (people[c.subscriber_id],)
    ]
    return rows, len(gone)


def _held(ids, token: str):
    return and_(Delivery.id.in_(ids), Delivery.status == "sending", Delivery.claim_token == token)


def mark_sent(session: Session, delivery_ids: list[int], token: str, now: datetime | None = None) -> None:
    if not delivery_ids:
        return
    session.execute(
        update(Delivery)
        .where(_held(delivery_ids, token))
        .values(status="sent", sent_at=now or utcnow(), lease_until=None, last_error=None, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )


def mark_retry(session: Session, retries: list[tuple[Claimed, str]], token: str, now: datetime | None = None) -> int:
    """Temporary failures go back to pending with backoff; past MAX_ATTEMPTS they fail. Returns failures."""
    now = now or utcnow()
    rows, failed = [], 0
    for claim, error in retries:
        row = {
            "b_id": claim.delivery_id,
            "b_status": "pending",
            "b_error": error,
            "b_next": now + backoff(claim.attempts),
        }
        if claim.attempts >= MAX_ATTEMPTS:
            failed += 1
            row.update(b_status="failed", b_error=f"gave up after {claim.attempts} attempts: {error}", b_next=None)
        rows.append(row)
    # b_next None keeps the row's next_attempt_at: a row that gave up keeps the one it had.
    _record_each(
        session,
        token,
        rows,
        next_attempt_at=func.coalesce(bindparam("b_next", type_=UTCDateTime()), _LEDGER.c.next_attempt_at),
    )
    return failed


def mark_failed(session: Session, failures: list[tuple[Claimed, str, str]], token: str) -> None:
    """Permanent refusals: each is (claim, status "failed" or "bounced", the server's reply)."""
    _record_each(
        session, token, [{"b_id": c.delivery_id, "b_status": status, "b_error": e} for c, status, e in failures]
    )


_LEDGER = Delivery.__table__


def _record_each(session: Session, token: str, rows: list[dict], **more) -> None:
    """Each held row's own outcome (`b_id`, `b_status`, `b_error`, and what `more` binds) in one UPDATE statement
    executed for all the rows at once (executemany: psycopg sends them in one pipeline, sqlite3 loops in C).
    Measured against one UPDATE per row, one UPDATE with a CASE per column and UPDATE … FROM (VALUES …), it was
    the fastest on both databases (bench/ledger_bench.py)."""
    if not rows:
        return
    held = and_(_LEDGER.c.id == bindparam("b_id"), _LEDGER.c.status == "sending", _LEDGER.c.claim_token == token)
    statement = (
        update(_LEDGER)
        .where(held)
        .values(status=bindparam("b_status"), last_error=bindparam("b_error"), lease_until=None, **more)
    )
    session.execute(statement, rows)


def release(session: Session, claims: list[Claimed], token: str, error: str, now: datetime | None = None) -> None:
    """Give back rows that were never tried (the server could not be reached); the attempt does not count."""
    if not claims:
        return
    now = now or utcnow()
    session.execute(
        update(Delivery)
        .where(_held([c.delivery_id for c in claims], token))
        .values(
            status="pending",
            lease_until=None,
            attempts=Delivery.attempts - 1,
            next_attempt_at=now + timedelta(seconds=30),
            last_error=error,
        )
        .execution_options(synchronize_session=False)
    )


def touch_issue(session: Session, issue_id: int, now: datetime | None = None) -> None:
    """Record that the issue's send is making progress (the sweeper leaves busy sends alone)."""
    session.execute(
        update(Issue)
        .where(Issue.id == issue_id)
        .values(heartbeat_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


def cancel_pending(session: Session, issue_id: int) -> int:
    """Every row not yet claimed becomes `cancelled`; rows in flight finish as they will."""
    return session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status == "pending")
        .values(status="cancelled", last_error="issue cancelled", next_attempt_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def skip_pending_for(session: Session, subscriber_id: int, topic_id: int | None, reason: str) -> int:
    """Skip a person's not-yet-claimed rows (for one topic's issues, or all): unsubscribe is immediate."""
    query = update(Delivery).where(Delivery.subscriber_id == subscriber_id, Delivery.status == "pending")
    if topic_id is not None:
        query = query.where(Delivery.issue_id.in_(select(Issue.id).where(Issue.topic_id == topic_id)))
    return session.execute(
        query.values(status="skipped", last_error=reason).execution_options(synchronize_session=False)
    ).rowcount


def requeue_expired_leases(session: Session, now: datetime | None = None) -> int:
    """Rows whose worker died mid-send go back to pending (or fail, past MAX_ATTEMPTS)."""
    now = now or utcnow()
    expired = and_(Delivery.status == "sending", Delivery.lease_until < now)
    gave_up = session.execute(
        update(Delivery)
        .where(expired, Delivery.attempts >= MAX_ATTEMPTS)
        .values(
            status="failed", lease_until=None, claim_token=None, last_error="worker lost while sending, too many times"
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    back = session.execute(
        update(Delivery)
        .where(expired)
        .values(status="pending", lease_until=None, claim_token=None, last_error="worker lost while sending; retrying")
        .execution_options(synchronize_session=False)
    ).rowcount
    return gave_up + back


def status_counts(session: Session, issue_id: int) -> dict[str, int]:
    """Rows per status for an issue; every status is present, zero when none."""
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    for status, n in session.execute(
        select(Delivery.status, func.count()).where(Delivery.issue_id == issue_id).group_by(Delivery.status)
    ):
        counts[status] = n
    return counts


NOT_SENT = tuple(status for status in DELIVERY_STATUSES if status != "sent")


def planned_counts(session: Session, planned: dict[int, int]) -> dict[int, dict[str, int]]:
    """`status_counts` for several planned issues (issue id → its ledger's row count, `recipient_count`, which
    planning sets to the rows the ledger holds; rows are never deleted), in one grouped query that reads only the
    rows not sent: `sent` is the rest. The (issue_id, status) index is probed per status, so a finished send to
    400,000 people reads its few bounces, not its 400,000 sent rows (bench/home_bench.py)."""
    counts = {issue_id: dict.fromkeys(DELIVERY_STATUSES, 0) for issue_id in planned}
    if planned:
        for issue_id, status, n in session.execute(
            select(Delivery.issue_id, Delivery.status, func.count())
            .where(Delivery.issue_id.in_(list(planned)), Delivery.status.in_(NOT_SENT))
            .group_by(Delivery.issue_id, Delivery.status)
        ):
            counts[issue_id][status] = n
        for issue_id, rows in planned.items():
            counts[issue_id]["sent"] = max(0, rows - sum(counts[issue_id].values()))
    return counts


def has_unfinished(session: Session, issue_id: int) -> bool:
    return (
        session.scalar(
            select(Delivery.id).where(Delivery.issue_id == issue_id, Delivery.status.in_(ACTIVE_STATUSES)).limit(1)
        )
        is not None
    )


def has_due(session: Session, issue_id: int, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return (
        session.scalar(
            select(Delivery.id)
            .where(
                Delivery.issue_id == issue_id,
                Delivery.status == "pending",
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            )
            .limit(1)
        )
        is not None
    )


@dataclass(frozen=True)
class RecipientRow:
    delivery_id: int
    email: str | None  # None once the person's data is erased
    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    subscriber_status: str | None = None  # the person now: active, or how they left (unsubscribed, bounced, …)


def recipients(
    session: Session,
    issue_id: int,
    status: str | None = None,
    after_id: int = 0,
    limit: int | None = 100,
    where=None,
) -> list[RecipientRow]:
    """Who got the issue and how it went, in ledger order; keyset paging by `after_id`. `where`: a further
    condition on the row (feedback.reads.recipients_who)."""
    query = (
        select(
            Delivery.id,
            Subscriber.email,
            Delivery.status,
            Delivery.attempts,
            Delivery.last_error,
            Delivery.sent_at,
            Subscriber.status,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id, Delivery.id > after_id)
        .order_by(Delivery.id)
    )
    if status:
        query = query.where(Delivery.status == status)
    if where is not None:
        query = query.where(where)
    if limit:
        query = query.limit(limit)
    return [RecipientRow(*row) for row in session.execute(query.execution_options(yield_per=1000))]
