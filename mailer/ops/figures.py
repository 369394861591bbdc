"""The figures /metrics and /healthz read, each a cheap query or a few Redis calls, computed when asked (so every
web process gives the same answer, whichever a scrape reaches).

Cheap on a big database because each reads only what is current: the ledger rows of the sends in progress
(through the (issue_id, status) index), the counts of the last 30 days' finished sends kept a few minutes in Redis
(Memo), the queued public requests, the sign-ups still pending (retention keeps them for UNCONFIRMED_DAYS), and the
issues table, which is small.
`bench/metrics_bench.py` measures a scrape on a million ledger rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime

import redis
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..models import Delivery, FeedbackEvent, Issue, PublicRequest, Subscriber, utcnow
from ..stats import ANSWERED, WINDOW, Figures
from . import beacons

IN_PROGRESS = ("sending", "paused")
# kombu's Redis transport keeps a queue's messages in one list per priority step: the queue's own name for the
# default priority, `<queue>\x06\x16<step>` for the others (kombu.transport.redis: PRIORITY_STEPS, sep).
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"


@dataclass(frozen=True)
class IssueCounts:
    """One send's ledger rows by status, and the people whose mailbox put it off or who complained about it."""

    by_status: dict[str, int]
    soft_bounces: int = 0
    complaints: int = 0


@dataclass(frozen=True)
class SendInProgress:
    issue_id: int
    kind: str
    status: str  # sending or paused
    by_status: dict[str, int]


@dataclass(frozen=True)
class DeliveryFigures:
    in_progress: list[SendInProgress]
    recent_by_status: dict[str, int]  # every row of the sends started in the last 30 days (and those in progress)
    send_rate: float | None  # messages a second the sends in progress sent lately (None: no earlier sample yet)
    feedback: Figures  # bounces and complaints of the sends started in the last 30 days


class Memo:
    """Finished sends' counts kept in Redis for FINISHED_FOR seconds, shared by every web process: a finished
    send's rows change only when a late report comes back, so it is counted again at most that often, not on
    every scrape. Redis away: nothing is kept, everything is counted."""

    PREFIX = "mailer:ops:issue-counts:"
    FINISHED_FOR = 600

    def __init__(self, client: redis.Redis | None):
        self.client = client

    def get(self, issue_ids: list[int]) -> dict[int, IssueCounts]:
        if not (self.client and issue_ids):
            return {}
        try:
            found = self.client.mget([self.PREFIX + str(i) for i in issue_ids])
        except redis.RedisError:
            return {}
        return {i: IssueCounts(**json.loads(raw)) for i, raw in zip(issue_ids, found, strict=True) if raw}

    def put(self, counts: dict[int, IssueCounts]) -> None:
        if not (self.client and counts):
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for issue_id, figures in counts.items():
                pipe.set(self.PREFIX + str(issue_id), json.dumps(vars(figures)), ex=self.FINISHED_FOR)
            pipe.execute()
        except redis.RedisError:
            pass

    SAMPLES = "mailer:ops:sent-samples"
    KEEP = 20
    # The rate is measured against the newest sample at least RATE_OVER seconds old; a sample is kept at most every
    # SAMPLE_EVERY seconds, however many processes and scrapers ask.
    RATE_OVER = 30.0
    SAMPLE_EVERY = 5.0

    def send_rate(self, sent: dict[int, int], now: float) -> float | None:
        """Messages a second the sends in progress sent since an earlier scrape's sample of their `sent` counts
        (kept in Redis, so any web process can compare with any other's): counting rows by their sent_at instead
        would read every sent row of a send. None until there is a sample at least a few seconds old."""
        if self.client is None:
            return None
        try:
            samples = [json.loads(raw) for raw in self.client.lrange(self.SAMPLES, 0, self.KEEP - 1)]
            newest_age = now - samples[0]["at"] if samples else None
            if newest_age is None or newest_age >= self.SAMPLE_EVERY:
                pipe = self.client.pipeline(transaction=False)
                pipe.lpush(self.SAMPLES, json.dumps({"at": now, "sent": {str(k): v for k, v in sent.items()}}))
                pipe.ltrim(self.SAMPLES, 0, self.KEEP - 1)
                pipe.execute()
        except (redis.RedisError, ValueError, KeyError, TypeError):
            return None
        old_enough = [x for x in samples if now - x["at"] >= self.RATE_OVER] or [
            x for x in samples if now - x["at"] >= self.SAMPLE_EVERY
        ]
        if not old_enough:
            return None
        then = old_enough[0]
        before = then.get("sent", {})
        gained = sum(max(0, count - before.get(str(issue), 0)) for issue, count in sent.items())
        return gained / (now - then["at"])


def issue_counts(session: Session, issue_ids: list[int]) -> dict[int, IssueCounts]:
    """Each send's rows by status (the (issue_id, status) index, nothing else read), and its soft bounces and
    complaints counted as the feedback room's figures count them (stats._figures: people, not reports)."""
    if not issue_ids:
        return {}
    by_status: dict[int, dict[str, int]] = {i: {} for i in issue_ids}
    rows = session.execute(
        select(Delivery.issue_id, Delivery.status, func.count())
        .where(Delivery.issue_id.in_(issue_ids))
        .group_by(Delivery.issue_id, Delivery.status)
    )
    for issue_id, status, count in rows:
        by_status[issue_id][status] = count
    events: dict[int, dict[str, int]] = {i: {} for i in issue_ids}
    heard = session.execute(
        select(FeedbackEvent.issue_id, FeedbackEvent.kind, func.count(func.distinct(FeedbackEvent.subscriber_id)))
        .where(
            FeedbackEvent.issue_id.in_(issue_ids),
            (FeedbackEvent.kind == "complaint") | (FeedbackEvent.severity == "soft"),
        )
        .group_by(FeedbackEvent.issue_id, FeedbackEvent.kind)
    )
    for issue_id, kind, people in heard:
        events[issue_id][kind] = people
    return {i: IssueCounts(by_status[i], events[i].get("bounce", 0), events[i].get("complaint", 0)) for i in issue_ids}


def deliveries(session: Session, memo: Memo | None = None, now: datetime | None = None) -> DeliveryFigures:
    """Ledger rows by status, for each send in progress and over the sends started in the last 30 days; the rate
    the sends in progress send at (Memo.send_rate); the 30-day bounce and complaint figures (stats.Figures, summed
    over the sends). Sends in progress are counted afresh; finished ones come from `memo` when it has them."""
    now = now or utcnow()
    memo = memo or Memo(None)
    sends = session.execute(
        select(Issue.id, Issue.kind, Issue.status, Issue.send_requested_at)
        .where(or_(Issue.send_requested_at >= now - WINDOW, Issue.status.in_(IN_PROGRESS)))
        .order_by(Issue.id)
    ).all()
    live = [row for row in sends if row.status in IN_PROGRESS]
    finished = [row.id for row in sends if row.status not in IN_PROGRESS]
    counts = issue_counts(session, [row.id for row in live])
    counts.update(memo.get(finished))
    fresh = issue_counts(session, [i for i in finished if i not in counts])
    memo.put(fresh)
    counts.update(fresh)

    recent: dict[str, int] = {}
    answered = hard = soft = complaints = 0
    for row in sends:
        figures = counts[row.id]
        for status, count in figures.by_status.items():
            recent[status] = recent.get(status, 0) + count
        if _started_within(row.send_requested_at, now):  # stats.recent_figures: the sends started in 30 days
            answered += sum(figures.by_status.get(status, 0) for status in ANSWERED)
            hard += figures.by_status.get("bounced", 0)
            soft += figures.soft_bounces
            complaints += figures.complaints
    live_sent = {row.id: counts[row.id].by_status.get("sent", 0) for row in live}
    return DeliveryFigures(
        in_progress=[SendInProgress(row.id, row.kind, row.status, counts[row.id].by_status) for row in live],
        recent_by_status=recent,
        send_rate=memo.send_rate(live_sent, time.time()),
        feedback=Figures(sent=answered, hard_bounces=hard, soft_bounces=soft, complaints=complaints),
    )


def _started_within(requested: datetime | None, now: datetime) -> bool:
    if requested is None:
        return False
    if requested.tzinfo is None:
        requested = requested.replace(tzinfo=now.tzinfo)
    return requested >= now - WINDOW


@dataclass(frozen=True)
class Waiting:
    """What the public is waiting for, in seconds (None: nothing waits)."""

    oldest_request: float | None  # a sign-up or link request no worker has acted on yet
    oldest_confirmation: float | None  # a confirmation mail asked for and not sent yet
    requests: int


def waiting(session: Session, now: datetime | None = None) -> Waiting:
    now = now or utcnow()
    oldest_request, requests = session.execute(
        select(func.min(PublicRequest.created_at), func.count()).select_from(PublicRequest)
    ).one()
    oldest_confirmation = session.scalar(
        select(func.min(Subscriber.confirm_requested_at)).where(
            Subscriber.status == "pending",
            Subscriber.confirm_requested_at.is_not(None),
            or_(Subscriber.confirm_sent_at.is_(None), Subscriber.confirm_sent_at < Subscriber.confirm_requested_at),
        )
    )
    return Waiting(
        oldest_request=_age(now, oldest_request),
        oldest_confirmation=_age(now, oldest_confirmation),
        requests=requests,
    )


def _age(now: datetime, then: datetime | None) -> float | None:
    if then is None:
        return None
    if then.tzinfo is None:  # SQLite hands back naive UTC
        then = then.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - then).total_seconds())


@dataclass(frozen=True)
class Queue:
    name: str
    waiting: int
    oldest_seconds: float | None  # how long its oldest waiting message has waited (None: empty, or unknown)
    last_started_seconds: float | None  # since a worker last started one of its tasks (None: never seen)


@dataclass(frozen=True)
class Machinery:
    """Celery as Redis shows it: each queue, and beat."""

    queues: list[Queue] = field(default_factory=list)
    beat_seconds: float | None = None  # since beat last sent a task (None: never seen)
    unacked: int = 0  # messages a worker holds and has not finished (acks late)


def queue_names() -> tuple[str, ...]:
    from ..tasks import BULK, IMPORTS, TRANSACTIONAL

    return (TRANSACTIONAL, BULK, IMPORTS)


def machinery(client: redis.Redis, now: float | None = None) -> Machinery:
    """Queue depths, oldest messages, the workers' and beat's marks, in one round trip and one per busy queue.
    Raises redis.RedisError when Redis does not answer."""
    now = now or time.time()
    names = queue_names()
    pipe = client.pipeline(transaction=False)
    for name in names:
        for step in PRIORITY_STEPS:
            pipe.llen(_key(name, step))
        pipe.get(beacons.STARTED + name)
    pipe.get(beacons.BEAT)
    pipe.hlen("unacked")
    answers = pipe.execute()
    per_queue = len(PRIORITY_STEPS) + 1
    queues = []
    for i, name in enumerate(names):
        lengths = answers[i * per_queue : i * per_queue + len(PRIORITY_STEPS)]
        started = answers[i * per_queue + len(PRIORITY_STEPS)]
        depth = sum(lengths)
        queues.append(
            Queue(
                name=name,
                waiting=depth,
                oldest_seconds=_oldest(client, name, lengths, now) if depth else None,
                last_started_seconds=_since(now, started),
            )
        )
    return Machinery(queues=queues, beat_seconds=_since(now, answers[-2]), unacked=answers[-1] or 0)


def _key(queue: str, step: int) -> str:
    return queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}"


def _oldest(client: redis.Redis, name: str, lengths: list[int], now: float) -> float | None:
    """The age of the oldest waiting message: kombu pushes on the left and takes from the right, so it is the
    last of the list (of the highest-priority list that has any)."""
    for step, length in zip(PRIORITY_STEPS, lengths, strict=True):
        if length:
            raw = client.lindex(_key(name, step), -1)
            try:
                published = json.loads(raw)["headers"][beacons.PUBLISHED_AT]
            except (TypeError, ValueError, KeyError):
                return None  # a message from before the stamp, or not one of ours
            return _since(now, published)
    return None


def _since(now: float, stamp) -> float | None:
    if stamp is None:
        return None
    try:
        return max(0.0, now - float(stamp))
    except (TypeError, ValueError):
        return None
