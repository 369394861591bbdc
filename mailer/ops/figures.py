"""The figures /metrics and /healthz read, each a cheap query or a few Redis calls, computed when asked (so every
web process gives the same answer, whichever a scrape reaches).

Cheap on a big database because each reads only what is current: the ledger rows of the sends in progress and
of the last 30 days (through the (issue_id, status) index), the queued public requests, the sign-ups still
pending (retention keeps them for UNCONFIRMED_DAYS), and the issues table, which is small.
`bench/metrics_bench.py` measures a scrape on a million ledger rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..models import Delivery, Issue, PublicRequest, Subscriber, utcnow
from ..stats import WINDOW, Figures, recent_figures
from . import beacons

IN_PROGRESS = ("sending", "paused")
SEND_RATE_WINDOW = timedelta(seconds=60)
# kombu's Redis transport keeps a queue's messages in one list per priority step: the queue's own name for the
# default priority, `<queue>\x06\x16<step>` for the others (kombu.transport.redis: PRIORITY_STEPS, sep).
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"


@dataclass(frozen=True)
class SendInProgress:
    issue_id: int
    kind: str
    status: str  # sending or paused
    by_status: dict[str, int]


@dataclass(frozen=True)
class DeliveryFigures:
    in_progress: list[SendInProgress]
    recent_by_status: dict[str, int]  # every row of the issues whose send started in the last 30 days
    sent_last_minute: int
    feedback: Figures  # bounces and complaints, 30 days (the feedback room's own figures)


def deliveries(session: Session, now: datetime | None = None) -> DeliveryFigures:
    """Ledger rows by status, for each send in progress and over the last 30 days; messages sent in the last
    minute by the sends in progress; the 30-day bounce and complaint figures."""
    now = now or utcnow()
    sends = session.execute(
        select(Issue.id, Issue.kind, Issue.status).where(Issue.status.in_(IN_PROGRESS)).order_by(Issue.id)
    ).all()
    live_ids = [row.id for row in sends]
    counts: dict[int, dict[str, int]] = {issue_id: {} for issue_id in live_ids}
    recent_ids = select(Issue.id).where(or_(Issue.send_requested_at >= now - WINDOW, Issue.status.in_(IN_PROGRESS)))
    recent: dict[str, int] = {}
    rows = session.execute(
        select(Delivery.issue_id, Delivery.status, func.count())
        .where(Delivery.issue_id.in_(recent_ids))
        .group_by(Delivery.issue_id, Delivery.status)
    )
    for issue_id, status, count in rows:
        recent[status] = recent.get(status, 0) + count
        if issue_id in counts:
            counts[issue_id][status] = count
    sent_last_minute = 0
    if live_ids:
        sent_last_minute = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.issue_id.in_(live_ids),
                Delivery.status == "sent",
                Delivery.sent_at >= now - SEND_RATE_WINDOW,
            )
        )
    return DeliveryFigures(
        in_progress=[SendInProgress(row.id, row.kind, row.status, counts[row.id]) for row in sends],
        recent_by_status=recent,
        sent_last_minute=sent_last_minute or 0,
        feedback=recent_figures(session, now),
    )


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
