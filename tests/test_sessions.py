"""Admin sign-ins end on the server: signing out, the idle timeout and the absolute lifetime each stop a cookie.

Flask's cookie session alone keeps a copied cookie working after sign-out; these tests copy the cookie into a
second browser (client) and check what the server then lets it do.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from conftest import csrf_from
from mailer.config import ConfigError, load_settings
from mailer.models import AdminSession, AuditEvent
from support.flows import sign_in


def _copy_cookie(app, client):
    """A second browser holding a copy of `client`'s session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def _signed_in(client) -> bool:
    response = client.get("/admin/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"], response.status_code
    return False


def _sign_out(client):
    page = client.get("/admin/")
    response = client.post("/admin/logout", data={"csrf_token": csrf_from(page.data)})
    assert response.status_code == 303
    return response


def _sessions(db):
    with db.sessions() as s:
        return list(s.scalars(select(AdminSession).order_by(AdminSession.id)))


def test_a_copied_cookie_stops_working_when_its_owner_signs_out(app, client, db):
    sign_in(client, db)
    thief = _copy_cookie(app, client)
    assert _signed_in(thief)  # the copy works while the sign-in is live

    _sign_out(client)
    assert not _signed_in(client)
    assert not _signed_in(thief)
    [row] = _sessions(db)
    assert row.ended_reason == "signed_out" and row.ended_at is not None
    with db.sessions() as s:
        actions = list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["user.login", "user.logout"]


def test_signing_out_ends_only_that_sign_in(app, client, db):
    sign_in(client, db)
    laptop = app.test_client()
    page = laptop.get("/admin/login")
    laptop.post(
        "/admin/login",
        data={"csrf_token": csrf_from(page.data), "email": "editor@hiow.nhs.uk", "password": "a long enough password"},
    )
    assert _signed_in(laptop)
    _sign_out(client)
    assert _signed_in(laptop)
    assert [r.ended_reason for r in _sessions(db)] == ["signed_out", None]


def test_an_unused_sign_in_ends_after_the_idle_timeout(app, client, db):
    with time_machine.travel("2026-12-01 09:00 +0000", tick=False) as clock:
        sign_in(client, db)
        clock.shift(timedelta(minutes=29))
        assert _signed_in(client)  # and this use pushes the timeout back
        clock.shift(timedelta(minutes=29))
        assert _signed_in(client)
        thief = _copy_cookie(app, client)
        clock.shift(timedelta(minutes=30))
        assert not _signed_in(thief)
        assert not _signed_in(client)
    [row] = _sessions(db)
    assert row.ended_reason == "idle"


def test_the_idle_timeout_is_a_setting(settings, db):
    from mailer.web import create_app

    app = create_app(settings.with_overrides(session_idle_minutes=5))
    app.config["TESTING"] = True
    client = app.test_client()
    with time_machine.travel("2026-12-01 09:00 +0000", tick=False) as clock:
        sign_in(client, db)
        clock.shift(timedelta(minutes=4))
        assert _signed_in(client)
        clock.shift(timedelta(minutes=5))
        assert not _signed_in(client)


def test_session_idle_minutes_is_read_from_the_environment():
    assert load_settings({"SECRET_KEY": "x"}).session_idle_minutes == 30
    assert load_settings({"SECRET_KEY": "x", "SESSION_IDLE_MINUTES": "15"}).session_idle_minutes == 15
    for bad in ("0", "half an hour", "-5"):
        with pytest.raises(ConfigError, match="SESSION_IDLE_MINUTES"):
            load_settings({"SECRET_KEY": "x", "SESSION_IDLE_MINUTES": bad})


def test_a_busy_sign_in_still_ends_eight_hours_after_it_began(client, db):
    with time_machine.travel("2026-12-01 09:00 +0000", tick=False) as clock:
        sign_in(client, db)
        for _ in range(23):  # used every 20 minutes: never idle
            clock.shift(timedelta(minutes=20))
            assert _signed_in(client)
        clock.shift(timedelta(minutes=20))  # 8 hours after signing in
        assert not _signed_in(client)
    [row] = _sessions(db)
    assert row.ended_reason == "expired"


def test_signing_in_gives_a_new_session_and_csrf_token(app, client, db):
    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, "editor@hiow.nhs.uk", "a long enough password", role="editor")
    # What someone could plant in a shared browser before its next user signs in: a cookie and its token.
    page = client.get("/admin/login")
    planted_token, planted_cookie = csrf_from(page.data), client.get_cookie("session").value
    response = client.post(
        "/admin/login",
        data={"csrf_token": planted_token, "email": "editor@hiow.nhs.uk", "password": "a long enough password"},
    )
    assert response.status_code == 303
    assert client.get_cookie("session").value != planted_cookie
    fresh_token = csrf_from(client.get("/admin/issues/new").data)
    assert fresh_token != planted_token

    issue = {"subject": "Planted", "body": "x", "topic": "trust-matters", "preheader": ""}
    refused = client.post("/admin/issues/new", data={**issue, "csrf_token": planted_token})
    assert refused.status_code == 400 and b"Your form has expired" in refused.data
    accepted = client.post("/admin/issues/new", data={**issue, "csrf_token": fresh_token})
    assert accepted.status_code == 303

    planted = app.test_client()
    planted.set_cookie("session", planted_cookie)
    assert not _signed_in(planted)


def test_a_cookie_with_no_server_side_sign_in_is_not_signed_in(app, client, db):
    """A cookie made before this change, or by anyone holding the secret key, names no sign-in row."""
    sign_in(client, db)
    with client.session_transaction() as cookie:
        cookie.pop("admin_session")
    assert not _signed_in(client)
