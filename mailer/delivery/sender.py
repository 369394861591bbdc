"""Send one batch of an issue: claim rows → fill in each recipient → SMTP → record results.

Read it top to bottom as a pipeline. Results are committed every `commit_every` messages, so a worker
killed mid-batch repeats at most that many messages (its rows come back when their lease expires), and
never loses one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime

from sqlalchemy import Select

from ..db import Database
from ..models import utcnow
from ..render import CompiledMessage
from ..transports import PermanentFailure, TemporaryFailure, Transport
from . import ledger


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    hard_bounces: list[int] | None = None  # subscriber ids refused permanently at RCPT


# SMTP replies that mean "this mailbox does not exist / will never accept": suppress the address.
HARD_BOUNCE_CODES = {550, 551, 553}


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
    commit_every: int = 100,
) -> BatchReport:
    """Send the due rows of one id range of an issue; returns what happened to them."""
    report = BatchReport(hard_bounces=[])
    with db.transaction() as session:
        claims, report.skipped = ledger.claim_batch(
            session, issue_id, lo, hi, eligible=eligible, lease_seconds=lease_seconds
        )
    report.claimed = len(claims)
    date = format_datetime(utcnow())

    sent: list[int] = []
    retries: list[tuple[ledger.Claimed, str]] = []
    failures: list[tuple[ledger.Claimed, str]] = []

    def flush() -> None:
        with db.transaction() as session:
            ledger.mark_sent(session, sent)
            gave_up = ledger.mark_retry(session, retries)
            ledger.mark_failed(session, failures)
        report.sent += len(sent)
        report.retried += len(retries) - gave_up
        report.failed += len(failures) + gave_up
        sent.clear()
        retries.clear()
        failures.clear()

    for index, claim in enumerate(claims):
        fields = recipient_fields(claim)
        fields["date"] = date
        try:
            transport.send(message.envelope_from, claim.email, message.fill(fields))
        except TemporaryFailure as exc:
            if exc.code is None:
                # The server is unreachable: give back this row and every one not yet tried.
                flush()
                with db.transaction() as session:
                    ledger.release(session, claims[index:], str(exc))
                break
            retries.append((claim, str(exc)))
        except PermanentFailure as exc:
            failures.append((claim, str(exc)))
            if exc.code in HARD_BOUNCE_CODES:
                report.hard_bounces.append(claim.subscriber_id)
        else:
            sent.append(claim.delivery_id)
        if len(sent) + len(retries) + len(failures) >= commit_every:
            flush()
    flush()
    return report
