"""Progress updates as they happen, and weekly and monthly digests: exactly one per person per period,
only with what is new to them, never twice."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from conftest import wait_until
from mailer.audience import commands
from mailer.audience.inputs import NewSubscriber
from mailer.audience.lookups import parse_in
from mailer.audience.subscriptions import unsubscribe
from mailer.audit import SYSTEM, Actor
from mailer.compose.digests import period_of, run_digest
from mailer.compose.updates import create_update, publish_update
from mailer.models import DigestRunSubscriber, Issue, Subscriber, Subscription, Topic, Update
from support.flows import update_input

PUBLISHER = Actor("token", None, "test")


def person(db, email, *subscriptions, area=None):
    with db.transaction() as s:
        outcome = commands.add_subscriber(
            s,
            parse_in(
                s,
                NewSubscriber,
                {
                    "email": email,
                    "subscriptions": list(subscriptions),
                    "area": area,
                    "consent": {"source": "test", "collected": True},
                },
            ),
            SYSTEM,
        )
        return outcome.subscriber.id


def publish(db, title, topic="project-fusion", areas=(), at=None) -> tuple[int, int]:
    """Publish an update (at a given moment, if asked); returns (update id, its as-it-happens issue id)."""
    with db.transaction() as s:
        data = update_input(s, title=title, topic=topic, summary=f"About {title}.", areas=list(areas))
        update = create_update(s, data)
        issue = publish_update(s, update.id, PUBLISHER)
        if at is not None:
            update.published_at = at
        return update.id, issue.id


def send_updates(db, issue_ids):
    from mailer.tasks import enqueue, plan_issue

    for issue_id in issue_ids:
        enqueue(plan_issue, issue_id)
    for issue_id in issue_ids:
        wait_until(lambda i=issue_id: _status(db, i) == "sent", 30, message=f"issue {issue_id} to be sent")


def _status(db, issue_id):
    with db.transaction() as s:
        return s.get(Issue, issue_id).status


def digest(db, frequency, at=None):
    from mailer.tasks import enqueue, plan_issue

    report = run_digest(db, frequency, at)
    for issue_id in report.emails:
        enqueue(plan_issue, issue_id)
    for issue_id in report.emails:
        wait_until(lambda i=issue_id: _status(db, i) == "sent", 30, message=f"digest {issue_id} to be sent")
    return report


def die_after_first_chunk(monkeypatch, db, chunk: int) -> None:
    """Run the weekly digest with chunks of `chunk` people and let the planner die after the first one,
    as a SIGKILL would leave it; afterwards planning works normally again."""
    from mailer.compose import digests

    monkeypatch.setattr(digests, "CHUNK", chunk)
    real, calls = digests._plan_chunk, []

    def dies_after_one(*args):
        calls.append(1)
        if len(calls) == 2:
            raise SystemExit("worker killed")
        return real(*args)

    with monkeypatch.context() as patched:
        patched.setattr(digests, "_plan_chunk", dies_after_one)
        with pytest.raises(SystemExit):
            run_digest(db, "weekly")


def titles_in(mail) -> list[str]:
    text = mail.text()
    return sorted(
        t
        for t in ("Alpha", "Bravo", "Charlie", "Delta", "Echo")
        if f"{t} " in text or f"{t}\n" in text or f"{t}:" in text
    )


def test_three_updates_three_people_each_gets_exactly_what_they_chose(app, db, smtp_server, celery_workers):
    person(db, "now@example.org", "project-fusion", "get-involved:weekly")
    person(db, "weekly@example.org", "project-fusion:weekly", "get-involved:weekly")
    person(db, "monthly@example.org", "project-fusion:monthly")
    ids = [
        publish(db, "Alpha"),
        publish(db, "Bravo", topic="get-involved"),
        publish(db, "Charlie"),
    ]
    send_updates(db, [issue_id for _u, issue_id in ids])
    as_it_happens = smtp_server.messages_to("now@example.org")
    assert sorted(m.message["Subject"] for m in as_it_happens) == ["Alpha", "Charlie"]
    assert smtp_server.messages_to("weekly@example.org") == smtp_server.messages_to("monthly@example.org") == []

    weekly = digest(db, "weekly")
    monthly = digest(db, "monthly")
    [now_digest] = [m for m in smtp_server.messages_to("now@example.org") if "digest" in m.message["Subject"]]
    [weekly_mail] = smtp_server.messages_to("weekly@example.org")
    [monthly_mail] = smtp_server.messages_to("monthly@example.org")
    assert now_digest.message["Subject"] == "Your weekly digest: 1 update" and "Bravo" in now_digest.text()
    assert weekly_mail.message["Subject"] == "Your weekly digest: 3 updates"
    assert all(t in weekly_mail.text() for t in ("Alpha", "Bravo", "Charlie"))
    assert monthly_mail.message["Subject"] == "Your monthly digest: 2 updates"
    assert "Bravo" not in monthly_mail.text() and "Alpha" in monthly_mail.text()
    assert "/news/updates/" in weekly_mail.text() and weekly_mail.message["List-Unsubscribe"]
    assert weekly.renders == 2 and monthly.renders == 1  # one render per distinct content, not per person

    again = digest(db, "weekly")
    assert again.processed == 0 and again.emails == []  # both already sent
    assert len(smtp_server.messages_to("weekly@example.org")) == 1


def test_nothing_new_means_no_email(app, db, smtp_server, celery_workers):
    person(db, "quiet@example.org", "project-fusion:weekly")
    report = digest(db, "weekly")
    assert (report.processed, report.with_news, report.emails) == (1, 0, [])
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DigestRunSubscriber)) == 1
    assert smtp_server.messages_to("quiet@example.org") == []


def test_switching_weekly_to_monthly_mid_period_sends_only_what_is_new(app, db, smtp_server, celery_workers):
    week1 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    with time_machine.travel(week1 - timedelta(days=10), tick=False):
        subscriber_id = person(db, "switcher@example.org", "project-fusion:weekly")
    publish(db, "Alpha", at=week1 - timedelta(days=2))
    digest(db, "weekly", at=week1)
    [first] = smtp_server.messages_to("switcher@example.org")
    assert "Alpha" in first.text()
    with db.transaction() as s:
        s.execute(
            Subscription.__table__.update()
            .where(Subscription.subscriber_id == subscriber_id)
            .values(frequency="monthly")
        )
    publish(db, "Bravo", at=week1 + timedelta(days=3))
    assert digest(db, "weekly", at=week1 + timedelta(days=7)).processed == 0  # no longer weekly
    digest(db, "monthly", at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    second = smtp_server.messages_to("switcher@example.org")[1]
    assert "Bravo" in second.text() and "Alpha" not in second.text()


def test_an_update_for_portsmouth_does_not_reach_the_isle_of_wight(app, db, smtp_server, celery_workers):
    person(db, "iow.now@example.org", "project-fusion", area="isle-of-wight")
    person(db, "pompey.now@example.org", "project-fusion", area="portsmouth")
    person(db, "iow.weekly@example.org", "project-fusion:weekly", area="isle-of-wight")
    person(db, "pompey.weekly@example.org", "project-fusion:weekly", area="portsmouth")
    _u, issue_id = publish(db, "Delta", areas=["portsmouth"])
    send_updates(db, [issue_id])
    digest(db, "weekly")
    assert [m.message["Subject"] for m in smtp_server.messages_to("pompey.now@example.org")] == ["Delta"]
    assert len(smtp_server.messages_to("pompey.weekly@example.org")) == 1
    assert smtp_server.messages_to("iow.now@example.org") == []
    assert smtp_server.messages_to("iow.weekly@example.org") == []


def test_an_unsubscribed_person_gets_no_digest(app, db, smtp_server, celery_workers):
    gone = person(db, "gone@example.org", "project-fusion:weekly")
    person(db, "stays@example.org", "project-fusion:weekly")
    publish(db, "Echo")
    with db.transaction() as s:
        unsubscribe(s, gone, None)
    digest(db, "weekly")
    assert smtp_server.messages_to("gone@example.org") == []
    assert len(smtp_server.messages_to("stays@example.org")) == 1


def test_beat_firing_twice_at_once_gives_everyone_one_digest(app, db, smtp_server, celery_workers):
    from mailer.compose import digests

    people = [f"twice{i}@example.org" for i in range(30)]
    for email in people:
        person(db, email, "project-fusion:weekly")
    publish(db, "Alpha")
    old_chunk, digests.CHUNK = digests.CHUNK, 7  # several chunks, so the two runs interleave
    try:
        reports, barrier = [], threading.Barrier(2)

        def beat():
            barrier.wait()
            reports.append(run_digest(db, "weekly"))

        threads = [threading.Thread(target=beat) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        digests.CHUNK = old_chunk
    assert len(reports) == 2, "a beat failed (its exception is printed above)"
    assert sum(r.processed for r in reports) == len(people)
    from mailer.tasks import enqueue, plan_issue

    for issue_id in {i for r in reports for i in r.emails}:
        enqueue(plan_issue, issue_id)
        enqueue(plan_issue, issue_id)  # and a retry on top
    for email in people:
        smtp_server.wait_for(email)
    import time

    time.sleep(1.5)  # room for a duplicate to arrive, were one sent
    assert all(len(smtp_server.messages_to(email)) == 1 for email in people)


@pytest.mark.parametrize(
    ("moment", "weekly", "monthly"),
    [
        # The clocks go forward at 01:00 UTC on Sunday 29 March 2026: the week still ends on UK Sunday.
        (datetime(2026, 3, 29, 23, 30, tzinfo=UTC), "2026-W14", "2026-03"),  # 00:30 BST Monday 30 March
        (datetime(2026, 3, 29, 22, 30, tzinfo=UTC), "2026-W13", "2026-03"),  # 23:30 BST Sunday
        # They go back at 01:00 UTC on Sunday 25 October 2026.
        (datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "2026-W44", "2026-10"),  # 23:30 GMT Saturday 31 October
        (datetime(2026, 3, 31, 23, 30, tzinfo=UTC), "2026-W14", "2026-04"),  # 00:30 BST on 1 April
    ],
)
def test_periods_follow_uk_clocks_across_the_clock_changes(moment, weekly, monthly):
    with time_machine.travel(moment, tick=False):
        now = datetime.now(UTC)
    assert (period_of("weekly", now), period_of("monthly", now)) == (weekly, monthly)


def test_beat_runs_digests_at_8_on_uk_clocks_in_summer_and_winter(settings):
    from mailer.tasks import configure_celery

    app = configure_celery(settings)
    weekly = app.conf.beat_schedule["weekly-digest"]["schedule"]
    assert app.conf.timezone == "Europe/London"
    for when, expected_utc_hour in (
        (datetime(2026, 7, 5, 12, tzinfo=UTC), 7),
        (datetime(2026, 12, 6, 12, tzinfo=UTC), 8),
    ):
        with time_machine.travel(when, tick=False):
            due = datetime.now(UTC) + weekly.remaining_estimate(datetime.now(UTC))
        assert due.astimezone(UTC).hour == expected_utc_hour and due.astimezone(UTC).weekday() in (0, 6)


def test_updates_through_the_api_are_drafts_unless_published(client, db):
    from mailer.accounts import create_token

    with db.transaction() as s:
        headers = {"Authorization": f"Bearer {create_token(s, 'p', role='publisher')[1]}"}
    bad = client.post("/api/v1/updates", json={"title": "", "topic": "nope", "areas": ["mars"]}, headers=headers)
    assert bad.status_code == 400 and {"title", "topic", "areas"} <= set(bad.get_json()["fields"])
    draft = client.post("/api/v1/updates", json={"title": "Plan", "topic": "project-fusion"}, headers=headers)
    assert draft.status_code == 201 and draft.get_json()["status"] == "draft"
    assert client.get("/news/updates/plan").status_code == 404  # not public until published
    live = client.post(
        "/api/v1/updates", json={"title": "Plan 2", "topic": "project-fusion", "publish": True}, headers=headers
    )
    assert live.get_json()["status"] == "published" and live.get_json()["email_issue"]
    assert client.get("/news/updates/plan-2").status_code == 200
    published = client.post(f"/api/v1/updates/{draft.get_json()['id']}/publish", headers=headers)
    assert published.status_code == 200 and published.get_json()["status"] == "published"
    assert client.post(f"/api/v1/updates/{draft.get_json()['id']}/publish", headers=headers).status_code == 409
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Update).where(Update.status == "published")) == 2
        kinds = s.scalars(select(Issue.kind)).all()
        assert kinds == ["update", "update"]
        assert s.scalar(select(Topic.id).where(Topic.slug == "project-fusion"))
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_a_run_that_dies_half_way_is_finished_by_the_next_without_repeats(
    app, db, smtp_server, celery_workers, monkeypatch
):
    """The planning process dies after its first chunk (as a SIGKILL would leave it): the people placed
    so far keep their place, and the next run (beat again, or by hand) places the rest; nobody is mailed
    before every chunk is placed, nobody twice."""

    people = [f"half{i}@example.org" for i in range(12)]
    for email in people:
        person(db, email, "project-fusion:weekly")
    publish(db, "Alpha")
    die_after_first_chunk(monkeypatch, db, chunk=5)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DigestRunSubscriber)) == 5
        assert s.scalar(select(func.count()).select_from(Issue).where(Issue.status != "draft")) == 1  # the update
    digest(db, "weekly")
    for email in people:
        smtp_server.wait_for(email)
    assert all(len(smtp_server.messages_to(email)) == 1 for email in people)


def test_weekly_and_monthly_topics_each_get_their_own_news(app, db, smtp_server, celery_workers):
    with time_machine.travel(datetime(2026, 10, 1, 9, tzinfo=UTC), tick=False):
        person(db, "both@example.org", "project-fusion:weekly", "get-involved:monthly")
    publish(db, "Alpha", topic="get-involved", at=datetime(2026, 11, 5, 9, tzinfo=UTC))
    publish(db, "Bravo", topic="get-involved", at=datetime(2026, 11, 20, 9, tzinfo=UTC))
    publish(db, "Charlie", at=datetime(2026, 11, 26, 9, tzinfo=UTC))
    digest(db, "weekly", at=datetime(2026, 11, 30, 8, tzinfo=UTC))  # a Monday, before the 1st
    digest(db, "monthly", at=datetime(2026, 12, 1, 8, tzinfo=UTC))
    weekly, monthly = smtp_server.messages_to("both@example.org")
    assert "Charlie" in weekly.text() and "Alpha" not in weekly.text()
    assert "Alpha" in monthly.text() and "Bravo" in monthly.text() and "Charlie" not in monthly.text()


def test_moving_from_as_it_happens_to_weekly_does_not_resend_old_news(app, db, smtp_server, celery_workers):
    from mailer.audience.inputs import Preferences
    from mailer.models import Subscriber as S

    subscriber_id = person(db, "mover@example.org", "project-fusion")
    _u, issue_id = publish(db, "Alpha")
    send_updates(db, [issue_id])
    with db.transaction() as s:
        preferences = parse_in(s, Preferences, {"topics": ["project-fusion:weekly"]})
        commands.update_preferences(s, s.get(S, subscriber_id), preferences, commands.OWNER)
    publish(db, "Bravo")
    digest(db, "weekly")
    as_it_happened, weekly = smtp_server.messages_to("mover@example.org")
    assert "Alpha" in as_it_happened.message["Subject"]
    assert "Bravo" in weekly.text() and "Alpha" not in weekly.text()


def test_someone_placed_after_the_emails_were_planned_still_gets_theirs(app, db, smtp_server, celery_workers):
    person(db, "early@example.org", "project-fusion:weekly")
    publish(db, "Alpha")
    digest(db, "weekly")
    person(db, "late@example.org", "project-fusion:weekly")  # same content as "early": the same email
    with db.transaction() as s:
        s.execute(Subscription.__table__.update().values(started_at=datetime(2026, 1, 1, tzinfo=UTC)))
    digest(db, "weekly")
    assert len(smtp_server.wait_for("late@example.org")) == 1
    assert len(smtp_server.messages_to("early@example.org")) == 1


def test_the_sweeper_finishes_a_run_whose_planner_died(app, db, smtp_server, celery_workers, monkeypatch):
    from mailer.compose import digests
    from mailer.models import DigestRun

    for i in range(6):
        person(db, f"stuck{i}@example.org", "project-fusion:weekly")
    publish(db, "Alpha")
    die_after_first_chunk(monkeypatch, db, chunk=3)
    with db.transaction() as s:
        s.execute(DigestRun.__table__.update().values(created_at=datetime(2026, 1, 1, tzinfo=UTC)))
        assert digests.stuck_runs(s, timedelta(seconds=60))
    from mailer.tasks import sweep

    sweep.apply()  # what beat does every 30 s
    for i in range(6):
        smtp_server.wait_for(f"stuck{i}@example.org")
    assert all(len(smtp_server.messages_to(f"stuck{i}@example.org")) == 1 for i in range(6))
