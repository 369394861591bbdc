"""What happened after sending: per issue, by who people are, and subscribers gained and lost over time.

No tracking pixel and no link tracking: every figure here comes from the ledger and from what people did
(unsubscribing, complaining), which we know anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, select
from sqlalchemy.orm import Session

from .audience.segments import area_names
from .config import Deliverability
from .delivery import ledger
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
    TopicCount,
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
    events = _events(session, issues)
    return Figures(
        sent=sum(counts.values()),
        hard_bounces=counts.get("bounced", 0),
        soft_bounces=events.get("bounce", 0),
        complaints=events.get("complaint", 0),
    )


def _events(session: Session, issues) -> dict[str, int]:
    """People who complained, and people whose mailbox put a message off, about the issues `issues` selects."""
    return dict(
        session.execute(
            select(FeedbackEvent.kind, func.count(func.distinct(FeedbackEvent.subscriber_id)))
            .where(
                FeedbackEvent.issue_id.in_(issues),
                (FeedbackEvent.kind == "complaint") | (FeedbackEvent.severity == "soft"),
            )
            .group_by(FeedbackEvent.kind)
        ).all()
    )


def issue_figures(session: Session, issue_id: int) -> Figures:
    """An issue's bounces (hard: the ledger says bounced, at RCPT time or by a later report; soft: people whose
    mailbox put it off) and complaints, against its messages that went."""
    return _figures(session, select(Issue.id).where(Issue.id == issue_id))


def recent_figures(session: Session, now: datetime | None = None) -> Figures:
    """The same over every issue whose send started in the last 30 days. Their ledgers are read for the rows not
    sent (`ledger.planned_counts`): the sent ones are what the rest leave, so a month of big sends is a few
    index probes, not a count of every message (bench/home_bench.py)."""
    since = (now or utcnow()) - WINDOW
    issues = dict(
        session.execute(
            select(Issue.id, Issue.recipient_count).where(
                Issue.send_requested_at >= since, Issue.recipient_count.is_not(None)
            )
        ).all()
    )
    rows = ledger.planned_counts(session, issues)
    answered = {status: sum(counts[status] for counts in rows.values()) for status in ANSWERED}
    events = _events(session, select(Issue.id).where(Issue.send_requested_at >= since))
    return Figures(
        sent=sum(answered.values()),
        hard_bounces=answered["bounced"],
        soft_bounces=events.get("bounce", 0),
        complaints=events.get("complaint", 0),
    )


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


# --- what the team's home page shows ----------------------------------------------------------------------------

RECENT_SENDS = 5  # sent issues the home page shows with their figures


@dataclass(frozen=True)
class SentIssue:
    """A finished send and what happened to it. Delivered is what a receiving server accepted; opens are not
    counted (no tracking pixel), so there is no opened figure to show."""

    issue: Issue
    delivered: int
    figures: Figures


def recent_sends(session: Session, limit: int = RECENT_SENDS) -> list[SentIssue]:
    """The last `limit` issues whose send finished, newest first, each with its delivered, bounce and complaint
    figures: two grouped queries for all of them (the ledger's rows not sent, `ledger.planned_counts`, and the
    feedback events by (issue_id, kind)), not two an issue."""
    issues = list(
        session.scalars(
            select(Issue).where(Issue.status == "sent").order_by(Issue.finished_at.desc(), Issue.id.desc()).limit(limit)
        )
    )
    ids = [issue.id for issue in issues]
    if not ids:
        return []
    # A sent issue's ledger is planned: its sent rows are what the others leave (not 400,000 rows counted).
    ledgers = ledger.planned_counts(session, {issue.id: issue.recipient_count or 0 for issue in issues})
    counts = {(issue_id, status): n for issue_id, rows in ledgers.items() for status, n in rows.items()}
    events: dict[tuple[int, str], int] = {
        (issue_id, kind): n
        for issue_id, kind, n in session.execute(
            select(FeedbackEvent.issue_id, FeedbackEvent.kind, func.count(func.distinct(FeedbackEvent.subscriber_id)))
            .where(
                FeedbackEvent.issue_id.in_(ids),
                (FeedbackEvent.kind == "complaint") | (FeedbackEvent.severity == "soft"),
            )
            .group_by(FeedbackEvent.issue_id, FeedbackEvent.kind)
        )
    }
    return [
        SentIssue(
            issue,
            delivered=counts.get((issue.id, "sent"), 0),
            figures=Figures(
                sent=sum(counts.get((issue.id, status), 0) for status in ANSWERED),
                hard_bounces=counts.get((issue.id, "bounced"), 0),
                soft_bounces=events.get((issue.id, "bounce"), 0),
                complaints=events.get((issue.id, "complaint"), 0),
            ),
        )
        for issue in issues
    ]


@dataclass(frozen=True)
class Health:
    """Deliverability over the last 30 days against where the team is warned and where a send pauses itself
    (AUTO_PAUSE_BOUNCE_RATE, AUTO_PAUSE_COMPLAINT_RATE; 0 turns a check off)."""

    figures: Figures
    bounce_pause: float
    complaint_pause: float

    @property
    def bounce_over_pause(self) -> bool:
        return bool(self.bounce_pause) and self.figures.sent > 0 and self.figures.bounce_rate > self.bounce_pause

    @property
    def complaint_over_pause(self) -> bool:
        return (
            bool(self.complaint_pause) and self.figures.sent > 0 and self.figures.complaint_rate > self.complaint_pause
        )

    @property
    def healthy(self) -> bool:
        return not (self.figures.bounce_warning or self.figures.complaint_warning)


def deliverability_health(session: Session, policy: Deliverability, now: datetime | None = None) -> Health:
    """The 30-day figures (`recent_figures`) beside the auto-pause thresholds of `policy` (the settings')."""
    return Health(
        recent_figures(session, now),
        bounce_pause=policy.auto_pause_bounce_rate,
        complaint_pause=policy.auto_pause_complaint_rate,
    )


@dataclass(frozen=True)
class GrowthWeek:
    start: datetime
    gained: int
    lost: int
    total: int  # open subscriptions at the end of the week

    @property
    def net(self) -> int:
        return self.gained - self.lost


@dataclass(frozen=True)
class TopicGrowth:
    """A topic's open subscriptions now and week by week: what each week added and ended."""

    topic: Topic
    current: int
    weeks: list[GrowthWeek]

    @property
    def net(self) -> int:
        return sum(week.net for week in self.weeks)


def _week_starts(now: datetime, weeks: int) -> list[datetime]:
    this_monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return [this_monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


# How far back a count's moment is put: a subscription written by a transaction that began before the moment and
# committed after the count would be in neither the count nor what started since. No transaction here runs as long.
COUNT_MARGIN = timedelta(minutes=10)


def count_topics(session: Session, now: datetime | None = None) -> int:
    """Keep each topic's open subscriptions as of a moment (`TopicCount`): what `topic_growth` starts from. One
    grouped count (1.2 s at a million subscribers), run hourly by the retention job, never by a page. Returns how
    many topics were counted."""
    moment = (now or utcnow()) - COUNT_MARGIN
    counts = dict(
        session.execute(
            select(Subscription.topic_id, func.count())
            .where(
                Subscription.started_at < moment,
                Subscription.ended_at.is_(None) | (Subscription.ended_at >= moment),
            )
            .group_by(Subscription.topic_id)
        ).all()
    )
    topic_ids = list(session.scalars(select(Topic.id)))
    session.execute(delete(TopicCount))
    session.add_all(
        TopicCount(topic_id=topic_id, counted_at=moment, open_subscriptions=counts.get(topic_id, 0))
        for topic_id in topic_ids
    )
    session.flush()
    return len(topic_ids)


def _open_now(session: Session, topic_ids: list[int]) -> dict[int, int]:
    """Each topic's open subscriptions now: its kept count (`count_topics`) with what started since added and
    what ended since taken away (two ranges of the started/ended indexes); topics never counted (a new one, or
    before the first count) are counted here, one grouped count over just them."""
    kept = {row.topic_id: row for row in session.scalars(select(TopicCount))}
    current: dict[int, int] = {}
    for moment in {row.counted_at for row in kept.values()}:
        ids = [topic_id for topic_id, row in kept.items() if row.counted_at == moment]

        def since(column, ids=ids, moment=moment) -> dict[int, int]:
            return dict(
                session.execute(
                    select(Subscription.topic_id, func.count())
                    .where(column >= moment, Subscription.topic_id.in_(ids))
                    .group_by(Subscription.topic_id)
                ).all()
            )

        started, ended = since(Subscription.started_at), since(Subscription.ended_at)
        for topic_id in ids:
            current[topic_id] = kept[topic_id].open_subscriptions + started.get(topic_id, 0) - ended.get(topic_id, 0)
    uncounted = [topic_id for topic_id in topic_ids if topic_id not in current]
    if uncounted:
        current |= dict(
            session.execute(
                select(Subscription.topic_id, func.count())
                .where(Subscription.ended_at.is_(None), Subscription.topic_id.in_(uncounted))
                .group_by(Subscription.topic_id)
            ).all()
        )
    return current


def topic_growth(session: Session, weeks: int = 12, now: datetime | None = None) -> list[TopicGrowth]:
    """Every topic (the database's, in their order) with its open subscriptions now and, for each of the last
    `weeks` weeks (Monday to Sunday, UTC, this one so far), the subscriptions started and ended in it and how
    many were open at its end (now's count less the net change of the weeks after it).

    A few queries whatever the number of topics, each a range of an index of migration 0016 rather than a pass
    over every subscription a topic ever had: the open subscriptions now (`_open_now`: the hourly count and what
    changed since), and those started and those ended since the first week, by topic."""
    now = now or utcnow()
    starts = _week_starts(now, weeks)
    topics = list(session.scalars(select(Topic).order_by(Topic.position, Topic.id)))
    current = _open_now(session, [topic.id for topic in topics])

    def per_week(column) -> dict[int, list[int]]:
        sums = [
            func.sum(case((and_(column >= start, column < start + timedelta(weeks=1)), 1), else_=0)) for start in starts
        ]
        rows = session.execute(
            select(Subscription.topic_id, *sums).where(column >= starts[0]).group_by(Subscription.topic_id)
        )
        return {row[0]: [int(n or 0) for n in row[1:]] for row in rows}

    gained, lost = per_week(Subscription.started_at), per_week(Subscription.ended_at)
    out = []
    for topic in topics:
        ups, downs = gained.get(topic.id, [0] * weeks), lost.get(topic.id, [0] * weeks)
        total = current.get(topic.id, 0)
        history: list[GrowthWeek] = []
        for i in range(weeks - 1, -1, -1):
            history.append(GrowthWeek(starts[i], ups[i], downs[i], total))
            total -= ups[i] - downs[i]
        out.append(TopicGrowth(topic, current.get(topic.id, 0), history[::-1]))
    return out
