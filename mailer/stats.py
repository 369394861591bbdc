"""What happened after sending: per issue, by who people are, and subscribers gained and lost over time.

No tracking pixel and no link tracking: every figure here comes from the ledger and from what people did
(unsubscribing, complaining), which we know anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from .audience.segments import area_names
from .models import (
    AUDIENCES,
    ConsentEvent,
    Delivery,
    FeedbackEvent,
    Issue,
    Subscriber,
    Subscription,
    Suppression,
    Topic,
    utcnow,
)

AFTER = timedelta(days=7)  # an unsubscribe this soon after receiving an issue is counted against it

# Where the team is warned, well before a provider acts: Amazon SES reviews an account at 5 % bounces (and
# auto-pause stops a send at AUTO_PAUSE_BOUNCE_RATE), Gmail and Yahoo want complaints under 0.3 %.
BOUNCE_WARNING = 0.02
COMPLAINT_WARNING = 0.001
WINDOW = timedelta(days=30)
ANSWERED = ("sent", "bounced", "failed")  # a server has answered for these messages


@dataclass(frozen=True)
class Figures:
    """Bounce and complaint figures against the messages that went (a server answered for them)."""

    sent: int
    hard_bounces: int
    soft_bounces: int
    complaints: int

    def _rate(self, count: int) -> float:
        return count / self.sent if self.sent else 0.0

    @property
    def bounce_rate(self) -> float:
        """Hard bounces against messages sent: what providers judge a sender by."""
        return self._rate(self.hard_bounces)

    @property
    def soft_bounce_rate(self) -> float:
        return self._rate(self.soft_bounces)

    @property
    def complaint_rate(self) -> float:
        return self._rate(self.complaints)

    @property
    def bounce_warning(self) -> bool:
        return self.sent > 0 and self.bounce_rate >= BOUNCE_WARNING

    @property
    def complaint_warning(self) -> bool:
        return self.sent > 0 and self.complaint_rate >= COMPLAINT_WARNING

    def as_dict(self) -> dict:
        return {
            "sent": self.sent,
            "hard_bounces": self.hard_bounces,
            "soft_bounces": self.soft_bounces,
            "complaints": self.complaints,
            "bounce_rate": round(self.bounce_rate, 6),
            "soft_bounce_rate": round(self.soft_bounce_rate, 6),
            "complaint_rate": round(self.complaint_rate, 6),
            "bounce_warning": self.bounce_warning,
            "complaint_warning": self.complaint_warning,
        }


def _figures(session: Session, issues) -> Figures:
    """The figures of the issues `issues` selects (a subquery of ids)."""
    counts = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.issue_id.in_(issues), Delivery.status.in_(ANSWERED))
            .group_by(Delivery.status)
        ).all()
    )
    events = dict(
        session.execute(
            select(FeedbackEvent.kind, func.count(func.distinct(FeedbackEvent.subscriber_id)))
            .where(
                FeedbackEvent.issue_id.in_(issues),
                (FeedbackEvent.kind == "complaint") | (FeedbackEvent.severity == "soft"),
            )
            .group_by(FeedbackEvent.kind)
        ).all()
    )
    return Figures(
        sent=sum(counts.values()),
        hard_bounces=counts.get("bounced", 0),
        soft_bounces=events.get("bounce", 0),
        complaints=events.get("complaint", 0),
    )


def issue_figures(session: Session, issue_id: int) -> Figures:
    """An issue's bounces (hard: the ledger says bounced, at RCPT time or by a later report; soft: people whose
    mailbox put it off) and complaints, against its messages that went."""
    return _figures(session, select(Issue.id).where(Issue.id == issue_id))


def recent_figures(session: Session, now: datetime | None = None) -> Figures:
    """The same over every issue whose send started in the last 30 days."""
    since = (now or utcnow()) - WINDOW
    return _figures(session, select(Issue.id).where(Issue.send_requested_at >= since))


def issue_stats(session: Session, issue: Issue) -> dict:
    counts = dict(
        session.execute(
            select(Delivery.status, func.count()).where(Delivery.issue_id == issue.id).group_by(Delivery.status)
        ).all()
    )
    sent_to = select(Delivery.subscriber_id).where(Delivery.issue_id == issue.id, Delivery.status == "sent")
    start = issue.send_requested_at or utcnow()
    unsubscribed = session.scalar(
        select(func.count(func.distinct(ConsentEvent.subscriber_id))).where(
            ConsentEvent.kind == "unsubscribe",
            ConsentEvent.subscriber_id.in_(sent_to),
            ConsentEvent.created_at >= start,
            ConsentEvent.created_at < start + AFTER,
        )
    )
    complaints = session.scalar(
        select(func.count())
        .select_from(Suppression)
        .join(Subscriber, Subscriber.email_hash == Suppression.email_hash)
        .where(
            Suppression.reason == "complained",
            Subscriber.id.in_(sent_to),
            Suppression.created_at >= start,
            Suppression.created_at < start + AFTER,
        )
    )
    return {
        "recipients": issue.recipient_count or 0,
        "sent": counts.get("sent", 0),
        "failed": counts.get("failed", 0),
        "bounced": counts.get("bounced", 0),
        "skipped": counts.get("skipped", 0) + counts.get("cancelled", 0),
        "pending": counts.get("pending", 0) + counts.get("sending", 0),
        "unsubscribed": unsubscribed or 0,
        "complaints": complaints or 0,
    }


def by_attribute(session: Session, issue: Issue, attribute: str) -> list[dict]:
    """Deliveries of the issue by the recipients' area or audience: who it reached and who it did not."""
    column = Subscriber.area if attribute == "area" else Subscriber.audience
    labels = area_names(session) if attribute == "area" else AUDIENCES
    rows = session.execute(
        select(
            column,
            func.count(),
            func.sum(case((Delivery.status == "sent", 1), else_=0)),
            func.sum(case((Delivery.status.in_(("failed", "bounced")), 1), else_=0)),
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue.id)
        .group_by(column)
    ).all()
    out = [
        {
            "label": labels.get(value, "Not given") if value else "Not given",
            "total": total,
            "sent": sent or 0,
            "failed": failed or 0,
        }
        for value, total, sent, failed in rows
    ]
    return sorted(out, key=lambda r: -r["total"])


@dataclass
class Week:
    start: datetime
    gained: int
    lost: int


def weekly_changes(session: Session, topic_id: int, weeks: int = 12, now: datetime | None = None) -> list[Week]:
    """Subscriptions to a topic started and ended in each of the last `weeks` weeks (Monday to Sunday, UTC)."""
    now = now or utcnow()
    this_monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [this_monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    # One pass over the topic's subscriptions: a gained and a lost sum for each week.
    columns = []
    for start in starts:
        end = start + timedelta(weeks=1)
        columns.append(
            func.sum(case((and_(Subscription.started_at >= start, Subscription.started_at < end), 1), else_=0))
        )
        columns.append(func.sum(case((and_(Subscription.ended_at >= start, Subscription.ended_at < end), 1), else_=0)))
    sums = session.execute(select(*columns).where(Subscription.topic_id == topic_id)).one()
    return [Week(start, sums[2 * i] or 0, sums[2 * i + 1] or 0) for i, start in enumerate(starts)]


def topic_overview(session: Session, weeks: int = 12) -> list[dict]:
    topics = session.scalars(select(Topic).order_by(Topic.position, Topic.id))  # retired ones too: history
    overview = []
    for topic in topics:
        current = session.scalar(
            select(func.count())
            .select_from(Subscription)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscription.topic_id == topic.id, Subscription.ended_at.is_(None), Subscriber.status == "active")
        )
        overview.append({"topic": topic, "current": current or 0, "weeks": weekly_changes(session, topic.id, weeks)})
    return overview
