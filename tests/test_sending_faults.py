"""The delivery engine under faults, with its own redis-server and Celery worker processes per test.

Every recipient ends sent (or skipped/cancelled for a reason) whatever happens: a worker SIGKILLed
mid-send, Redis restarted, a pause, a cancel, an unsubscribe in the middle of a send. Counts are taken
from what the SMTP server received, not from our own ledger.
"""

from __future__ import annotations

import collections
import time

import pytest
from sqlalchemy import func, select

from conftest import free_port, wait_until
from mailer.compose.issues import cancel_issue, create_issue, pause_issue, request_send, resume_issue
from mailer.delivery import ledger
from mailer.models import Delivery, Issue, Subscriber
from support.cluster import RedisProcess, WorkerProcess, make_audience
from support.flows import approve_for_sending, issue_input, path_of

pytestmark = pytest.mark.faults
CHUNK = 100  # rows a worker claims at a time: the most a killed worker can repeat


class Cluster:
    def __init__(self, test_env, tmp_path, settings, **worker_env):
        self.redis = RedisProcess(free_port(), tmp_path / "redis").start()
        self.env = {
            **test_env,
            "REDIS_URL": self.redis.url,
            "LEASE_SECONDS": "3",
            "STALL_SECONDS": "2",
            "BATCH_SIZE": "200",
            **worker_env,
        }
        self.tmp_path = tmp_path
        self.settings = settings.with_overrides(
            redis_url=self.redis.url, lease_seconds=3, stall_seconds=2, batch_size=200
        )
        self.workers: list[WorkerProcess] = []

    def worker(self, queues="bulk", concurrency=2, name="bulk") -> WorkerProcess:
        proc = WorkerProcess(self.env, queues, concurrency, name, self.tmp_path / f"{name}.log").start()
        self.workers.append(proc)
        return proc

    def app(self):
        from mailer.web import create_app

        return create_app(self.settings)

    def close(self):
        for proc in self.workers:
            proc.stop()
        self.redis.stop()


@pytest.fixture()
def cluster_factory(test_env, tmp_path, settings):
    made = []

    def make(**worker_env):
        made.append(Cluster(test_env, tmp_path, settings, **worker_env))
        return made[-1]

    yield make
    for cluster in made:
        cluster.close()


def _start_send(db, topic="trust-matters") -> int:
    from mailer.tasks import enqueue, plan_issue

    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject="Project Fusion: progress", body="On track.", topic=topic))
        approve_for_sending(s, issue.id)
        request_send(s, issue.id)
        issue_id = issue.id
    assert enqueue(plan_issue, issue_id)
    return issue_id


def _status(db, issue_id) -> str:
    with db.transaction() as s:
        return s.get(Issue, issue_id).status


def _sweep_until_sent(db, issue_id, timeout=120):
    """What beat does every 30 s, done every half second so the test does not wait for beat."""
    from mailer.tasks import sweep

    def done():
        sweep()
        return _status(db, issue_id) == "sent"

    wait_until(done, timeout, interval=0.5, message=f"issue {issue_id} to be sent")


def _received(smtp_server, emails) -> collections.Counter:
    wanted = set(emails)
    with smtp_server.lock:
        return collections.Counter(r for m in smtp_server.received for r in m.rcpt_tos if r in wanted)


def _sent_count(smtp_server) -> int:
    with smtp_server.lock:
        return len(smtp_server.received)


def test_a_worker_killed_mid_send_loses_nobody(cluster_factory, db, smtp_server):
    emails = make_audience(db, 1500)
    cluster = cluster_factory(SEND_RATE="300")
    cluster.app()
    first = cluster.worker()
    issue_id = _start_send(db)
    wait_until(lambda: _sent_count(smtp_server) >= 300, 60, message="the send to get going")
    first.kill()  # SIGKILL to the worker and its pool: no chance to record anything
    before = _sent_count(smtp_server)
    assert before < len(emails), "the send finished before the kill; raise the audience or lower SEND_RATE"
    cluster.worker(name="bulk-2")
    _sweep_until_sent(db, issue_id)

    got = _received(smtp_server, emails)
    assert set(got) == set(emails)  # nobody lost
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= 2 * CHUNK  # at most the chunk each of the two pool processes had in flight
    with db.transaction() as s:
        assert s.scalar(select(func.count()).where(Delivery.issue_id == issue_id, Delivery.status == "sent")) == len(
            emails
        )


def test_redis_restarted_mid_send_loses_nobody(cluster_factory, db, smtp_server):
    emails = make_audience(db, 1200)
    cluster = cluster_factory(SEND_RATE="300")
    cluster.app()
    cluster.worker()
    issue_id = _start_send(db)
    wait_until(lambda: _sent_count(smtp_server) >= 200, 60, message="the send to get going")
    cluster.redis.stop()
    time.sleep(1.0)
    cluster.redis.start()  # same port, same append-only file
    _sweep_until_sent(db, issue_id)
    got = _received(smtp_server, emails)
    assert set(got) == set(emails)
    assert sum(n - 1 for n in got.values()) <= 2 * CHUNK


def test_pause_then_resume_sends_everyone_exactly_once(cluster_factory, db, smtp_server):
    emails = make_audience(db, 800)
    cluster = cluster_factory(SEND_RATE="200")
    cluster.app()
    cluster.worker()
    issue_id = _start_send(db)
    wait_until(lambda: _sent_count(smtp_server) >= 100, 60, message="the send to get going")
    with db.transaction() as s:
        pause_issue(s, issue_id)
    time.sleep(2.0)  # what was in flight finishes
    paused_at = _sent_count(smtp_server)
    time.sleep(2.0)
    assert _sent_count(smtp_server) == paused_at < len(emails)  # nothing more while paused
    with db.transaction() as s:
        resume_issue(s, issue_id)
    from mailer.tasks import enqueue, plan_issue

    enqueue(plan_issue, issue_id)
    _sweep_until_sent(db, issue_id)
    got = _received(smtp_server, emails)
    twice = sorted(e for e, n in got.items() if n > 1)
    with db.transaction() as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.id, Delivery.attempts, Delivery.last_error)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Subscriber.email.in_(twice[:5]))
        ).all()
    assert set(got) == set(emails) and not twice, (len(twice), rows)


def test_cancel_stops_the_send_and_marks_the_rest_cancelled(cluster_factory, db, smtp_server):
    emails = make_audience(db, 800)
    cluster = cluster_factory(SEND_RATE="200")
    cluster.app()
    cluster.worker()
    issue_id = _start_send(db)
    wait_until(lambda: _sent_count(smtp_server) >= 100, 60, message="the send to get going")
    with db.transaction() as s:
        cancel_issue(s, issue_id)
    time.sleep(2.0)
    after_cancel = _sent_count(smtp_server)
    time.sleep(2.0)
    assert _sent_count(smtp_server) == after_cancel < len(emails)
    with db.transaction() as s:
        counts = ledger.status_counts(s, issue_id)
        assert s.get(Issue, issue_id).status == "cancelled"
    assert counts["pending"] == 0 and counts["cancelled"] > 0
    assert counts["sent"] == after_cancel and counts["sent"] + counts["cancelled"] == len(emails)


def test_one_click_unsubscribe_during_a_send_stops_the_rest_for_that_address(cluster_factory, db, smtp_server):
    emails = make_audience(db, 800)
    cluster = cluster_factory(SEND_RATE="200")
    app = cluster.app()
    cluster.worker()
    issue_id = _start_send(db)
    wait_until(lambda: _sent_count(smtp_server) >= 100, 60, message="the send to get going")
    last = emails[-1]  # the last row in the ledger: not sent yet
    with db.transaction() as s:
        subscriber_id, public_id = s.execute(
            select(Subscriber.id, Subscriber.public_id).where(Subscriber.email_key == last)
        ).one()
    links = app.extensions["mailer"].links
    url = links.unsubscribe_url(public_id, 1)
    response = app.test_client().post(
        path_of(url.replace(cluster.settings.base_url, "http://mailer.test")), data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    _sweep_until_sent(db, issue_id)
    got = _received(smtp_server, emails)
    assert last not in got
    assert set(got) == set(emails) - {last}
    with db.transaction() as s:
        row = s.scalar(select(Delivery).where(Delivery.issue_id == issue_id, Delivery.subscriber_id == subscriber_id))
        assert row.status == "skipped"


def test_a_confirmation_is_not_stuck_behind_a_bulk_send(cluster_factory, db, smtp_server):
    emails = make_audience(db, 10_000)
    cluster = cluster_factory()
    app = cluster.app()
    cluster.worker(queues="bulk", concurrency=1, name="bulk")
    cluster.worker(queues="transactional", concurrency=1, name="tx")
    issue_id = _start_send(db)
    wait_until(lambda: _sent_count(smtp_server) >= 200, 60, message="the bulk send to get going")

    from support.flows import subscribe

    client = app.test_client()
    assert subscribe(client, "urgent@example.org").status_code == 303
    smtp_server.wait_for("urgent@example.org", timeout=30)
    with db.transaction() as s:
        pending = s.scalar(
            select(func.count()).where(Delivery.issue_id == issue_id, Delivery.status.in_(("pending", "sending")))
        )
    # The confirmation arrived while thousands of bulk messages were still waiting their turn.
    assert pending > 1000, f"only {pending} bulk messages were left when the confirmation arrived"
    _sweep_until_sent(db, issue_id, timeout=240)
    assert set(_received(smtp_server, emails)) == set(emails)
