"""Send one batch of an issue: claim a chunk → fill in each recipient → SMTP → record results → repeat.

Read it top to bottom as a pipeline. Rows are claimed `chunk` at a time under a lease and a claim token,
and each chunk's results are committed before the next is claimed: a worker killed mid-batch repeats at
most one chunk (its rows come back when the lease expires) and never loses one; a worker whose lease ran
out cannot overwrite what the row's new holder recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime

from sqlalchemy import Select

from ..db import Database
from ..models import utcnow
from ..render import CompiledMessage
from ..render.headers import UnsafeHeader
from ..transports import PermanentFailure, TemporaryFailure, Transport
from . import ledger

THROTTLE_STEP = 10  # messages reserved from SEND_RATE at a time: few Redis calls, smooth enough


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0
    given_back: int = 0
    hard_bounces: list[int] = field(default_factory=list)  # subscriber ids whose mailbox does not exist
    # The same refusals as (delivery id, subscriber id, the server's reply, its RFC 3463 status), for the record.
    refusals: list[tuple[int, int, str, str | None]] = field(default_factory=list)
    stopped: str | None = None  # why the batch stopped early (server unreachable), if it did


def send_batch(
    db: Database,
    *,
    issue_id: int,
    lo: int,
    hi: int,
    eligible: Select,
    message: CompiledMessage,
    recipient_fields: Callable[[ledger.Claimed], dict[str, str]],
    transport: Transport,
    lease_seconds: int,
    envelope_for: Callable[[ledger.Claimed], str] | None = None,
    after_chunk: Callable[[list[tuple[int, int, str, str | None]]], str | None] | None = None,
    chunk: int | Callable[[], int] = 100,
    throttle: Callable[[int], object] | None = None,
) -> BatchReport:
    """Send the due rows of one id range of an issue; returns what happened to them.

    `after_chunk` is called with each recorded chunk's hard bounces (delivery id, subscriber id, reply, status);
    if it gives a reason (the send paused itself), the batch stops there. `chunk` may be a function asked before
    each claim (the task claims fewer rows at a time while a send is still being judged)."""
    report = BatchReport()
    token = ledger.new_claim_token()
    send = _Send(
        message, recipient_fields, transport, throttle, format_datetime(utcnow()), envelope_for or _from(message)
    )
    while report.stopped is None:
        with db.transaction() as session:
            claims, skipped = ledger.claim_batch(
                session,
                issue_id,
                lo,
                hi,
                eligible=eligible,
                lease_seconds=lease_seconds,
                token=token,
                limit=chunk() if callable(chunk) else chunk,
            )
        report.skipped += skipped
        if not claims:
            if skipped:
                continue  # a whole chunk of people who left since planning: carry on with the range
            break
        report.claimed += len(claims)
        done = send.chunk(claims)
        _record(db, issue_id, token, done, report)
        if after_chunk is not None:  # also when the chunk stopped early: its refusals were still met
            paused = after_chunk(done.refusals)
            report.stopped = report.stopped or paused
    return report


def _from(message: CompiledMessage) -> Callable[[ledger.Claimed], str]:
    return lambda _claim: message.envelope_from


@dataclass
class _Chunk:
    """What became of one chunk of claimed rows, recorded together in one transaction."""

    sent: list[int] = field(default_factory=list)  # delivery ids
    retries: list[tuple[ledger.Claimed, str]] = field(default_factory=list)
    failures: list[tuple[ledger.Claimed, str, str]] = field(default_factory=list)  # (claim, failed|bounced, why)
    untried: list[ledger.Claimed] = field(default_factory=list)  # given back without using up an attempt
    hard_bounces: list[int] = field(default_factory=list)  # subscriber ids
    refusals: list[tuple[int, int, str, str | None]] = field(default_factory=list)
    stopped: str | None = None  # why sending cannot go on, if it cannot


@dataclass
class _Send:
    """Sending claimed rows one by one: fill in the recipient, hand to the transport, sort the outcome."""

    message: CompiledMessage
    recipient_fields: Callable[[ledger.Claimed], dict[str, str]]
    transport: Transport
    throttle: Callable[[int], object] | None
    date: str
    envelope_for: Callable[[ledger.Claimed], str]  # the Return-Path of each row's message (VERP names the row)

    def chunk(self, claims: list[ledger.Claimed]) -> _Chunk:
        """Try each row in turn; when sending cannot go on, the row it stopped at and the rest are untried."""
        done = _Chunk()
        for index, claim in enumerate(claims):
            if self.throttle is not None and index % THROTTLE_STEP == 0:
                done.stopped = self._reserve(min(THROTTLE_STEP, len(claims) - index))
            if done.stopped is None:
                done.stopped = self._one(claim, done)
            if done.stopped is not None:
                done.untried = claims[index:]
                break
        return done

    def _reserve(self, count: int) -> str | None:
        try:
            self.throttle(count)
        except Exception as exc:  # the shared bucket lives in Redis; if it is gone, stop cleanly
            return f"send rate limiter unavailable: {exc}"
        return None

    def _one(self, claim: ledger.Claimed, done: _Chunk) -> str | None:
        """Send to one row, noting the outcome in `done`; why sending must stop, if it must."""
        fields = self.recipient_fields(claim)
        fields["date"] = self.date
        try:
            data = self.message.fill(fields)
        except UnsafeHeader as exc:  # an address stored before it could be checked: never retried
            done.failures.append((claim, "failed", str(exc)))
            return None
        try:
            self.transport.send(self.envelope_for(claim), claim.email, data)
        except TemporaryFailure as exc:
            if exc.stage == "connect":
                # The server cannot be reached or refuses our login: nothing is known about these
                # recipients, so every untried row goes back without using up an attempt.
                return str(exc)
            done.retries.append((claim, str(exc)))
        except PermanentFailure as exc:
            bounce = exc.hard_bounce
            done.failures.append((claim, "bounced" if bounce else "failed", str(exc)))
            if bounce:
                done.hard_bounces.append(claim.subscriber_id)
                done.refusals.append((claim.delivery_id, claim.subscriber_id, str(exc), exc.enhanced_status))
        else:
            done.sent.append(claim.delivery_id)
        return None


def _record(db: Database, issue_id: int, token: str, done: _Chunk, report: BatchReport) -> None:
    """Write one chunk's outcomes (the rows still held by `token`) and add them to the report."""
    report.stopped = done.stopped
    report.hard_bounces.extend(done.hard_bounces)
    report.refusals.extend(done.refusals)
    with db.transaction() as session:
        ledger.mark_sent(session, done.sent, token)
        gave_up = ledger.mark_retry(session, done.retries, token)
        ledger.mark_failed(session, done.failures, token)
        ledger.release(session, done.untried, token, done.stopped or "")
        ledger.touch_issue(session, issue_id)
    report.sent += len(done.sent)
    report.retried += len(done.retries) - gave_up
    report.failed += gave_up + sum(1 for f in done.failures if f[1] == "failed")
    report.bounced += sum(1 for f in done.failures if f[1] == "bounced")
    report.given_back += len(done.untried)
