"""Review, approval and scheduling: what a second person checked is what goes out, at the time set, once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from conftest import wait_until
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.audit import Actor
from mailer.compose.inputs import parse_send_at
from mailer.compose.issues import (
    approve_issue,
    create_issue,
    request_send,
    return_issue,
    schedule_issue,
    start_due,
    submit_issue,
    update_issue,
)
from mailer.errors import Conflict, InvalidInput
from mailer.models import AuditEvent, Issue, utcnow
from support.flows import issue_input

WRITER = Actor("user", 1, "writer@hiow.nhs.uk")
CHECKER = Actor("user", 2, "checker@hiow.nhs.uk")


@pytest.fixture()
def accounts(db):
    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, WRITER.label, "a long enough password", role="editor")
        create_admin(s, CHECKER.label, "a long enough password", role="publisher")


def _draft(db, topic="careers") -> int:
    with db.transaction() as s:
        return create_issue(s, issue_input(s, subject="Jobs", body="We are hiring.", topic=topic), actor=WRITER).id


def _status(db, issue_id) -> str:
    with db.transaction() as s:
        return s.get(Issue, issue_id).status


def test_an_issue_goes_draft_review_approved_sending(db, accounts):
    issue_id = _draft(db)
    with db.transaction() as s:
        with pytest.raises(Conflict, match="must be approved"):
            request_send(s, issue_id, CHECKER)
        with pytest.raises(Conflict, match="in review can be approved"):
            approve_issue(s, issue_id, CHECKER)
        submit_issue(s, issue_id, WRITER)
        approve_issue(s, issue_id, CHECKER, by_another=True)
        request_send(s, issue_id, CHECKER)
    assert _status(db, issue_id) == "sending"
    with db.transaction() as s:
        actions = [(e.action, e.actor_label) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == [
        ("issue.create", WRITER.label),
        ("issue.submit", WRITER.label),
        ("issue.approve", CHECKER.label),
        ("issue.send", CHECKER.label),
    ]


def test_the_writer_cannot_approve_their_own_issue_when_another_is_required(db, accounts):
    issue_id = _draft(db)
    with db.transaction() as s:
        submit_issue(s, issue_id, WRITER)
    with db.transaction() as s, pytest.raises(Conflict, match="Someone other than"):
        approve_issue(s, issue_id, WRITER, by_another=True)
    with db.transaction() as s:
        approve_issue(s, issue_id, WRITER, by_another=False)  # allowed when the team has not asked for two people
    assert _status(db, issue_id) == "approved"


def test_editing_after_approval_sends_it_back_to_draft(db, accounts):
    issue_id = _draft(db)
    with db.transaction() as s:
        submit_issue(s, issue_id, WRITER)
        approve_issue(s, issue_id, CHECKER)
    with db.transaction() as s:
        changed = issue_input(s, subject="Jobs (changed)", body="We are hiring.", topic="careers")
        update_issue(s, issue_id, changed, WRITER)
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        assert (issue.status, issue.approved_at, issue.submitted_at) == ("draft", None, None)


def test_a_reviewer_sends_it_back_with_a_note(db, accounts):
    issue_id = _draft(db)
    with db.transaction() as s:
        submit_issue(s, issue_id, WRITER)
        return_issue(s, issue_id, CHECKER, note="Please add the event date.")
    assert _status(db, issue_id) == "draft"
    with db.transaction() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "issue.return"))
        assert event.details == {"note": "Please add the event date."} and event.actor_label == CHECKER.label


# --- times: UK clock, the clock changes ---------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "utc"),
    [
        ("2026-12-01T09:00", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),  # winter: GMT
        ("2026-07-01T09:00", datetime(2026, 7, 1, 8, 0, tzinfo=UTC)),  # summer: BST
        ("2027-03-28T00:30", datetime(2027, 3, 28, 0, 30, tzinfo=UTC)),  # before the clocks go forward
        ("2027-03-28T02:30", datetime(2027, 3, 28, 1, 30, tzinfo=UTC)),  # after
        ("2026-10-25T01:30", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # happens twice: the first (BST)
        ("2026-10-25T02:30", datetime(2026, 10, 25, 2, 30, tzinfo=UTC)),  # after the clocks go back
        ("2026-07-01T09:00+02:00", datetime(2026, 7, 1, 7, 0, tzinfo=UTC)),  # an offset is taken as given
        ("2026-07-01T09:00Z", datetime(2026, 7, 1, 9, 0, tzinfo=UTC)),
    ],
)
def test_send_times_are_read_on_the_uk_clock(given, utc):
    assert parse_send_at(given, now=NOW) == utc


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("2027-03-28T01:30", "does not happen in the UK"),  # the hour skipped in March
        ("2026-05-01T09:00", "in the future"),
        ("2028-01-01T09:00", "within the next year"),
        ("next tuesday", "not an ISO-8601"),
        ("", "ISO-8601"),
    ],
)
def test_impossible_send_times_are_refused_saying_why(given, says):
    with pytest.raises(InvalidInput) as caught:
        parse_send_at(given, now=NOW)
    assert says in caught.value.errors["send_at"]


# --- scheduled sends go out once -----------------------------------------------------------------------


def test_a_scheduled_issue_starts_once_when_beat_fires_twice(app, db, accounts, smtp_server, celery_workers):
    from mailer.tasks import enqueue, plan_issue

    people = [f"sched{i}@example.org" for i in range(6)]
    with db.transaction() as s:
        for email in people:
            confirm_subscription(s, request_subscription(s, email=email, topic_slugs=["careers"]).request_id)
    issue_id = _draft(db)
    with db.transaction() as s:
        submit_issue(s, issue_id, WRITER)
        approve_issue(s, issue_id, CHECKER)
        schedule_issue(s, issue_id, utcnow() + timedelta(hours=1), CHECKER)
    with db.transaction() as s:
        assert start_due(s) == []  # not yet
        s.execute(update(Issue).where(Issue.id == issue_id).values(send_at=utcnow() - timedelta(seconds=1)))

    started: list[list[int]] = []
    barrier = threading.Barrier(2)

    def beat():
        barrier.wait()
        with db.transaction() as s:
            started.append(start_due(s))

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(started) == [[], [issue_id]]
    for ids in started:
        for started_id in ids:
            enqueue(plan_issue, started_id)
    wait_until(lambda: _status(db, issue_id) == "sent", 30, message="the scheduled issue to be sent")
    for email in people:
        assert len(smtp_server.messages_to(email)) == 1
    with db.transaction() as s:
        sends = s.scalars(select(AuditEvent).where(AuditEvent.action == "issue.send")).all()
        assert [(e.actor_type, e.target_id) for e in sends] == [("system", issue_id)]


def test_scheduling_through_the_api(client, db, accounts):
    from mailer.accounts import create_token

    with db.transaction() as s:
        _row, secret = create_token(s, "scheduler", role="publisher")
    headers = {"Authorization": f"Bearer {secret}"}
    issue_id = _draft(db)
    for action in ("submit", "approve"):
        assert client.post(f"/api/v1/issues/{issue_id}/{action}", headers=headers).status_code == 200
    bad = client.post(f"/api/v1/issues/{issue_id}/schedule", json={"send_at": "2020-01-01T09:00"}, headers=headers)
    assert bad.status_code == 400 and "send_at" in bad.get_json()["fields"]
    when = (utcnow() + timedelta(days=2)).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M")
    ok = client.post(f"/api/v1/issues/{issue_id}/schedule", json={"send_at": when}, headers=headers)
    assert ok.status_code == 200 and ok.get_json()["status"] == "scheduled"
    assert client.post(f"/api/v1/issues/{issue_id}/unschedule", headers=headers).get_json()["status"] == "approved"
    assert client.post(f"/api/v1/issues/{issue_id}/unschedule", headers=headers).status_code == 409


def test_a_second_approver_must_be_a_person_who_neither_wrote_nor_submitted_it(db, accounts):
    with db.transaction() as s:
        issue_id = create_issue(
            s, issue_input(s, subject="Jobs", body="Hiring.", topic="careers"), created_by_id=CHECKER.id, actor=CHECKER
        ).id
        submit_issue(s, issue_id, WRITER)
    ownerless_token = Actor("token", 9, "token publisher")  # acts for nobody: who approves would be unknown
    for who, says in (
        (ownerless_token, "A second person must approve"),
        (CHECKER, "wrote or submitted"),
        (WRITER, "wrote or submitted"),
    ):
        with db.transaction() as s, pytest.raises(Conflict, match=says):
            approve_issue(s, issue_id, who, by_another=True)
    from mailer.accounts import create_admin

    with db.transaction() as s:
        third = create_admin(s, "third@hiow.nhs.uk", "a long enough password", role="publisher")
        approve_issue(s, issue_id, Actor.user(third), by_another=True)


def test_editing_a_segment_after_approval_does_not_widen_the_send(db, accounts):
    from mailer.audience import commands
    from mailer.audience.inputs import SegmentChange, SegmentInput
    from mailer.audience.lookups import parse_in
    from mailer.audit import SYSTEM

    with db.transaction() as s:
        portsmouth = {"all": [{"field": "area", "op": "is", "value": "portsmouth"}]}
        data = parse_in(s, SegmentInput, {"name": "Portsmouth", "rules": portsmouth})
        segment = commands.save_segment(s, data, SYSTEM)
        issue_id = create_issue(s, issue_input(s, subject="Hi", body="B", topic="careers", segment=segment.id)).id
        submit_issue(s, issue_id, WRITER)
        approve_issue(s, issue_id, CHECKER)
        wider = {"all": [{"field": "area", "op": "in", "value": ["portsmouth", "hampshire"]}]}
        commands.save_segment(s, parse_in(s, SegmentChange, {"rules": wider}), SYSTEM, segment.id)
        request_send(s, issue_id, CHECKER)
        assert s.get(Issue, issue_id).audience_rules == {"all": [{"field": "area", "op": "is", "value": "portsmouth"}]}


@pytest.mark.parametrize("send_at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00", 20261201, None])
def test_absurd_send_times_are_a_400_not_a_500(client, db, accounts, send_at):
    from mailer.accounts import create_token

    with db.transaction() as s:
        headers = {"Authorization": f"Bearer {create_token(s, 'p', role='publisher')[1]}"}
    issue_id = _draft(db)
    for action in ("submit", "approve"):
        client.post(f"/api/v1/issues/{issue_id}/{action}", headers=headers)
    response = client.post(f"/api/v1/issues/{issue_id}/schedule", json={"send_at": send_at}, headers=headers)
    assert response.status_code == 400 and "send_at" in response.get_json()["fields"]
