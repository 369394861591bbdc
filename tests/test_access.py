"""Who may do what, and answers that never become a 500 whatever the input."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from conftest import csrf_from
from mailer.accounts import create_token
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.cli import main
from mailer.links import Links
from mailer.models import AdminUser, Issue, Subscriber
from support.flows import sign_in, write_issue


def _token(db, role):
    with db.transaction() as s:
        return create_token(s, f"{role} client", role)[1]


def test_an_editor_writes_but_cannot_send(client, db):
    sign_in(client, db, email="editor@hiow.nhs.uk", role="editor")
    issue_id = write_issue(client)
    page = client.get(f"/admin/issues/{issue_id}")
    assert b"Submit for review" in page.data
    for action in ("approve", "send", "schedule"):
        response = client.post(f"/admin/issues/{issue_id}/{action}", data={"csrf_token": csrf_from(page.data)})
        assert response.status_code == 403
    assert client.post(f"/admin/issues/{issue_id}/submit", data={"csrf_token": csrf_from(page.data)}).status_code == 303
    page = client.get(f"/admin/issues/{issue_id}")
    assert b"A publisher in your team approves and sends issues" in page.data
    assert (
        client.post(f"/admin/issues/{issue_id}/approve", data={"csrf_token": csrf_from(page.data)}).status_code == 403
    )
    with db.transaction() as s:
        assert s.get(Issue, issue_id).status == "in_review"


def test_a_publisher_sees_how_many_people_the_issue_will_reach(client, db):
    with db.transaction() as s:
        for email in ("a@example.org", "b@example.org"):
            confirm_subscription(s, request_subscription(s, email=email, topic_slugs=["careers"]).request_id)
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    page = client.get(f"/admin/issues/{write_issue(client, topic='careers')}")
    assert b"This issue will go to <strong>2</strong> people" in page.data
    empty = client.get(f"/admin/issues/{write_issue(client, topic='sustainability')}")
    assert b"Nobody is subscribed to Sustainability as it happens" in empty.data


def test_api_roles(client, db):
    editor = {"Authorization": f"Bearer {_token(db, 'editor')}"}
    publisher = {"Authorization": f"Bearer {_token(db, 'publisher')}"}
    created = client.post("/api/v1/issues", json={"subject": "S", "body": "B", "topic": "careers"}, headers=editor)
    assert created.status_code == 201
    issue_id = created.get_json()["id"]
    assert client.post(f"/api/v1/issues/{issue_id}/submit", headers=editor).status_code == 200
    for action in ("approve", "send"):
        refused = client.post(f"/api/v1/issues/{issue_id}/{action}", headers=editor)
        assert refused.status_code == 403 and "needs publisher" in refused.get_json()["error"]
    assert client.post(f"/api/v1/issues/{issue_id}/approve", headers=publisher).status_code == 200
    assert client.post(f"/api/v1/issues/{issue_id}/send", headers=publisher).status_code == 202


def test_a_deactivated_account_is_signed_out(client, db):
    sign_in(client, db)
    assert client.get("/admin/").status_code == 200
    with db.transaction() as s:
        s.scalar(select(AdminUser)).active = False
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_a_revoked_token_stops_working(client, db, test_env):
    token = _token(db, "admin")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/topics", headers=headers).status_code == 200
    listing = CliRunner().invoke(main, ["token", "list"], env=test_env)
    assert token[:8] in listing.output and token not in listing.output
    result = CliRunner().invoke(main, ["token", "revoke", token[:8]], env=test_env)
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/topics", headers=headers).status_code == 401


def test_huge_ids_are_not_found(client, db):
    headers = {"Authorization": f"Bearer {_token(db, 'admin')}"}
    huge = "99999999999999999999999"
    assert client.get(f"/api/v1/issues/{huge}", headers=headers).status_code == 404
    assert client.post(f"/api/v1/issues/{huge}/send", headers=headers).status_code == 404
    sign_in(client, db)
    for path in (f"/admin/issues/{huge}", f"/admin/issues/{huge}/preview", f"/admin/issues/{huge}/progress"):
        assert client.get(path).status_code == 404


def test_invisible_and_unencodable_characters_never_cause_a_500(client, db):
    headers = {"Authorization": f"Bearer {_token(db, 'admin')}"}
    body = '{"subject": "Fusion \\ud800 news", "body": "a", "topic": "careers"}'
    assert client.post("/api/v1/issues", data=body, content_type="application/json", headers=headers).status_code == 400
    ok = client.post(
        "/api/v1/issues", json={"subject": "Fine", "body": "a\x00b\ud800c\ufffe", "topic": "careers"}, headers=headers
    )
    assert ok.status_code == 201
    with db.transaction() as s:
        assert s.get(Issue, ok.get_json()["id"]).body == "abc"
    sign_in(client, db)
    assert client.get(f"/admin/issues/{ok.get_json()['id']}").status_code == 200

    page = client.get("/subscribe")
    response = client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(page.data),
            "email": "nul@example.org",
            "name": "Bob\x00 \x07Smith",
            "topics": ["careers"],
            "area": "southampton",
        },
    )
    assert response.status_code == 303
    bad_email = client.post(
        "/subscribe", data={"csrf_token": csrf_from(page.data), "email": "a\x00@example.org", "topics": ["careers"]}
    )
    assert bad_email.status_code == 400


def test_pages_carry_security_headers(client):
    response = client.get("/")
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_links_signed_with_a_retired_key_still_work(app, db, settings):
    with db.transaction() as s:
        outcome = request_subscription(s, email="old@example.org", topic_slugs=["careers"])
        confirm_subscription(s, outcome.request_id)
    old_link = Links("the-old-key", settings.base_url).unsubscribe_token(outcome.public_id, None)
    from mailer.web import create_app

    rotated = create_app(settings.with_overrides(secret_key="a-new-key", secret_key_fallbacks=("the-old-key",)))
    response = rotated.test_client().post(f"/u/{old_link}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    with db.transaction() as s:
        assert s.get(Subscriber, outcome.subscriber_id).status == "unsubscribed"
    plain = create_app(settings.with_overrides(secret_key="a-new-key"))
    assert plain.test_client().get(f"/u/{old_link}").status_code == 400


def test_the_dev_mail_catcher_is_for_those_who_may_see_subscribers(settings, db, tmp_path):
    from mailer.web import create_app

    caught = tmp_path / "mailcatcher"
    caught.mkdir()
    (caught / f"20261102T090000-{'a' * 32}.eml").write_bytes(
        b"X-Mailcatcher-Rcpt: jo.bloggs@example.org\r\nFrom: trust-matters@mailer.test\r\n"
        b"To: jo.bloggs@example.org\r\nSubject: Confirm your subscription\r\n\r\nhttp://mailer.test/confirm/x\r\n"
    )
    app = create_app(settings.with_overrides(mailcatcher_dir=caught))
    pages = ["/admin/mail", f"/admin/mail/20261102T090000-{'a' * 32}.eml"]

    editor = app.test_client()
    sign_in(editor, db, email="editor@hiow.nhs.uk", role="editor")
    assert b"Mail catcher" not in editor.get("/admin/").data
    for page in pages:
        refused = editor.get(page)
        assert refused.status_code == 403 and b"jo.bloggs@example.org" not in refused.data

    publisher = app.test_client()
    sign_in(publisher, db, email="publisher@hiow.nhs.uk", role="publisher")
    assert b"Mail catcher" in publisher.get("/admin/").data
    for page in pages:
        shown = publisher.get(page)
        assert shown.status_code == 200 and b"jo.bloggs@example.org" in shown.data
