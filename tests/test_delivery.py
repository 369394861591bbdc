"""The delivery engine's services against a real SMTP server: ledger, retries, refusals, recovery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailer.audience.segments import topic_audience
from mailer.audience.subscriptions import confirm_subscription, request_subscription, unsubscribe
from mailer.compose.issues import create_issue, request_send
from mailer.compose.mail import compile_issue
from mailer.delivery import dispatch, ledger
from mailer.delivery.sender import send_batch
from mailer.models import Delivery, Issue, Subscriber, Suppression, utcnow
from mailer.transports import SmtpTransport
from support.flows import approve_for_sending, issue_input


@pytest.fixture()
def readers(db):
    emails = [f"reader{i}@example.org" for i in range(12)]
    with db.transaction() as s:
        ids = []
        for email in emails:
            outcome = request_subscription(s, email=email, topic_slugs=["project-fusion"])
            confirm_subscription(s, outcome.request_id)
            ids.append(outcome.subscriber_id)
    return dict(zip(emails, ids, strict=True))


@pytest.fixture()
def issue_id(db, readers):
    with db.transaction() as s:
        written = issue_input(s, subject="Progress update", body="We are on track.", topic="project-fusion")
        issue = create_issue(s, written)
        approve_for_sending(s, issue.id)
        request_send(s, issue.id)
        return issue.id


def _plan(db, issue_id, batch_size=5):
    return dispatch.plan_issue(db, issue_id, lambda issue: topic_audience(issue.topic_id), batch_size)


def _send(db, settings, smtp_server, issue_id, lo, hi):
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        message = compile_issue(issue, settings)
        topic_id = issue.topic_id
    transport = SmtpTransport(f"smtp://127.0.0.1:{smtp_server.port}")
    try:
        return send_batch(
            db,
            issue_id=issue_id,
            lo=lo,
            hi=hi,
            eligible=topic_audience(topic_id),
            message=message,
            recipient_fields=lambda c: {
                "to": c.email,
                "message_id": f"issue-{issue_id}.{c.subscriber_id}@test",
                "list_unsubscribe": "https://x/u/t",
                "unsubscribe_url": "https://x/u/t",
            },
            transport=transport,
            lease_seconds=60,
            chunk=3,
        )
    finally:
        transport.close()


def _statuses(db, issue_id):
    with db.transaction() as s:
        return {d.subscriber_id: d.status for d in s.scalars(select(Delivery).where(Delivery.issue_id == issue_id))}


def test_planning_twice_adds_no_rows_and_ranges_cover_everyone(db, issue_id, readers):
    ranges = _plan(db, issue_id)
    assert len(ranges) == 3  # 12 people in batches of 5
    with db.transaction() as s:
        s.get(Issue, issue_id).planned_at = None  # as if a second plan task ran before the first was recorded
    _plan(db, issue_id)
    assert sorted(_statuses(db, issue_id)) == sorted(readers.values())
    with db.transaction() as s:
        ids = sorted(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))
    covered = sorted(i for lo, hi in ranges for i in ids if lo <= i <= hi)
    assert covered == ids


def test_a_range_is_claimed_once(db, issue_id):
    [(lo, hi), *_] = _plan(db, issue_id, batch_size=100)
    with db.transaction() as s:
        first, _ = ledger.claim_batch(s, issue_id, lo, hi, eligible=topic_audience(2), lease_seconds=60, token="a")
    with db.transaction() as s:
        second, _ = ledger.claim_batch(s, issue_id, lo, hi, eligible=topic_audience(2), lease_seconds=60, token="b")
    assert len(first) == 12 and second == []


def test_everyone_gets_it_once_and_the_issue_finishes(db, settings, smtp_server, issue_id, readers):
    for lo, hi in _plan(db, issue_id):
        _send(db, settings, smtp_server, issue_id, lo, hi)
        dispatch.after_batch(db, issue_id)
    for email in readers:
        assert len(smtp_server.messages_to(email)) == 1
    with db.transaction() as s:
        assert s.get(Issue, issue_id).status == "sent"


def test_unsubscribing_after_planning_skips_the_row(db, settings, smtp_server, issue_id, readers):
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    with db.transaction() as s:
        unsubscribe(s, readers["reader3@example.org"], None)
    assert _statuses(db, issue_id)[readers["reader3@example.org"]] == "skipped"  # at once, before any batch
    report = _send(db, settings, smtp_server, issue_id, lo, hi)
    assert report.claimed == 11 and report.sent == 11
    assert smtp_server.messages_to("reader3@example.org") == []
    assert _statuses(db, issue_id)[readers["reader3@example.org"]] == "skipped"


def test_temporary_refusal_is_retried_later_and_then_arrives(db, settings, smtp_server, issue_id, readers):
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    smtp_server.refuse("reader5@example.org", "451 4.3.0 Try again later")
    report = _send(db, settings, smtp_server, issue_id, lo, hi)
    assert report.sent == 11 and report.retried == 1
    with db.transaction() as s:
        row = s.scalar(select(Delivery).where(Delivery.subscriber_id == readers["reader5@example.org"]))
        assert row.status == "pending" and row.attempts == 1 and "451" in row.last_error
        assert row.next_attempt_at > utcnow()
        row.next_attempt_at = utcnow() - timedelta(seconds=1)  # the backoff has passed
    smtp_server.rcpt_replies.clear()
    report = _send(db, settings, smtp_server, issue_id, lo, hi)
    assert report.sent == 1
    assert len(smtp_server.messages_to("reader5@example.org")) == 1


def test_permanent_refusal_fails_the_row_and_suppresses_the_address(db, settings, smtp_server, issue_id, readers):
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    smtp_server.refuse("reader7@example.org", "550 5.1.1 No such user")
    report = _send(db, settings, smtp_server, issue_id, lo, hi)
    assert report.bounced == 1 and report.hard_bounces == [readers["reader7@example.org"]]
    from mailer.audience.suppression import suppress

    with db.transaction() as s:
        suppress(s, report.hard_bounces, "bounced")
    with db.transaction() as s:
        row = s.scalar(select(Delivery).where(Delivery.subscriber_id == readers["reader7@example.org"]))
        assert row.status == "bounced" and row.last_error.startswith("550")
        assert s.get(Subscriber, readers["reader7@example.org"]).status == "bounced"
        assert s.scalar(select(Suppression.reason)) == "bounced"
        # Never planned again for the next issue.
        assert readers["reader7@example.org"] not in set(s.scalars(topic_audience(2)))


def test_subscriber_gone_between_planning_and_claim_is_skipped_by_the_claim(
    db, settings, smtp_server, issue_id, readers
):
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    with db.transaction() as s:  # suppressed by another route (a complaint) without touching the ledger
        s.add(Suppression(email_hash=s.get(Subscriber, readers["reader1@example.org"]).email_hash, reason="complained"))
    report = _send(db, settings, smtp_server, issue_id, lo, hi)
    assert report.skipped == 1 and report.sent == 11
    assert smtp_server.messages_to("reader1@example.org") == []


def test_refused_content_or_relay_fails_the_row_but_suppresses_nobody(db, settings, smtp_server, issue_id, readers):
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    smtp_server.refuse_content("reader2@example.org", "550 5.7.1 Message rejected as spam")
    smtp_server.refuse("reader4@example.org", "550 5.7.1 Relaying denied")
    report = _send(db, settings, smtp_server, issue_id, lo, hi)
    assert report.failed == 2 and report.bounced == 0 and report.hard_bounces == []
    statuses = _statuses(db, issue_id)
    assert statuses[readers["reader2@example.org"]] == statuses[readers["reader4@example.org"]] == "failed"
    with db.transaction() as s:
        assert s.scalar(select(Suppression.id)) is None
        assert s.get(Subscriber, readers["reader2@example.org"]).status == "active"


def test_a_recipient_that_always_times_out_fails_after_max_attempts_and_the_rest_go(
    db, settings, smtp_server, issue_id, readers
):
    """A connection lost while sending one message counts as that recipient's try; the others still go."""
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    smtp_server.refuse("reader0@example.org", "421 4.4.2 Closing connection")
    for _ in range(ledger.MAX_ATTEMPTS):
        _send(db, settings, smtp_server, issue_id, lo, hi)
        with db.transaction() as s:
            for row in s.scalars(select(Delivery).where(Delivery.status == "pending")):
                row.next_attempt_at = None  # the backoff has passed
    statuses = _statuses(db, issue_id)
    assert statuses.pop(readers["reader0@example.org"]) == "failed"
    assert set(statuses.values()) == {"sent"}


def test_a_worker_whose_lease_expired_cannot_overwrite_the_new_holder(db, issue_id):
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    with db.transaction() as s:
        old, _ = ledger.claim_batch(s, issue_id, lo, hi, eligible=topic_audience(2), lease_seconds=60, token="old")
    with db.transaction() as s:  # the lease expires; the sweeper gives the rows back; a new worker takes them
        for row in s.scalars(select(Delivery)):
            row.lease_until = utcnow() - timedelta(seconds=1)
        ledger.requeue_expired_leases(s)
    with db.transaction() as s:
        new, _ = ledger.claim_batch(s, issue_id, lo, hi, eligible=topic_audience(2), lease_seconds=60, token="new")
    with db.transaction() as s:
        ledger.mark_failed(s, [(c, "failed", "late result") for c in old], "old")
        ledger.mark_sent(s, [c.delivery_id for c in new], "new")
    assert set(_statuses(db, issue_id).values()) == {"sent"}


def test_rows_of_a_worker_that_died_come_back_and_are_sent(db, settings, smtp_server, issue_id, readers):
    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    with db.transaction() as s:  # a worker claims the batch, then is killed before sending anything
        claimed, _ = ledger.claim_batch(
            s, issue_id, lo, hi, eligible=topic_audience(2), lease_seconds=60, token="dead", limit=100
        )
    assert len(claimed) == 12
    assert _send(db, settings, smtp_server, issue_id, lo, hi).claimed == 0  # leased: nobody else takes them

    with db.transaction() as s:  # time passes beyond the lease and the issue goes quiet
        for row in s.scalars(select(Delivery).where(Delivery.issue_id == issue_id)):
            row.lease_until = utcnow() - timedelta(seconds=1)
        s.get(Issue, issue_id).heartbeat_at = utcnow() - timedelta(minutes=5)
    found = dispatch.sweep(db, batch_size=100)
    assert found.requeued_rows == 12 and found.batches == [(issue_id, lo, hi)]
    assert _send(db, settings, smtp_server, issue_id, lo, hi).sent == 12
    for email in readers:
        assert len(smtp_server.messages_to(email)) == 1


def test_an_unreachable_server_gives_rows_back(db, settings, issue_id):
    from conftest import free_port
    from mailer.delivery.sender import send_batch as send

    [(lo, hi)] = _plan(db, issue_id, batch_size=100)
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        message = compile_issue(issue, settings)
    transport = SmtpTransport(f"smtp://127.0.0.1:{free_port()}", timeout=2)
    report = send(
        db,
        issue_id=issue_id,
        lo=lo,
        hi=hi,
        eligible=topic_audience(2),
        message=message,
        recipient_fields=lambda c: {"to": c.email},
        transport=transport,
        lease_seconds=60,
    )
    assert report.sent == 0
    with db.transaction() as s:
        rows = s.scalars(select(Delivery).where(Delivery.issue_id == issue_id)).all()
    assert report.given_back == 12
    assert {r.status for r in rows} == {"pending"} and {r.attempts for r in rows} == {0}


def test_the_sweeper_resends_a_lost_confirmation_once_not_every_sweep(db):
    with db.transaction() as s:
        outcome = request_subscription(s, email="lost@example.org", topic_slugs=["careers"])
        s.get(Subscriber, outcome.subscriber_id).confirm_requested_at = utcnow() - timedelta(minutes=5)
    assert dispatch.sweep(db, batch_size=100).confirmations == [outcome.subscriber_id]
    assert dispatch.sweep(db, batch_size=100).confirmations == []
    with db.transaction() as s:  # sent at last: never swept again
        s.get(Subscriber, outcome.subscriber_id).confirm_sent_at = utcnow()
        s.get(Subscriber, outcome.subscriber_id).confirm_swept_at = utcnow() - timedelta(hours=1)
    assert dispatch.sweep(db, batch_size=100).confirmations == []


def test_send_rate_reserves_tokens_across_clients(redis_url):
    """Two clients of one bucket share the rate: the second has to wait for what the first took."""
    from mailer.delivery.rate import SendRate

    key = f"test-rate-{utcnow().timestamp()}"
    first, second = SendRate(redis_url, rate=1000, key=key), SendRate(redis_url, rate=1000, key=key)
    assert first.acquire(1000) == 0  # a full second's burst is there to take
    waited = second.acquire(100)  # then 100 more at 1000/s: about a tenth of a second's reservation
    assert 0.05 < waited <= 0.1
