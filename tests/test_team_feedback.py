"""What the team sees of the feedback loop: the notice a send that paused itself sends the publishers, the issue's
page and JSON with its figures, the recipients page with each bounce's code, the suppression list (read, add,
remove, by page and API) and the 30-day figures on the statistics page. Reports come in through the feedback
room's own `record`, as the receivers call it; mail goes through the test SMTP server."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conftest import BASE_URL, csrf_from
from mailer import tasks
from mailer.accounts import change_account, create_admin, create_token
from mailer.audience.emails import hash_address
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.compose.issues import create_issue, request_send
from mailer.feedback.commands import Report, record
from mailer.models import AuditEvent, Delivery, Issue, Subscriber, Subscription, Suppression, utcnow
from mailer.runtime import Runtime, runtime, set_runtime
from support.flows import approve_for_sending, issue_input, sign_in

PASSWORD = "a long enough password"


def _people(db, count, prefix="person"):
    ids = []
    with db.transaction() as s:
        for i in range(count):
            outcome = request_subscription(s, email=f"{prefix}{i}@example.org", topic_slugs=["project-fusion"])
            confirm_subscription(s, outcome.request_id)
            ids.append(outcome.subscriber_id)
    return ids


def _sending_issue(db, subject="Progress on Project Fusion"):
    from mailer.audience.segments import topic_audience
    from mailer.delivery import dispatch

    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject=subject, body="On track.", topic="project-fusion"))
        approve_for_sending(s, issue.id)
        request_send(s, issue.id)
        issue_id = issue.id
    dispatch.plan_issue(db, issue_id, lambda issue: topic_audience(issue.topic_id), 1000)
    return issue_id


def _rows(db, issue_id):
    with db.sessions() as s:
        return list(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id).order_by(Delivery.id)))


def _paused_issue(db, settings, people=120, sent=110, bounces=7):
    """An issue whose first `sent` messages went and `bounces` of them bounced by DSN: it pauses itself."""
    _people(db, people)
    issue_id = _sending_issue(db)
    rows = _rows(db, issue_id)
    with db.transaction() as s:
        for row in s.scalars(select(Delivery).where(Delivery.id.in_(rows[:sent]))):
            row.status, row.sent_at = "sent", utcnow()
    for n, row in enumerate(rows[:bounces]):
        with db.transaction() as s:
            record(s, _bounce(f"dsn:{n}", row), settings)
    with db.sessions() as s:
        assert s.get(Issue, issue_id).status == "paused"
    return issue_id, rows


def _bounce(key, delivery_id, severity="hard", status="5.1.1", diagnostic="550 5.1.1 <x>: Recipient address rejected"):
    return Report(
        source="smtp",
        kind="bounce",
        severity=severity,
        key=key,
        delivery_id=delivery_id,
        status=status,
        diagnostic=diagnostic,
    )


@pytest.fixture()
def bouncy_runtime(app, settings):
    """The process's runtime with a bounce domain, as a worker configured with BOUNCE_DOMAIN has it."""
    before = runtime()
    bouncy = settings.with_overrides(
        deliverability=replace(settings.deliverability, bounce_domain="bounces.mailer.test")
    )
    set_runtime(Runtime.build(bouncy))
    yield bouncy
    set_runtime(before)


def _team(db):
    with db.transaction() as s:
        create_admin(s, "admin@hiow.nhs.uk", PASSWORD, role="admin")
        create_admin(s, "publisher@hiow.nhs.uk", PASSWORD, role="publisher")
        create_admin(s, "editor@hiow.nhs.uk", PASSWORD, role="editor")
        gone = create_admin(s, "left@hiow.nhs.uk", PASSWORD, role="publisher")
        change_account(s, gone.id, active=False)


# --- the publishers are told --------------------------------------------------------------------------------------


def test_a_send_that_paused_itself_tells_every_publisher_and_admin(db, bouncy_runtime, smtp_server):
    _team(db)
    issue_id, _rows_ = _paused_issue(db, bouncy_runtime)
    with db.sessions() as s:
        reason = s.get(Issue, issue_id).paused_reason
    smtp_server.reset()  # only what the task sends below

    outcomes = tasks.tell_publishers_paused(issue_id)

    assert outcomes == {"admin@hiow.nhs.uk": "sent", "publisher@hiow.nhs.uk": "sent"}
    for address in ("admin@hiow.nhs.uk", "publisher@hiow.nhs.uk"):
        got = smtp_server.messages_to(address)[-1]  # (a worker of another test's may have told them first)
        message = got.message
        assert message["Subject"] == "Paused by itself: Progress on Project Fusion"
        assert got.mail_from == "bounce-team@bounces.mailer.test"  # its own Return-Path: a bounce counts for nobody
        assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
        link = f"{BASE_URL}/admin/issues/{issue_id}"
        assert reason in got.text() and link in got.text()
        assert f'href="{link}"' in got.html() and "6 of the first 110 messages" in got.html()
        assert "<h1" in got.html() and 'lang="en"' in got.html()
    assert smtp_server.messages_to("editor@hiow.nhs.uk") == [] and smtp_server.messages_to("left@hiow.nhs.uk") == []
    with db.sessions() as s:
        notice = s.scalar(
            select(AuditEvent).where(AuditEvent.action == "issue.paused_notice").order_by(AuditEvent.id.desc()).limit(1)
        )
        assert notice.target_id == issue_id and notice.details["to"] == ["admin@hiow.nhs.uk", "publisher@hiow.nhs.uk"]


def test_the_notice_is_not_sent_once_a_publisher_has_resumed(db, app, settings, smtp_server):
    from mailer.compose.issues import resume_issue

    _team(db)
    _people(db, 3)
    issue_id = _sending_issue(db)
    # Paused by itself as check_send leaves it, but without queueing its notice: a Celery worker left running by
    # an earlier test would otherwise send that one, at a moment this test cannot know.
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        issue.status, issue.paused_at, issue.paused_reason = "paused", utcnow(), "7 of the first 110 messages bounced"
    with db.transaction() as s:
        resume_issue(s, issue_id)
    smtp_server.reset()
    assert tasks.tell_publishers_paused(issue_id) == {}
    assert smtp_server.messages_to("publisher@hiow.nhs.uk") == []


def test_the_notice_is_routed_to_the_transactional_queue(settings):
    routes = tasks.make_celery(settings).conf.task_routes
    assert routes["mailer.tell_publishers_paused"] == {"queue": tasks.TRANSACTIONAL}


# --- the issue's page and JSON --------------------------------------------------------------------------------------


def test_the_issue_page_shows_why_it_paused_with_its_figures_and_a_publisher_resumes_it(client, db, settings):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    issue_id, rows = _paused_issue(db, settings)
    with db.transaction() as s:  # a soft bounce and a complaint too
        record(s, _bounce("dsn:soft", rows[20], severity="soft", status="4.2.2", diagnostic="Mailbox full"), settings)
        record(s, Report(source="smtp", kind="complaint", key="arf:1", delivery_id=rows[30]), settings)

    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    panel = page[page.index('id="auto-paused"') : page.index('id="bounces"')]
    assert "This send paused itself" in panel and "6 of the first 110 messages bounced" in panel
    assert f"/admin/issues/{issue_id}/resume" in panel and f"/admin/issues/{issue_id}/cancel" in panel
    assert re.search(r'data-figure="hard_bounces">7<', page) and re.search(r'data-figure="soft_bounces">1<', page)
    assert re.search(r'data-figure="complaints">1<', page) and re.search(r'data-figure="sent">110<', page)
    assert 'id="issue-figures-bounce-warning"' in page and 'id="issue-figures-complaint-warning"' in page

    with db.transaction() as s:
        _row, token = create_token(s, "figures", role="editor")
    shown = client.get(f"/api/v1/issues/{issue_id}", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert (
        shown["status"] == "paused" and shown["auto_pause"] is True and "6 of the first 110" in shown["paused_reason"]
    )
    assert shown["figures"] == {
        "sent": 110,
        "hard_bounces": 7,
        "soft_bounces": 1,
        "complaints": 1,
        "bounce_rate": round(7 / 110, 6),
        "soft_bounce_rate": round(1 / 110, 6),
        "complaint_rate": round(1 / 110, 6),
        "bounce_warning": True,
        "complaint_warning": True,
    }

    response = client.post(f"/admin/issues/{issue_id}/resume", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert 'id="auto-paused"' not in page and 'id="auto-pause-off"' in page
    with db.sessions() as s:
        issue = s.get(Issue, issue_id)
        assert issue.status == "sending" and issue.auto_pause is False and issue.paused_reason is None


def test_an_editor_sees_the_panel_but_not_the_buttons(client, db, settings):
    sign_in(client, db, email="editor@hiow.nhs.uk", role="editor")
    issue_id, _rows_ = _paused_issue(db, settings)
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert "This send paused itself" in page and "A publisher in your team decides" in page
    assert f"/admin/issues/{issue_id}/resume" not in page


def test_a_clean_send_shows_its_figures_without_a_warning(client, db, settings):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    _people(db, 3)
    issue_id = _sending_issue(db)
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert 'id="issue-figures"' in page and "warning" not in page[page.index('id="bounces"') :].split("</table>")[0]


# --- the recipients page ---------------------------------------------------------------------------------------------


def test_the_recipients_page_shows_each_bounce_with_its_code_and_picks_out_who_bounced_complained_or_left(
    client, db, settings
):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    issue_id, rows = _paused_issue(db, settings, people=120, sent=110, bounces=7)
    with db.transaction() as s:
        record(s, Report(source="smtp", kind="complaint", key="arf:2", delivery_id=rows[40]), settings)

    page = client.get(f"/admin/issues/{issue_id}/recipients?who=bounced").get_data(as_text=True)
    assert page.count("Hard bounce by DSN: 550 5.1.1") == 7 and page.count(">5.1.1<") == 7
    assert "person0@example.org" in page and "person40@example.org" not in page
    page = client.get(f"/admin/issues/{issue_id}/recipients?who=complained").get_data(as_text=True)
    assert "person40@example.org" in page and "Reported as spam by DSN" in page and "person0@" not in page
    page = client.get(f"/admin/issues/{issue_id}/recipients?who=left").get_data(as_text=True)
    assert page.count('<tr class="nhsuk-table__row">') == 1 + 8  # the header and everyone suppressed
    assert "Complained" in page and "Bounced" in page
    assert client.get(f"/admin/issues/{issue_id}/recipients?who=nobody").status_code == 400

    with db.transaction() as s:
        _row, token = create_token(s, "recipients", role="publisher")
    answer = client.get(
        f"/api/v1/issues/{issue_id}/deliveries?who=bounced", headers={"Authorization": f"Bearer {token}"}
    ).get_json()
    assert len(answer["deliveries"]) == 7
    first = answer["deliveries"][0]
    assert first["heard"]["status"] == "5.1.1" and first["heard"]["severity"] == "hard"
    assert first["subscriber_status"] == "bounced" and first["status"] == "bounced"


# --- the suppression list ------------------------------------------------------------------------------------------


def _admin_form(client, path="/admin/suppressions"):
    return csrf_from(client.get(path).data)


def test_a_publisher_suppresses_a_subscriber_by_hand_and_their_subscriptions_end(client, db):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    [person] = _people(db, 1)
    response = client.post(
        "/admin/suppressions",
        data={
            "csrf_token": _admin_form(client),
            "email": "Person0@Example.org",
            "reason": "bounced",
            "note": "Their manager says they left",
        },
    )
    assert response.status_code == 303
    with db.sessions() as s:
        subscriber = s.get(Subscriber, person)
        assert subscriber.status == "bounced"
        assert s.scalar(select(func.count()).select_from(Subscription).where(Subscription.ended_at.is_(None))) == 0
        row = s.scalar(select(Suppression))
        assert row.email_hash == subscriber.email_hash and row.reason == "bounced"
        assert row.detail == "Added by publisher@hiow.nhs.uk: Their manager says they left"
        added = s.scalar(select(AuditEvent).where(AuditEvent.action == "suppression.add"))
        assert added.actor_label == "publisher@hiow.nhs.uk" and added.details["subscriber"] == person
        assert "person0" not in str(added.details).lower()  # the audit keeps no address

    page = client.get("/admin/suppressions?email=person0@example.org").get_data(as_text=True)
    assert "Their manager says they left" in page and "person0@example.org" in page
    again = client.post(
        "/admin/suppressions",
        data={"csrf_token": _admin_form(client), "email": "person0@example.org", "reason": "complained"},
    )
    assert again.status_code == 409 and b"on the suppression list already" in again.data


def test_an_unknown_address_is_listed_by_hash_and_found_by_search(client, db):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    response = client.post(
        "/admin/suppressions",
        data={"csrf_token": _admin_form(client), "email": "stranger@example.org", "reason": "unsubscribed"},
    )
    assert response.status_code == 303
    with db.sessions() as s:
        row = s.scalar(select(Suppression))
        assert row.email_hash == hash_address(s, "stranger@example.org") and row.reason == "unsubscribed"
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0
    found = client.get("/admin/suppressions?email=STRANGER@example.org").get_data(as_text=True)
    assert "Unsubscribed" in found and "Added by publisher@hiow.nhs.uk" in found
    missed = client.get("/admin/suppressions?email=someone.else@example.org").get_data(as_text=True)
    assert "Nothing on the list matches" in missed


def test_removing_an_address_needs_a_reason_keeps_the_audit_and_subscribes_nobody(client, db, settings):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    issue_id, rows = _paused_issue(db, settings, people=120, sent=110, bounces=7)
    with db.sessions() as s:
        row = s.scalar(select(Suppression).order_by(Suppression.id).limit(1))
        person = s.scalar(select(Subscriber).where(Subscriber.email_hash == row.email_hash))
        assert row.issue_id == issue_id and row.event_id is not None  # from which message and which report
    page = client.get("/admin/suppressions").get_data(as_text=True)
    assert page.count('id="suppression-') == 7 and "report " in page and "Progress on Project Fusion" in page

    refused = client.post(f"/admin/suppressions/{row.id}/remove", data={"csrf_token": csrf_from(page), "reason": " "})
    assert refused.status_code == 303
    with db.sessions() as s:
        assert s.get(Suppression, row.id) is not None
    done = client.post(
        f"/admin/suppressions/{row.id}/remove",
        data={"csrf_token": csrf_from(page), "reason": "They phoned: the mailbox works again"},
    )
    assert done.status_code == 303
    assert "must sign up again" in client.get("/admin/suppressions").get_data(as_text=True)
    with db.sessions() as s:
        assert s.get(Suppression, row.id) is None
        assert s.get(Subscriber, person.id).status == "bounced"  # not subscribed again: they sign up and confirm
        removed = s.scalar(select(AuditEvent).where(AuditEvent.action == "suppression.remove"))
        assert removed.actor_label == "publisher@hiow.nhs.uk" and removed.target_id == row.id
        assert removed.details["why"] == "They phoned: the mailbox works again"
        assert removed.details["reason"] == "bounced" and removed.details["issue"] == issue_id
    assert (
        client.post(
            "/admin/suppressions/999999/remove", data={"csrf_token": csrf_from(page), "reason": "x"}
        ).status_code
        == 404
    )


def test_an_editor_may_read_the_list_but_not_change_it(client, db):
    sign_in(client, db, email="editor@hiow.nhs.uk", role="editor")
    page = client.get("/admin/suppressions")
    assert page.status_code == 200 and b"A publisher in your team adds addresses" in page.data
    assert b'action="/admin/suppressions"' not in page.data.replace(b'method="get" action="/admin/suppressions"', b"")
    response = client.post(
        "/admin/suppressions", data={"csrf_token": csrf_from(page.data), "email": "a@example.org", "reason": "bounced"}
    )
    assert response.status_code == 403


def _api(client, db, role):
    with db.transaction() as s:
        owner = create_admin(s, f"{role}-owner@hiow.nhs.uk", PASSWORD, role=role)
        _row, token = create_token(s, f"{role} token", owner=owner)
    return {"Authorization": f"Bearer {token}"}


def test_the_suppression_api_adds_lists_and_removes(client, db):
    publisher = _api(client, db, "publisher")
    editor = _api(client, db, "editor")
    [person] = _people(db, 1)
    added = client.post(
        "/api/v1/suppressions",
        json={"email": "person0@example.org", "reason": "complained", "note": "Forwarded a spam report to us"},
        headers=publisher,
    )
    assert added.status_code == 201, added.get_json()
    body = added.get_json()
    assert body["email"] == "person0@example.org" and body["subscriber_id"] == person and body["reason"] == "complained"
    assert added.headers["Location"].endswith(f"/api/v1/suppressions/{body['id']}")
    stranger = client.post(
        "/api/v1/suppressions", json={"email": "x@example.org", "reason": "bounced"}, headers=publisher
    )
    assert stranger.status_code == 201 and stranger.get_json()["subscriber_id"] is None
    duplicate = client.post(
        "/api/v1/suppressions", json={"email": "X@example.org", "reason": "bounced"}, headers=publisher
    )
    assert duplicate.status_code == 409

    listed = client.get("/api/v1/suppressions", headers=editor).get_json()
    assert [r["id"] for r in listed["suppressions"]] == [stranger.get_json()["id"], body["id"]]  # newest first
    assert all(r["email"] is None for r in listed["suppressions"])  # an editor's token sees no addresses
    found = client.get("/api/v1/suppressions?email=person0@example.org", headers=publisher).get_json()
    assert [r["id"] for r in found["suppressions"]] == [body["id"]]
    assert client.get("/api/v1/suppressions?reason=bounced", headers=editor).get_json()["suppressions"][0]["email_hash"]
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert client.get(f"/api/v1/suppressions?since={tomorrow}", headers=editor).get_json()["suppressions"] == []
    paged = client.get("/api/v1/suppressions?limit=1", headers=editor).get_json()
    assert paged["next_before"] == stranger.get_json()["id"]
    older = client.get(f"/api/v1/suppressions?limit=1&before={paged['next_before']}", headers=editor).get_json()
    assert [r["id"] for r in older["suppressions"]] == [body["id"]]

    assert (
        client.post(f"/api/v1/suppressions/{body['id']}/remove", json={"reason": "x"}, headers=editor).status_code
        == 403
    )
    removed = client.post(
        f"/api/v1/suppressions/{body['id']}/remove", json={"reason": "Asked us in writing"}, headers=publisher
    )
    assert removed.status_code == 200 and removed.get_json()["id"] == body["id"]
    assert client.get(f"/api/v1/suppressions/{body['id']}", headers=editor).status_code == 404
    with db.sessions() as s:
        assert s.get(Subscriber, person).status == "complained"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.org\r\nBcc: b@example.org", "reason": "bounced"}, "email"),
        ({"email": "a@example.org", "reason": "bounced", "note": "x" * 10_000}, "note"),
        ({"email": "a@example.org", "reason": "erased"}, "reason"),
        ({"email": "a@example.org"}, "reason"),
        ({"email": "a@example.org", "reason": "bounced", "extra": 1}, "extra"),
        ({"email": 5, "reason": "bounced"}, "email"),
    ],
)
def test_hostile_additions_are_a_400_naming_the_field_and_list_nothing(client, db, body, field):
    response = client.post("/api/v1/suppressions", json=body, headers=_api(client, db, "publisher"))
    assert response.status_code == 400 and field in response.get_json()["fields"]
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0


def test_hostile_reads_and_removals_are_clear_refusals(client, db):
    publisher = _api(client, db, "publisher")
    assert client.get("/api/v1/suppressions?email=not-an-address", headers=publisher).status_code == 400
    assert client.get("/api/v1/suppressions?since=yesterday", headers=publisher).status_code == 400
    assert client.get("/api/v1/suppressions?reason=whatever", headers=publisher).status_code == 400
    assert client.get("/api/v1/suppressions/0", headers=publisher).status_code == 404
    assert (
        client.post("/api/v1/suppressions/12345/remove", json={"reason": "why"}, headers=publisher).status_code == 404
    )
    long = client.post("/api/v1/suppressions/12345/remove", json={"reason": "x" * 10_000}, headers=publisher)
    assert long.status_code == 400 and "reason" in long.get_json()["fields"]
    assert client.post("/api/v1/suppressions/1/remove", json={}, headers=publisher).status_code == 400
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    page = client.get("/admin/suppressions?email=a%0d%0ab@example.org&since=31/12/2026")
    assert page.status_code == 400 and b"Showing the whole list" in page.data
    added = client.post(
        "/admin/suppressions",
        data={"csrf_token": csrf_from(page.data), "email": "a@example.org\r\nBcc: b@x.org", "reason": "bounced"},
    )
    assert added.status_code == 400 and b"correct format" in added.data


# --- the last 30 days ---------------------------------------------------------------------------------------------


def test_the_statistics_page_shows_the_last_30_days_bounces_and_complaints(client, db, settings):
    sign_in(client, db, email="editor@hiow.nhs.uk", role="editor")
    assert b"Nothing was sent in the last 30 days" in client.get("/admin/stats").data
    issue_id, rows = _paused_issue(db, settings, people=120, sent=110, bounces=7)
    old_id = _sending_issue(db, subject="An old issue")  # started 40 days ago: not counted
    with db.transaction() as s:
        s.get(Issue, old_id).send_requested_at = utcnow() - timedelta(days=40)
        for row in s.scalars(select(Delivery).where(Delivery.issue_id == old_id)):
            row.status = "bounced"
    page = client.get("/admin/stats").get_data(as_text=True)
    recent = page[page.index('id="recent-figures"') :].split("</table>")[0]
    assert re.search(r'data-figure="sent">110<', recent) and re.search(r'data-figure="hard_bounces">7<', recent)
    assert re.search(r'data-figure="bounce_rate">6.4%', recent)
    assert 'id="recent-figures-bounce-warning"' in page and 'id="recent-figures-complaint-warning"' not in page
    assert issue_id
