"""/metrics: behind METRICS_TOKEN, read at scrape time from the database and Redis: a send's progress, the 30-day
figures, what the public waits for, each Celery queue's depth and oldest message, beat's last run."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
import time_machine
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from conftest import free_port
from mailer.models import Delivery, Issue, PublicRequest, Subscriber, Topic, utcnow
from mailer.ops import beacons
from mailer.tasks import enqueue, plan_issue, send_confirmation, send_test
from mailer.web import create_app
from support.private_redis import PrivateRedis

TOKEN = "metrics-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def private_redis():
    server = PrivateRedis(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_marks_of_earlier_tests(redis_url):
    """Counts and samples kept in the test Redis by an earlier test name issue ids this test's database reuses."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("mailer:ops:*"):
        client.delete(key)


def _client(settings, **changes):
    ops = settings.operations.__class__(**{**vars(settings.operations), "metrics_token": TOKEN})
    app = create_app(settings.with_overrides(operations=ops, **changes))
    app.config["TESTING"] = True
    return app.test_client()


def scrape(client) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200, answer.data
    assert answer.content_type.startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_are_not_there_without_a_token_and_refused_with_a_wrong_one(settings, client):
    assert client.get("/metrics").status_code == 404  # METRICS_TOKEN unset
    guarded = _client(settings)
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = guarded.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"mailer_" not in refused.data
    assert guarded.get("/metrics", headers=AUTH).status_code == 200


def _send_in_progress(db) -> int:
    """An issue half-way through its send: 3 sent in the last minute, 1 sent an hour ago, 1 bounced, 2 pending."""
    now = utcnow()
    with db.transaction() as s:
        topic = s.scalar(select(Topic).where(Topic.slug == "trust-matters"))
        done = Issue(subject="Last month", body="x", topic_id=topic.id, status="sent", send_requested_at=now)
        issue = Issue(subject="November", body="x", topic_id=topic.id, status="sending", send_requested_at=now)
        old = Issue(subject="Last year", body="x", topic_id=topic.id, status="sent")
        s.add_all([done, issue, old])
        s.flush()
        old.send_requested_at = now - timedelta(days=40)
        people = [Subscriber(email_hash=f"{i:064x}", status="active") for i in range(8)]
        s.add_all(people)
        s.flush()
        rows = [("sent", now - timedelta(seconds=5))] * 3 + [("sent", now - timedelta(hours=1)), ("bounced", None)]
        rows += [("pending", None)] * 2
        for person, (status, sent_at) in zip(people, rows, strict=False):
            s.add(Delivery(issue_id=issue.id, subscriber_id=person.id, status=status, sent_at=sent_at))
        s.add(Delivery(issue_id=done.id, subscriber_id=people[0].id, status="sent", sent_at=now - timedelta(days=2)))
        s.add(Delivery(issue_id=old.id, subscriber_id=people[0].id, status="sent", sent_at=now - timedelta(days=40)))
        # Someone waiting for their confirmation mail for ten minutes, and a sign-up no worker has acted on.
        s.add(Subscriber(email_hash="f" * 64, status="pending", confirm_requested_at=now - timedelta(minutes=10)))
        s.add(PublicRequest(kind="subscribe", payload={}, created_at=now - timedelta(minutes=3)))
        return issue.id


def test_metrics_show_a_send_in_progress_and_the_30_day_figures(settings, db):
    issue_id = _send_in_progress(db)
    found = scrape(_client(settings))
    live = {"issue": str(issue_id), "kind": "newsletter", "send_status": "sending"}

    def send(status):
        return found[("mailer_send_deliveries", tuple(sorted({**live, "status": status}.items())))]

    assert (send("sent"), send("bounced"), send("pending"), send("failed")) == (4, 1, 2, 0)
    assert found[("mailer_sends_in_progress", (("status", "sending"),))] == 1
    # The month's rows: this send's and the one finished two days ago, not last year's.
    assert found[("mailer_deliveries_30d", (("status", "sent"),))] == 5
    assert found[("mailer_deliveries_30d", (("status", "pending"),))] == 2
    assert ("mailer_send_rate_per_second", ()) not in found  # no earlier scrape to measure against
    assert found[("mailer_messages_answered_30d", ())] == 6
    assert found[("mailer_bounce_rate_30d", ())] == pytest.approx(1 / 6)
    assert found[("mailer_complaint_rate_30d", ())] == 0
    assert found[("mailer_public_requests_waiting", ())] == 1
    assert 170 < found[("mailer_public_request_oldest_seconds", ())] < 3600
    assert 590 < found[("mailer_confirmation_oldest_pending_seconds", ())] < 3600
    assert found[("mailer_up", (("part", "database"),))] == 1

    # Two more go out; a scrape 40 s later measures the rate against the first one's sample.
    with db.transaction() as s:
        for row in s.scalars(select(Delivery).where(Delivery.issue_id == issue_id, Delivery.status == "pending")):
            row.status, row.sent_at = "sent", utcnow()
    with time_machine.travel(utcnow() + timedelta(seconds=40)):
        later = scrape(_client(settings))
    assert later[("mailer_send_rate_per_second", ())] == pytest.approx(2 / 40, rel=0.05)
    assert later[("mailer_send_deliveries", tuple(sorted({**live, "status": "sent"}.items())))] == 6


def test_metrics_count_each_queue_and_age_its_oldest_message(settings, private_redis):
    client = _client(settings, redis_url=private_redis.url)  # a broker no worker listens to
    assert enqueue(send_test, 1, ["team@example.nhs.uk"]) and enqueue(send_confirmation, 2)
    assert enqueue(plan_issue, 3)
    private_redis.client().set(beacons.BEAT, repr(utcnow().timestamp() - 42))
    found = scrape(client)
    assert found[("mailer_queue_length", (("queue", "transactional"),))] == 2
    assert found[("mailer_queue_length", (("queue", "bulk"),))] == 1
    assert found[("mailer_queue_length", (("queue", "imports"),))] == 0
    assert 40 < found[("mailer_beat_last_run_seconds", ())] < 600
    assert found[("mailer_up", (("part", "redis"),))] == 1
    with time_machine.travel(utcnow() + timedelta(minutes=5)):
        later = scrape(client)
    assert 299 < later[("mailer_queue_oldest_seconds", (("queue", "transactional"),))] < 600
    assert later[("mailer_queue_oldest_seconds", (("queue", "imports"),))] == 0
    # Nobody's address is in the answer, though one waits in a queued message.
    assert b"example.nhs.uk" not in client.get("/metrics", headers=AUTH).data


def test_a_scrape_still_answers_when_redis_does_not(settings):
    found = scrape(_client(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    assert found[("mailer_up", (("part", "redis"),))] == 0
    assert found[("mailer_up", (("part", "database"),))] == 1
    assert ("mailer_deliveries_30d", (("status", "sent"),)) in found
