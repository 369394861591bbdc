"""Commands of the feedback room: a report about one recipient is recorded and acted on in one transaction.

Every way in — our bounce receiver, the polled mailbox, SES's SNS notifications, Notify's callbacks, a refusal
while we sent — parses its report into a `Report` and calls `record`. The same report twice records nothing
new (its key is unique), so a replayed webhook or a mailbox read again is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit
from ..audience.suppression import suppress
from ..config import Settings
from ..db import after_commit
from ..models import Delivery, FeedbackEvent, Issue, Subscriber, email_key, utcnow
from . import policy

# Sources whose word about a bare address is taken: their reports are authenticated (SNS signatures, Notify's
# bearer token) or typed by the team. Anyone can mail the bounce domain or the RETURN_PATH mailbox, so a report
# that came by mail acts only when it names something we signed (the VERP address, the Message-ID); one that
# names only an address is kept, unattributed, for the team to look at, and suppresses nobody.
ADDRESS_TRUSTED = ("ses", "notify", "admin")

# A bounce's report is kept up to this many characters (a complaint's whole): enough for its headers and status.
REPORT_KEPT = 20_000


@dataclass
class Report:
    """One report about one recipient, as its source read it. Say what it names as exactly as the source knows:
    a delivery row, or an issue and a subscriber, or only an address."""

    source: str  # rcpt, smtp, imap, ses, notify, admin
    kind: str  # bounce | complaint
    key: str  # the same report gives the same key (see FeedbackEvent.key)
    severity: str | None = None  # hard | soft, for a bounce
    delivery_id: int | None = None
    issue_id: int | None = None
    subscriber_id: int | None = None
    email: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    report: str | None = None
    received_at: datetime | None = None


@dataclass
class Recorded:
    event_id: int
    new: bool  # False: this report had been recorded before, nothing changed
    outcome: str  # suppressed | counted | unattributed | already suppressed
    paused: str | None = None  # why the issue paused itself, if this report made it


def record(session: Session, report: Report, settings: Settings, *, judge: bool = True) -> Recorded:
    """Record `report` and act on it: the ledger row says bounced, the person is suppressed if the policy says
    so, and (unless `judge` is False: the caller judges once for many) the issue it answered is checked for
    auto-pause."""
    known = session.scalar(select(FeedbackEvent).where(FeedbackEvent.key == report.key[:255]))
    if known is not None:
        return Recorded(known.id, False, known.outcome or "")
    delivery = _delivery(session, report)
    subscriber_id = delivery.subscriber_id if delivery is not None else report.subscriber_id
    if subscriber_id is None and report.email and report.source in ADDRESS_TRUSTED:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email_key == email_key(report.email)))
    event = FeedbackEvent(
        key=report.key[:255],
        source=report.source,
        kind=report.kind,
        severity=report.severity if report.kind == "bounce" else None,
        issue_id=delivery.issue_id if delivery is not None else report.issue_id,
        delivery_id=delivery.id if delivery is not None else None,
        subscriber_id=subscriber_id,
        status=(report.status or "")[:32] or None,
        diagnostic=report.diagnostic,
        report=report.report if report.kind == "complaint" else (report.report or "")[:REPORT_KEPT] or None,
        received_at=report.received_at or utcnow(),
    )
    try:
        with session.begin_nested():  # two readers of one report at once: the second finds the first's row
            session.add(event)
    except IntegrityError:
        known = session.scalar(select(FeedbackEvent).where(FeedbackEvent.key == report.key[:255]))
        return Recorded(known.id, False, known.outcome or "")
    if delivery is not None and report.kind == "bounce":
        _mark_undelivered(session, delivery, event)
    event.outcome = _act(session, event, settings)
    audit.record(
        session,
        None,
        f"feedback.{event.kind}",
        event,
        source=event.source,
        severity=event.severity,
        status=event.status,
        issue=event.issue_id,
        subscriber=event.subscriber_id,
        outcome=event.outcome,
    )
    paused = check_send(session, event.issue_id, settings).paused if judge and event.issue_id is not None else None
    return Recorded(event.id, True, event.outcome, paused)


def _delivery(session: Session, report: Report) -> Delivery | None:
    if report.delivery_id is not None:
        return session.get(Delivery, report.delivery_id)
    if report.issue_id is not None and report.subscriber_id is not None:
        return session.scalar(
            select(Delivery).where(Delivery.issue_id == report.issue_id, Delivery.subscriber_id == report.subscriber_id)
        )
    return None


def _mark_undelivered(session: Session, delivery: Delivery, event: FeedbackEvent) -> None:
    """A message the relay accepted bounced after all: the ledger says so. A hard bounce makes the row
    `bounced` (counted in the issue's bounce rate); a soft one (the relay gave up on a full mailbox) `failed`.
    A row still `sending` changes too: a fast relay's DSN can come back before the batch records the send, and
    the batch then finds the row no longer held and leaves it as the report says. A pending row is left alone."""
    words = _said(event)
    hard = event.severity == "hard"
    session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status.in_(("sent", "sending", "failed") if hard else ("sent", "sending")),
        )
        .values(
            status="bounced" if hard else "failed",
            last_error=f"{'bounced' if hard else 'not delivered'} after sending: {words}"[:2000],
            lease_until=None,
        )
    )


def _act(session: Session, event: FeedbackEvent, settings: Settings) -> str:
    if event.subscriber_id is None:
        return "unattributed"
    rules = settings.deliverability
    if event.kind == "bounce" and event.severity != "hard":
        soft = policy.soft_bounces_within(session, event.subscriber_id, rules)
        if soft < rules.soft_bounce_limit:
            return "counted"
        why = f"{soft} soft bounces in {rules.soft_bounce_days} days, the last {_words(event)}"
    elif event.kind == "bounce":
        why = f"hard bounce {_words(event)}"
    else:
        why = f"reported as spam {_words(event)}"
    reason = "complained" if event.kind == "complaint" else "bounced"
    added = suppress(
        session, [event.subscriber_id], reason, detail=why[:2000], event_id=event.id, issue_id=event.issue_id
    )
    return "suppressed" if added else "already suppressed"


def _words(event: FeedbackEvent) -> str:
    where = {
        "rcpt": "while sending",
        "smtp": "by DSN",
        "imap": "by DSN (mailbox)",
        "ses": "by Amazon SES",
        "notify": "by GOV.UK Notify",
        "admin": "by the team",
    }.get(event.source, event.source)
    said = f": {_said(event)}" if event.status or event.diagnostic else ""
    issue = f" (issue {event.issue_id})" if event.issue_id is not None else ""
    return f"{where}{issue}{said}"


def _said(event: FeedbackEvent) -> str:
    """The status and the server's words, the status once ("550 5.1.1 No such user", not "5.1.1 550 5.1.1 …")."""
    if event.status and event.diagnostic and event.status in event.diagnostic:
        return event.diagnostic
    return " ".join(part for part in (event.status, event.diagnostic) if part)


def refused_while_sending(
    session: Session, issue_id: int, refusals: list[tuple[int, int, str, str | None]], settings: Settings
) -> None:
    """Hard bounces a batch met at RCPT time: (delivery id, subscriber id, the server's reply, its status). The
    ledger rows say bounced already; each becomes an event and a suppression that names it."""
    for delivery_id, subscriber_id, reply, status in refusals:
        record(
            session,
            Report(
                source="rcpt",
                kind="bounce",
                severity="hard",
                key=f"rcpt:{delivery_id}",
                delivery_id=delivery_id,
                subscriber_id=subscriber_id,
                status=status,
                diagnostic=reply,
            ),
            settings,
            judge=False,
        )


@dataclass(frozen=True)
class Check:
    judged: bool  # enough of the send has gone for its rates to count (or it is no longer sending)
    paused: str | None = None  # why it paused itself, if it just did


def check_send(session: Session, issue_id: int, settings: Settings) -> Check:
    """Pause a sending issue whose bounce or complaint figures crossed a limit (feedback.policy)."""
    issue = session.get(Issue, issue_id, with_for_update=True)
    if issue is None or issue.status != "sending" or not issue.auto_pause:
        return Check(judged=True)
    figures = policy.send_figures(session, issue_id)
    audience = policy.audience_of(issue)
    judged = figures.attempted >= policy.sample_size(audience, settings.deliverability)
    why = policy.why_pause(figures, audience, settings.deliverability)
    if why is None or not _still_to_send(session, issue_id):
        # Nothing left to hold back (a small list judged only once it has all gone): it finishes, and its
        # figures (with their warnings) say what happened.
        return Check(judged)
    issue.status = "paused"
    issue.paused_at = utcnow()
    issue.paused_reason = why
    audit.record(session, None, "issue.auto_pause", issue, reason=why)
    after_commit(session, _tell_publishers, issue.id)
    return Check(True, why)


def _still_to_send(session: Session, issue_id: int) -> bool:
    return (
        session.scalar(select(Delivery.id).where(Delivery.issue_id == issue_id, Delivery.status == "pending").limit(1))
        is not None
    )


def _tell_publishers(issue_id: int) -> None:
    from ..tasks import enqueue, tell_publishers_paused  # tasks call this room: looked up once both exist

    enqueue(tell_publishers_paused, issue_id)
