"""The feedback room's rules, against the real database: reports recorded once, the ledger corrected, people
suppressed by the policy with the event that caused it, and a send with many dead mailboxes pausing itself."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.compose.issues import create_issue, request_send, resume_issue
from mailer.feedback import verp
from mailer.feedback.commands import Report, record
from mailer.feedback.policy import SendFigures, sample_size, why_pause
from mailer.models import Delivery, FeedbackEvent, Issue, Subscriber, Subscription, Suppression
from support.flows import approve_for_sending, issue_input


def _people(db, count, topics=("project-fusion",)):
    ids = []
    with db.transaction() as s:
        for i in range(count):
            outcome = request_subscription(s, email=f"person{i}@example.org", topic_slugs=list(topics))
            confirm_subscription(s, outcome.request_id)
            ids.append(outcome.subscriber_id)
    return ids


def _sending_issue(db):
    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject="Progress", body="On track.", topic="project-fusion"))
        approve_for_sending(s, issue.id)
        request_send(s, issue.id)
        return issue.id


def _plan(db, issue_id):
    from mailer.audience.segments import topic_audience
    from mailer.delivery import dispatch

    dispatch.plan_issue(db, issue_id, lambda issue: topic_audience(issue.topic_id), 1000)


def _bounce(source="smtp", **fields):
    return Report(
        source=source, kind="bounce", severity="hard", status="5.1.1", diagnostic="550 No such user", **fields
    )


def test_a_verp_address_names_its_row_and_a_forged_one_names_nothing(settings):
    bouncy = settings.with_overrides(
        deliverability=replace(settings.deliverability, bounce_domain="bounces.example.org")
    )
    address = verp.envelope_for_delivery(1234, bouncy, "news@example.org")
    assert address.startswith("bounce-1234-") and address.endswith("@bounces.example.org")
    assert verp.read(address, bouncy) == verp.Named(delivery_id=1234)
    assert verp.read(address.upper(), bouncy) == verp.Named(delivery_id=1234)  # a relay that upper-cases
    assert verp.read(address.replace("1234", "1235"), bouncy) is None  # someone else's row: the signature fails
    assert verp.read(address.replace("bounces.", "other."), bouncy) is None
    person = verp.envelope_for_person(7, bouncy, "news@example.org")
    assert verp.read(person, bouncy) == verp.Named(subscriber_id=7)
    rotated = bouncy.with_overrides(secret_key="a new key", secret_key_fallbacks=(bouncy.secret_key,))
    assert verp.read(address, rotated) == verp.Named(delivery_id=1234)  # a DSN days after a key rotation
    assert verp.envelope_for_delivery(1234, settings, "news@example.org") == "news@example.org"  # not configured


def test_a_hard_bounce_after_sending_marks_the_row_and_suppresses_with_its_event(db, settings):
    [person] = _people(db, 1)
    issue_id = _sending_issue(db)
    _plan(db, issue_id)
    with db.transaction() as s:
        delivery = s.scalar(select(Delivery).where(Delivery.issue_id == issue_id))
        delivery.status = "sent"
        first = record(s, _bounce(key="dsn:<abc>:person0", delivery_id=delivery.id), settings)
    assert first.new and first.outcome == "suppressed"
    with db.transaction() as s:
        again = record(s, _bounce(key="dsn:<abc>:person0", delivery_id=delivery.id), settings)
    assert not again.new and again.event_id == first.event_id
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(FeedbackEvent)) == 1
        row = s.get(Delivery, delivery.id)
        assert row.status == "bounced" and "5.1.1" in row.last_error
        suppression = s.scalar(select(Suppression))
        assert (suppression.reason, suppression.event_id, suppression.issue_id) == ("bounced", first.event_id, issue_id)
        assert "by DSN" in suppression.detail and "5.1.1" in suppression.detail
        assert s.get(Subscriber, person).status == "bounced"


def test_soft_bounces_suppress_only_at_the_limit(db, settings):
    [person] = _people(db, 1)
    for n in range(1, 4):
        with db.transaction() as s:
            outcome = record(
                s,
                Report(
                    source="notify",  # a provider's authenticated word about an address
                    kind="bounce",
                    severity="soft",
                    key=f"soft{n}",
                    email="PERSON0@example.org",
                    status="4.2.2",
                    diagnostic="Mailbox full",
                ),
                settings,
            )
        assert outcome.outcome == ("suppressed" if n == 3 else "counted")
    with db.transaction() as s:
        assert s.get(Subscriber, person).status == "bounced"
        assert "3 soft bounces in 30 days" in s.scalar(select(Suppression.detail))


def test_a_complaint_unsubscribes_from_everything_and_keeps_the_report(db, settings):
    [person] = _people(db, 1, topics=("project-fusion", "trust-matters"))
    arf = "Feedback-Type: abuse\r\n..."
    with db.transaction() as s:
        outcome = record(
            s, Report(source="smtp", kind="complaint", key="arf:1", subscriber_id=person, report=arf), settings
        )
    assert outcome.outcome == "suppressed"
    with db.transaction() as s:
        assert s.get(Subscriber, person).status == "complained"
        assert s.scalar(select(func.count()).select_from(Subscription).where(Subscription.ended_at.is_(None))) == 0
        assert s.scalar(select(FeedbackEvent.report)) == arf
        assert s.scalar(select(Suppression.reason)) == "complained"


def test_a_mailed_report_naming_only_an_address_suppresses_nobody(db, settings):
    """Anyone can mail the bounce domain: without our signature (VERP, Message-ID) a report is kept for the team,
    not acted on, or a stranger could take anyone off the list with a forged DSN."""
    [person] = _people(db, 1)
    for source in ("smtp", "imap"):
        with db.transaction() as s:
            assert (
                record(s, _bounce(key=f"forged-{source}", email="person0@example.org", source=source), settings).outcome
                == "unattributed"
            )
    with db.transaction() as s:
        assert s.get(Subscriber, person).status == "active"
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0


def test_a_report_about_nobody_we_know_is_kept_unattributed(db, settings):
    with db.transaction() as s:
        outcome = record(s, _bounce(key="x", email="stranger@example.org"), settings)
    assert outcome.outcome == "unattributed"
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0


@pytest.mark.parametrize(
    ("audience", "expected"), [(50, 100), (1000, 100), (100_000, 2000), (1_000_000, 2000), (20_000, 400)]
)
def test_the_sample_is_two_percent_or_the_set_size_but_never_below_the_minimum(settings, audience, expected):
    assert sample_size(audience, settings.deliverability) == expected


def test_rates_are_judged_only_once_the_sample_has_gone(settings):
    rules = settings.deliverability
    assert why_pause(SendFigures(attempted=99, bounced=50, complaints=0), 1000, rules) is None
    assert "bounced" in why_pause(SendFigures(attempted=100, bounced=6, complaints=0), 1000, rules)
    assert why_pause(SendFigures(attempted=100, bounced=5, complaints=0), 1000, rules) is None  # 5 %: at the limit
    assert "spam" in why_pause(SendFigures(attempted=2000, bounced=0, complaints=3), 100_000, rules)


def test_a_late_report_pauses_a_send_and_a_publisher_resume_is_final(db, settings):
    people = _people(db, 120)
    issue_id = _sending_issue(db)
    _plan(db, issue_id)
    with db.transaction() as s:
        rows = list(s.scalars(select(Delivery).where(Delivery.issue_id == issue_id).order_by(Delivery.id)))
        for row in rows[:110]:
            row.status = "sent"
    paused = None
    for n, row in enumerate(rows[:7]):
        with db.transaction() as s:
            paused = record(s, _bounce(key=f"late{n}", delivery_id=row.id), settings).paused or paused
    assert paused and "6 of the first 110 messages" in paused
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        assert issue.status == "paused" and issue.paused_reason == paused
        resume_issue(s, issue_id)
    with db.transaction() as s:
        record(s, _bounce(key="late-more", delivery_id=rows[8].id), settings)
        issue = s.get(Issue, issue_id)
        assert issue.status == "sending" and issue.auto_pause is False and issue.paused_reason is None
    assert len(people) == 120


def test_anonymising_a_person_takes_their_address_out_of_their_reports(db, settings):
    from mailer.audience.erasure import anonymise

    [person] = _people(db, 1)
    with db.transaction() as s:
        record(
            s,
            Report(
                source="smtp",
                kind="complaint",
                key="arf:2",
                subscriber_id=person,
                diagnostic="complaint about person0@example.org",
                report="To: person0@example.org\r\n...",
            ),
            settings,
        )
    with db.transaction() as s:
        anonymise(s, s.get(Subscriber, person))
    with db.transaction() as s:
        event = s.scalar(select(FeedbackEvent))
        assert event.report is None and event.diagnostic == "complaint about (address removed)"
        assert "person0@example.org" not in (s.scalar(select(Suppression.detail)) or "")


def test_retention_blanks_old_reports_whoever_they_were_about(db, settings):
    from datetime import timedelta

    from mailer.audience.retention import clear_old_reports
    from mailer.models import utcnow

    with db.transaction() as s:
        record(s, _bounce(key="old", email="stranger@example.org", report="To: stranger@example.org"), settings)
        record(s, _bounce(key="new", email="other@example.org", report="To: other@example.org"), settings)
        s.scalar(select(FeedbackEvent).where(FeedbackEvent.key == "old")).received_at = utcnow() - timedelta(days=800)
    with db.transaction() as s:
        assert clear_old_reports(s, 730) == 1
    with db.transaction() as s:
        events = {e.key: e for e in s.scalars(select(FeedbackEvent))}
        assert events["old"].report is None and events["old"].diagnostic is None and events["old"].status == "5.1.1"
        assert events["new"].report == "To: other@example.org"
