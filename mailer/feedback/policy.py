"""What a report leads to, and when a send stops itself.

- A hard bounce (the mailbox does not exist, 5.1.x, or a provider's permanent failure) suppresses at once.
- Soft bounces (mailbox full, a server away for days: the relay gave up on a 4.x.x) suppress once there have
  been SOFT_BOUNCE_LIMIT of them within SOFT_BOUNCE_DAYS; fewer are counted, and nothing else.
- A complaint (the person pressed "report spam") unsubscribes them from everything and suppresses at once.

Auto-pause: mailbox providers judge a sender by its bounce and complaint rates (Amazon SES reviews an account
at 5 % bounces; Gmail and Yahoo want complaints under 0.3 %). A send whose early figures are worse than
AUTO_PAUSE_BOUNCE_RATE / AUTO_PAUSE_COMPLAINT_RATE pauses itself before the rest of a bad list goes out, and
tells the publishers. It is judged once a sample has gone: AUTO_PAUSE_SAMPLE messages or 2 % of the audience,
whichever is fewer, but never fewer than AUTO_PAUSE_MINIMUM (a rate over a handful of messages is noise, so a
send to fewer people is never paused);
after that, on every batch and every report, over everything sent so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Deliverability
from ..models import Delivery, FeedbackEvent, Issue, utcnow

SAMPLE_SHARE = 0.02


@dataclass(frozen=True)
class SendFigures:
    """An issue's bounce and complaint figures so far."""

    attempted: int  # rows a server has answered for: sent, bounced or failed
    bounced: int  # hard bounces (at RCPT time or reported later)
    complaints: int

    def rate(self, count: int) -> float:
        return count / self.attempted if self.attempted else 0.0

    @property
    def bounce_rate(self) -> float:
        return self.rate(self.bounced)

    @property
    def complaint_rate(self) -> float:
        return self.rate(self.complaints)


def send_figures(session: Session, issue_id: int) -> SendFigures:
    counts = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.issue_id == issue_id, Delivery.status.in_(("sent", "bounced", "failed")))
            .group_by(Delivery.status)
        ).all()
    )
    complaints = session.scalar(
        select(func.count())
        .select_from(FeedbackEvent)
        .where(FeedbackEvent.issue_id == issue_id, FeedbackEvent.kind == "complaint")
    )
    return SendFigures(sum(counts.values()), counts.get("bounced", 0), complaints or 0)


def sample_size(audience: int, rules: Deliverability) -> int:
    """How many messages must have gone before a send's rates are judged. A send to fewer people than the minimum
    is never judged: a rate over a handful says nothing, and there is little left to protect."""
    share = math.ceil(audience * SAMPLE_SHARE)
    return max(rules.auto_pause_minimum, min(rules.auto_pause_sample, share))


def why_pause(figures: SendFigures, audience: int, rules: Deliverability) -> str | None:
    """The sentence saying why a send with these figures must pause, or None if it may go on."""
    if figures.attempted == 0 or figures.attempted < sample_size(audience, rules):
        return None
    so_far = f"of the first {figures.attempted:,} messages"
    if rules.auto_pause_bounce_rate and figures.bounce_rate > rules.auto_pause_bounce_rate:
        return (
            f"{figures.bounced:,} {so_far} bounced as mailboxes that do not exist ({figures.bounce_rate:.1%}, "
            f"above the {rules.auto_pause_bounce_rate:.1%} limit). Check where this list came from before resuming."
        )
    if rules.auto_pause_complaint_rate and figures.complaint_rate > rules.auto_pause_complaint_rate:
        return (
            f"{figures.complaints:,} {so_far} were reported as spam ({figures.complaint_rate:.2%}, above the "
            f"{rules.auto_pause_complaint_rate:.2%} limit). Check who this send is for before resuming."
        )
    return None


def soft_bounces_within(session: Session, subscriber_id: int, rules: Deliverability) -> int:
    since = utcnow() - timedelta(days=rules.soft_bounce_days)
    return (
        session.scalar(
            select(func.count())
            .select_from(FeedbackEvent)
            .where(
                FeedbackEvent.subscriber_id == subscriber_id,
                FeedbackEvent.kind == "bounce",
                FeedbackEvent.severity == "soft",
                FeedbackEvent.received_at >= since,
            )
        )
        or 0
    )


def audience_of(issue: Issue) -> int:
    return issue.recipient_count or 0
