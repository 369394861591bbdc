"""API tokens act for a team member: their role at most, their name on what the token does, their account's life.

So APPROVAL_BY_ANOTHER binds tokens too: nobody writes an issue with a token and approves it themselves, in the
browser or with a second token."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from conftest import csrf_from
from mailer.accounts import change_account, create_admin, create_token
from mailer.cli import main
from mailer.errors import InvalidInput
from mailer.models import AdminUser, ApiToken, AuditEvent, Issue
from support.flows import sign_in

PASSWORD = "a long enough password"


@pytest.fixture()
def two_person_app(settings):
    from mailer.web import create_app
    from mailer.web.limits import limiter

    application = create_app(settings.with_overrides(approval_by_another=True))
    application.config["TESTING"] = True
    yield application
    with application.app_context():
        limiter.reset()


def _person(db, email: str, role: str) -> int:
    with db.transaction() as s:
        return create_admin(s, email, PASSWORD, role=role).id


def _token_for(db, email: str, name: str = "script", role: str | None = None) -> dict:
    with db.transaction() as s:
        owner = s.scalar(select(AdminUser).where(AdminUser.email == email))
        return {"Authorization": f"Bearer {create_token(s, name, role, owner=owner)[1]}"}


def _signed_in(app, email: str):
    browser = app.test_client()
    page = browser.get("/admin/login")
    response = browser.post(
        "/admin/login", data={"csrf_token": csrf_from(page.data), "email": email, "password": PASSWORD}
    )
    assert response.status_code == 303
    return browser


def _written_and_submitted(client, headers) -> int:
    created = client.post("/api/v1/issues", json={"subject": "S", "body": "B", "topic": "careers"}, headers=headers)
    assert created.status_code == 201, created.get_json()
    issue_id = created.get_json()["id"]
    assert client.post(f"/api/v1/issues/{issue_id}/submit", headers=headers).status_code == 200
    return issue_id


def test_an_issue_written_with_a_token_cannot_be_approved_by_the_same_person(two_person_app, db):
    jo = _person(db, "jo@hiow.nhs.uk", "publisher")
    sam = _person(db, "sam@hiow.nhs.uk", "publisher")
    api = two_person_app.test_client()
    issue_id = _written_and_submitted(api, _token_for(db, "jo@hiow.nhs.uk"))

    # Jo, signed in to the admin, is still the writer.
    browser = _signed_in(two_person_app, "jo@hiow.nhs.uk")
    page = browser.get(f"/admin/issues/{issue_id}")
    refused = browser.post(
        f"/admin/issues/{issue_id}/approve", data={"csrf_token": csrf_from(page.data)}, follow_redirects=True
    )
    assert b"Someone other than the person who wrote or submitted this issue must approve it" in refused.data
    # ... and so with a second token of Jo's own.
    second = api.post(f"/api/v1/issues/{issue_id}/approve", headers=_token_for(db, "jo@hiow.nhs.uk", "another"))
    assert second.status_code == 409 and "Someone other than" in second.get_json()["error"]
    with db.transaction() as s:
        assert s.get(Issue, issue_id).status == "in_review"

    # Sam approves with Sam's token; each step names the person behind it.
    approved = api.post(f"/api/v1/issues/{issue_id}/approve", headers=_token_for(db, "sam@hiow.nhs.uk"))
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        assert (issue.created_by_id, issue.submitted_by_id, issue.approved_by_id) == (jo, jo, sam)
        labels = [
            (e.action, e.actor_type, e.actor_label)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.target_type == "issue").order_by(AuditEvent.id))
        ]
    assert labels == [
        ("issue.create", "token", "token script for jo@hiow.nhs.uk"),
        ("issue.submit", "token", "token script for jo@hiow.nhs.uk"),
        ("issue.approve", "token", "token script for sam@hiow.nhs.uk"),
    ]


def test_an_issue_written_in_the_browser_cannot_be_approved_with_the_writers_token(two_person_app, db):
    _person(db, "jo@hiow.nhs.uk", "publisher")
    browser = _signed_in(two_person_app, "jo@hiow.nhs.uk")
    page = browser.get("/admin/issues/new")
    created = browser.post(
        "/admin/issues/new",
        data={"csrf_token": csrf_from(page.data), "subject": "S", "body": "B", "topic": "careers", "preheader": ""},
    )
    issue_id = int(created.headers["Location"].rstrip("/").split("/")[-1])
    page = browser.get(f"/admin/issues/{issue_id}")
    assert (
        browser.post(f"/admin/issues/{issue_id}/submit", data={"csrf_token": csrf_from(page.data)}).status_code == 303
    )
    refused = two_person_app.test_client().post(
        f"/api/v1/issues/{issue_id}/approve", headers=_token_for(db, "jo@hiow.nhs.uk")
    )
    assert refused.status_code == 409 and "Someone other than" in refused.get_json()["error"]


def test_a_token_can_do_no_more_than_its_owner_and_stops_with_their_account(client, db):
    editor = _person(db, "ed@hiow.nhs.uk", "editor")
    with db.transaction() as s, pytest.raises(InvalidInput, match="ed@hiow.nhs.uk's role is editor"):
        create_token(s, "too strong", "admin", owner=s.get(AdminUser, editor))
    _person(db, "admin@hiow.nhs.uk", "admin")
    pat = _person(db, "pat@hiow.nhs.uk", "publisher")
    headers = _token_for(db, "pat@hiow.nhs.uk")  # the owner's role: publisher
    issue_id = _written_and_submitted(client, _token_for(db, "ed@hiow.nhs.uk"))

    with db.transaction() as s:
        change_account(s, pat, role="editor")  # Pat is demoted: so is Pat's token
    demoted = client.post(f"/api/v1/issues/{issue_id}/approve", headers=headers)
    assert demoted.status_code == 403 and "role (editor)" in demoted.get_json()["error"]

    with db.transaction() as s:
        change_account(s, pat, role="publisher")
        change_account(s, pat, active=False)  # Pat leaves: the token stops
    stopped = client.get("/api/v1/topics", headers=headers)
    assert (
        stopped.status_code == 401 and "pat@hiow.nhs.uk, whose account is switched off" in stopped.get_json()["error"]
    )
    with db.transaction() as s:
        change_account(s, pat, active=True)
    assert client.post(f"/api/v1/issues/{issue_id}/approve", headers=headers).status_code == 200


def test_a_token_without_an_owner_is_refused_only_while_approval_by_another_is_on(client, two_person_app, db):
    with db.transaction() as s:
        headers = {"Authorization": f"Bearer {create_token(s, 'made before owners', 'admin')[1]}"}
    assert client.get("/api/v1/topics", headers=headers).status_code == 200
    refused = two_person_app.test_client().get("/api/v1/topics", headers=headers)
    assert refused.status_code == 401 and "mailer token create --for" in refused.get_json()["error"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")


def test_cli_creates_a_token_for_a_person_with_their_role(test_env, db, client):
    _person(db, "ed@hiow.nhs.uk", "editor")
    runner = CliRunner()
    missing = runner.invoke(main, ["token", "create", "--name", "site"], env=test_env)
    assert missing.exit_code != 0 and "--for" in missing.output
    unknown = runner.invoke(main, ["token", "create", "--name", "site", "--for", "who@hiow.nhs.uk"], env=test_env)
    assert unknown.exit_code != 0 and "No team member has the address" in unknown.output
    too_strong = runner.invoke(
        main, ["token", "create", "--name", "site", "--for", "ed@hiow.nhs.uk", "--role", "admin"], env=test_env
    )
    assert too_strong.exit_code != 0 and "cannot do more than the person" in too_strong.output

    made = runner.invoke(main, ["token", "create", "--name", "site", "--for", "Ed@hiow.nhs.uk"], env=test_env)
    assert made.exit_code == 0, made.output
    headers = {"Authorization": f"Bearer {made.output.strip()}"}
    assert client.get("/api/v1/topics", headers=headers).status_code == 200
    assert client.get("/api/v1/issues/1/deliveries", headers=headers).status_code == 403  # an editor's token
    listing = runner.invoke(main, ["token", "list"], env=test_env)
    assert "editor" in listing.output and "for ed@hiow.nhs.uk" in listing.output
    with db.transaction() as s:
        row = s.scalar(select(ApiToken))
        assert (row.role, row.owner.email) == ("editor", "ed@hiow.nhs.uk")
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "token.create"))
        assert event.details == {"name": "site", "role": "editor", "owner": "ed@hiow.nhs.uk"}


def test_the_team_page_creates_a_token_for_a_person(client, db):
    sign_in(client, db, email="admin@hiow.nhs.uk", role="admin")
    ed = _person(db, "ed@hiow.nhs.uk", "editor")
    page = client.get("/admin/team")
    assert b"Who it is for" in page.data
    form = {"csrf_token": csrf_from(page.data), "token-name": "website", "token-owner": str(ed)}
    too_strong = client.post("/admin/team/tokens", data={**form, "token-role": "publisher"})
    assert too_strong.status_code == 400 and b"cannot do more than the person it is for" in too_strong.data
    nobody = client.post("/admin/team/tokens", data={**form, "token-owner": "9" * 40})
    assert nobody.status_code == 400 and b"Choose the team member the token is for" in nobody.data

    made = client.post("/admin/team/tokens", data=form)
    assert made.status_code == 200
    secret = made.data.split(b'id="new-token">')[1].split(b"<")[0].decode()
    with db.transaction() as s:
        row = s.scalar(select(ApiToken))
        assert (row.owner_id, row.role) == (ed, "editor")
    shown = client.get("/admin/team")
    assert b"ed@hiow.nhs.uk" in shown.data.split(b"<h2>API tokens</h2>")[1]
    assert client.get("/api/v1/topics", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_tokens_made_before_owners_survive_the_upgrade_with_no_owner(tmp_path):
    from mailer.db import Database
    from mailer.schema import migrate

    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    migrate(url, "0005")
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO admin_users (email, name, password_hash, role, active, created_at)"
                " VALUES ('jo@hiow.nhs.uk', '', 'x', 'admin', 1, '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO api_tokens (name, token_hash, prefix, role, created_at)"
                " VALUES ('old', :hash, 'tm_abcde', 'publisher', '2026-01-01 00:00:00')"
            ),
            {"hash": "0" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO imports (filename, channel, api_token_id, status, created_at, counts, report)"
                " VALUES ('a.csv', 'api', 1, 'done', '2026-01-01 00:00:00', '{}', '[]')"
            )
        )
    db.dispose()
    migrate(url)
    db = Database(url)
    try:
        with db.transaction() as s:
            row = s.scalar(select(ApiToken))
            assert (row.name, row.role, row.owner_id, row.token_hash) == ("old", "publisher", None, "0" * 64)
            assert s.execute(text("SELECT api_token_id FROM imports")).scalar() == 1
    finally:
        db.dispose()
