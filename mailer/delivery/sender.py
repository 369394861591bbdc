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
    chunk: int = 100,
    throttle: Callable[[int], object] | None = None,
) -> BatchReport:
    """Send the due rows of one id range of an issue; returns what happened to them."""
    report = BatchReport()
    token = ledger.new_claim_token()
    date = format_datetime(utcnow())
    while report.stopped is None:
        with db.transaction() as session:
            claims, skipped = ledger.claim_batch(
                session, issue_id, lo, hi, eligible=eligible, lease_seconds=lease_seconds, token=token, limit=chunk
            )
        report.skipped += skipped
        if not claims:
            if skipped:
                continue  # a whole chunk of people who left since planning: carry on with the range
            break
        report.claimed += len(claims)

        sent: list[int] = []
        retries: list[tuple[ledger.Claimed, str]] = []
        failures: list[tuple[ledger.Claimed, str, str]] = []
        untried: list[ledger.Claimed] = []
        for index, claim in enumerate(claims):
            if throttle is not None and index % THROTTLE_STEP == 0:
                try:
                    throttle(min(THROTTLE_STEP, len(claims) - index))
                except Exception as exc:  # the shared bucket lives in Redis; if it is gone, stop cleanly
                    untried = claims[index:]
                    report.stopped = f"send rate limiter unavailable: {exc}"
                    break
            fields = recipient_fields(claim)
            fields["date"] = date
            try:
                data = message.fill(fields)
            except UnsafeHeader as exc:  # an address stored before it could be checked: never retried
                failures.append((claim, "failed", str(exc)))
                continue
            try:
                transport.send(message.envelope_from, claim.email, data)
            except TemporaryFailure as exc:
                if exc.stage == "connect":
                    # The server cannot be reached or refuses our login: nothing is known about these
                    # recipients, so every untried row goes back without using up an attempt.
                    untried = claims[index:]
                    report.stopped = str(exc)
                    break
                retries.append((claim, str(exc)))
            except PermanentFailure as exc:
                bounce = exc.hard_bounce
                failures.append((claim, "bounced" if bounce else "failed", str(exc)))
                if bounce:
                    report.hard_bounces.append(claim.subscriber_id)
            else:
                sent.append(claim.delivery_id)

        with db.transaction() as session:
            ledger.mark_sent(session, sent, token)
            gave_up = ledger.mark_retry(session, retries, token)
            ledger.mark_failed(session, failures, token)
            ledger.release(session, untried, token, report.stopped or "")
            ledger.touch_issue(session, issue_id)
        report.sent += len(sent)
        report.retried += len(retries) - gave_up
        report.failed += gave_up + sum(1 for f in failures if f[1] == "failed")
        report.bounced += sum(1 for f in failures if f[1] == "bounced")
        report.given_back += len(untried)
    return report
