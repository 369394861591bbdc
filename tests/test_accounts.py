"""Each accounts command (add a member, change one, issue a token, revoke it) driven through the team page and
through the `mailer` command: both write the change and the same audit row, naming who asked; a refusal writes
neither."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import csrf_from
from mailer.accounts import create_admin, create_token
from mailer.cli import main
from mailer.models import AdminUser, ApiToken, AuditEvent
from support.flows import sign_in

ADMIN = "admin@hiow.nhs.uk"
PASSWORD = "a long enough password"


@pytest.fixture()
def team_page(client, db):
    """A client signed in as an admin, who posts the team page's forms (with its CSRF token)."""
    sign_in(client, db, email=ADMIN, role="admin")

    def post(path: str, **form):
        page = client.get("/admin/team")
        return client.post(path, data={"csrf_token": csrf_from(page.data), **form})

    return post


@pytest.fixture()
def cli(test_env):
    def run(*args: str, **env: str):
        return CliRunner().invoke(main, list(args), env={**test_env, **env})

    return run


def _audited(db, action: str) -> list[tuple]:
    with db.sessions() as s:
        return [
            (e.actor_type, e.actor_label, e.target_type, e.target_id, e.details)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        ]


def _account(db, email: str) -> AdminUser:
    with db.sessions() as s:
        return s.scalar(select(AdminUser).where(AdminUser.email == email))


def _person(db, email: str, role: str = "editor") -> int:
    with db.transaction() as s:
        return create_admin(s, email, PASSWORD, role=role).id


def test_adding_a_member(team_page, cli, db):
    added = team_page("/admin/team/users", email="Jo@hiow.nhs.uk", name="Jo", role="editor", password=PASSWORD)
    assert added.status_code == 303
    made = cli("admin", "create", "sam@hiow.nhs.uk", "--role", "publisher", MAILER_ADMIN_PASSWORD=PASSWORD)
    assert made.exit_code == 0, made.output
    jo, sam = _account(db, "jo@hiow.nhs.uk"), _account(db, "sam@hiow.nhs.uk")
    assert (jo.role, jo.name, sam.role) == ("editor", "Jo", "publisher")
    assert _audited(db, "user.create") == [
        ("user", ADMIN, "admin_user", jo.id, {"email": "jo@hiow.nhs.uk", "role": "editor"}),
        ("system", "mailer admin create", "admin_user", sam.id, {"email": "sam@hiow.nhs.uk", "role": "publisher"}),
    ]

    short = team_page("/admin/team/users", email="al@hiow.nhs.uk", role="editor", password="short")
    assert short.status_code == 400 and b"at least 12 characters" in short.data
    again = cli("admin", "create", "jo@hiow.nhs.uk", MAILER_ADMIN_PASSWORD=PASSWORD)
    assert again.exit_code != 0 and "already exists" in again.output
    twice = team_page("/admin/team/users", email="sam@hiow.nhs.uk", role="editor", password=PASSWORD)
    assert twice.status_code == 409
    assert len(_audited(db, "user.create")) == 2 and _account(db, "al@hiow.nhs.uk") is None


def test_changing_a_member(team_page, cli, db):
    jo = _person(db, "jo@hiow.nhs.uk")
    assert team_page(f"/admin/team/users/{jo}", role="publisher").status_code == 303
    assert team_page(f"/admin/team/users/{jo}", role="publisher", active="off").status_code == 303
    assert not _account(db, "jo@hiow.nhs.uk").active
    on = cli("admin", "change", "Jo@hiow.nhs.uk", "--on")
    assert on.exit_code == 0 and "jo@hiow.nhs.uk is a publisher, on" in on.output
    demoted = cli("admin", "change", "jo@hiow.nhs.uk", "--role", "editor")
    assert demoted.exit_code == 0, demoted.output
    assert _account(db, "jo@hiow.nhs.uk").role == "editor"
    assert _audited(db, "user.change") == [
        ("user", ADMIN, "admin_user", jo, {"role": "publisher"}),
        ("user", ADMIN, "admin_user", jo, {"role": "publisher", "active": False}),
        ("system", "mailer admin change", "admin_user", jo, {"active": True}),
        ("system", "mailer admin change", "admin_user", jo, {"role": "editor"}),
    ]

    # The last active admin stays one, whoever asks; an unknown account or role changes nothing.
    admin = _account(db, ADMIN).id
    team_page(f"/admin/team/users/{admin}", role="editor")
    last = cli("admin", "change", ADMIN, "--off")
    assert last.exit_code != 0 and "last active admin" in last.output
    assert team_page("/admin/team/users/999999", role="editor").status_code == 404
    assert team_page(f"/admin/team/users/{jo}", role="owner").status_code == 303
    nobody = cli("admin", "change", "who@hiow.nhs.uk", "--role", "editor")
    assert nobody.exit_code != 0 and "No team member has the address" in nobody.output
    nothing = cli("admin", "change", "jo@hiow.nhs.uk")
    assert nothing.exit_code != 0 and "--role, --off or --on" in nothing.output
    assert (_account(db, ADMIN).role, _account(db, ADMIN).active, _account(db, "jo@hiow.nhs.uk").role) == (
        "admin",
        True,
        "editor",
    )
    assert len(_audited(db, "user.change")) == 4


def test_issuing_a_token(team_page, cli, db):
    ed = _person(db, "ed@hiow.nhs.uk")
    made = team_page("/admin/team/tokens", **{"token-name": "website", "token-owner": str(ed), "token-role": ""})
    assert made.status_code == 200 and b'id="new-token"' in made.data
    printed = cli("token", "create", "--name", "sync", "--for", "ed@hiow.nhs.uk")
    assert printed.exit_code == 0, printed.output
    with db.sessions() as s:
        website, sync = s.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    assert _audited(db, "token.create") == [
        ("user", ADMIN, "api_token", website.id, {"name": "website", "role": "editor", "owner": "ed@hiow.nhs.uk"}),
        (
            "system",
            "mailer token create",
            "api_token",
            sync.id,
            {"name": "sync", "role": "editor", "owner": "ed@hiow.nhs.uk"},
        ),
    ]

    too_strong = team_page("/admin/team/tokens", **{"token-name": "x", "token-owner": str(ed), "token-role": "admin"})
    assert too_strong.status_code == 400
    unnamed = cli("token", "create", "--name", "  ", "--for", "ed@hiow.nhs.uk")
    assert unnamed.exit_code != 0 and "Give the token a name" in unnamed.output
    with db.sessions() as s:
        assert len(s.scalars(select(ApiToken)).all()) == 2
    assert len(_audited(db, "token.create")) == 2


def test_revoking_a_token(team_page, cli, client, db):
    ed = _person(db, "ed@hiow.nhs.uk")
    with db.transaction() as s:
        owner = s.get(AdminUser, ed)
        (website, website_secret), (sync, sync_secret) = (
            create_token(s, "website", owner=owner),
            create_token(s, "sync", owner=owner),
        )
        website_id, sync_id, sync_prefix = website.id, sync.id, sync.prefix
    assert team_page(f"/admin/team/tokens/{website_id}/revoke").status_code == 303
    revoked = cli("token", "revoke", sync_prefix)
    assert revoked.exit_code == 0 and f"revoked {sync_prefix} (sync)" in revoked.output
    for secret in (website_secret, sync_secret):
        assert client.get("/api/v1/topics", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert _audited(db, "token.revoke") == [
        ("user", ADMIN, "api_token", website_id, {"name": "website"}),
        ("system", "mailer token revoke", "api_token", sync_id, {"name": "sync"}),
    ]

    # Revoking again changes nothing and records nothing; nor does a token that does not exist.
    assert team_page(f"/admin/team/tokens/{website_id}/revoke").status_code == 303
    again = cli("token", "revoke", sync_prefix)
    assert again.exit_code != 0 and "No live token starts with" in again.output
    assert team_page("/admin/team/tokens/999999/revoke").status_code == 404
    assert len(_audited(db, "token.revoke")) == 2
