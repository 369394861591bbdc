"""/metrics in Prometheus's text format (prometheus-client writes it), computed at scrape time by one collector
from the database and Redis (figures.py), so every web process answers the same and nothing is counted in a
process that may be one of several. The process's own figures (memory, CPU) are left to the host's exporter.
"""

from __future__ import annotations

import time

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from ..db import Database
from ..models.deliveries import DELIVERY_STATUSES
from . import beacons
from .figures import Memo, deliveries, machinery, waiting


def _gauge(name: str, documentation: str, value: float | None = None, labels: tuple[str, ...] = ()):
    family = GaugeMetricFamily(name, documentation, labels=list(labels) or None)
    if value is not None:
        family.add_metric([], value)
    return family


class MailerCollector:
    """The mailer's figures, read afresh on each collect()."""

    def __init__(self, db: Database, redis_url: str):
        self.db, self.redis_url = db, redis_url

    def collect(self):
        started = time.perf_counter()
        up = GaugeMetricFamily("mailer_up", "1 if that part answered this scrape, else 0", labels=["part"])
        try:
            yield from self._database(Memo(beacons.client(self.redis_url)))
            up.add_metric(["database"], 1)
        except SQLAlchemyError:
            up.add_metric(["database"], 0)
        try:
            yield from self._celery()
            up.add_metric(["redis"], 1)
        except redis.RedisError:
            up.add_metric(["redis"], 0)
        yield up
        yield _gauge("mailer_scrape_duration_seconds", "How long this scrape took", time.perf_counter() - started)

    def _database(self, memo: Memo):
        with self.db.sessions() as session:
            found = deliveries(session, memo)
            queue = waiting(session)
        per_send = GaugeMetricFamily(
            "mailer_send_deliveries",
            "Ledger rows of each send in progress (sending or paused), by row status",
            labels=["issue", "kind", "send_status", "status"],
        )
        in_progress = GaugeMetricFamily("mailer_sends_in_progress", "Sends in progress", labels=["status"])
        for status in ("sending", "paused"):
            in_progress.add_metric([status], sum(1 for s in found.in_progress if s.status == status))
        for send in found.in_progress:
            for status in DELIVERY_STATUSES:
                per_send.add_metric([str(send.issue_id), send.kind, send.status, status], send.by_status.get(status, 0))
        recent = GaugeMetricFamily(
            "mailer_deliveries_30d",
            "Ledger rows of the sends started in the last 30 days (and any still in progress), by status; "
            "a finished send's are counted again every 10 minutes",
            labels=["status"],
        )
        for status in DELIVERY_STATUSES:
            recent.add_metric([status], found.recent_by_status.get(status, 0))
        yield per_send
        yield in_progress
        yield recent
        yield _gauge(
            "mailer_send_rate_per_second",
            "Messages the sends in progress sent a second since a scrape 30 s or more before (absent: none yet)",
            found.send_rate,
        )
        figures = found.feedback
        yield _gauge("mailer_messages_answered_30d", "Messages a server answered for, last 30 days", figures.sent)
        yield _gauge("mailer_bounce_rate_30d", "Hard bounces per message answered, last 30 days", figures.bounce_rate)
        yield _gauge(
            "mailer_soft_bounce_rate_30d",
            "People whose mailbox put mail off, per message, 30 days",
            figures.soft_bounce_rate,
        )
        yield _gauge(
            "mailer_complaint_rate_30d", "Spam complaints per message answered, last 30 days", figures.complaint_rate
        )
        yield _gauge(
            "mailer_public_requests_waiting", "Sign-ups and link requests no worker has acted on", queue.requests
        )
        yield _gauge(
            "mailer_public_request_oldest_seconds",
            "Age of the oldest sign-up or link request no worker has acted on (0: none waits)",
            queue.oldest_request or 0,
        )
        yield _gauge(
            "mailer_confirmation_oldest_pending_seconds",
            "Age of the oldest confirmation mail asked for and not sent yet (0: none waits)",
            queue.oldest_confirmation or 0,
        )

    def _celery(self):
        found = machinery(beacons.client(self.redis_url))
        length = GaugeMetricFamily(
            "mailer_queue_length", "Task messages waiting in each Celery queue", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "mailer_queue_oldest_seconds", "How long the oldest waiting message has waited (0: empty)", labels=["queue"]
        )
        started = GaugeMetricFamily(
            "mailer_queue_last_started_seconds",
            "Seconds since a worker last started a task from the queue (absent: never seen)",
            labels=["queue"],
        )
        for queue in found.queues:
            length.add_metric([queue.name], queue.waiting)
            oldest.add_metric([queue.name], queue.oldest_seconds or 0)
            if queue.last_started_seconds is not None:
                started.add_metric([queue.name], queue.last_started_seconds)
        yield length
        yield oldest
        yield started
        yield _gauge("mailer_tasks_unacknowledged", "Task messages workers hold and have not finished", found.unacked)
        yield _gauge(
            "mailer_beat_last_run_seconds",
            "Seconds since beat last sent a task (it sends the sweep every 30 s; absent: never seen)",
            found.beat_seconds,
        )


def exposition(db: Database, redis_url: str) -> bytes:
    """One scrape's answer."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MailerCollector(db, redis_url))
    return generate_latest(registry)
