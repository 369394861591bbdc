"""Accounts' own security: a TOTP second factor (enrolment, sign-in in two steps, recovery codes, no replay),
MFA_REQUIRED, an admin's reset of a factor, password change, password reset by email, lockout per address.

Through the admin pages with the test client, against the real database; reset mails through real Celery
workers into the test SMTP server.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
import time_machine
from sqlalchemy import func, select

from conftest import csrf_from, wait_until
from mailer import sso
from mailer.accounts import create_admin, factors, lockout, passwords
from mailer.models import AdminSession, AdminUser, AuditEvent, ExternalIdentity, PasswordReset, utcnow
from support.flows import next_code, path_of, sign_in, sign_in_with_code, without_nonce

PASSWORD = "a long enough password"
NEW_PASSWORD = "another long enough password"


def _actions(db, prefix: str = "user.") -> list[tuple]:
    with db.sessions() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action.like(f"{prefix}%")).order_by(AuditEvent.id))
        return [(e.action, e.details) for e in rows]


def _account(db, email: str) -> AdminUser:
    with db.sessions() as s:
        return s.scalar(select(AdminUser).where(AdminUser.email == email))


def _signed_in(client) -> bool:
    response = client.get("/admin/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"], response.status_code
    return False


def _post(client, path: str, page: str | None = None, **form):
    token = csrf_from(client.get(page or path).data)
    return client.post(path, data={"csrf_token": token, **form})


def _password_step(client, email: str, password: str = PASSWORD, **environ):
    page = client.get("/admin/login")
    return client.post(
        "/admin/login",
        data={"csrf_token": csrf_from(page.data), "email": email, "password": password},
        environ_base=environ,
    )


# --- enrolling ---------------------------------------------------------------------------------------------


def test_enrolling_shows_a_qr_code_and_the_key_and_switches_on_only_after_a_code(client, db, settings):
    sign_in(client, db, email="jo@hiow.nhs.uk", role="editor")
    page = client.get("/admin/enrol")
    assert page.status_code == 200
    html = page.data.decode()
    assert 'src="data:image/svg+xml' in html
    secret = re.search(r'<code id="secret"[^>]*>([A-Z2-7 ]+)</code>', html).group(1).replace(" ", "")
    stored = _account(db, "jo@hiow.nhs.uk")
    assert stored.totp_secret and secret not in stored.totp_secret  # encrypted, not as typed into the app
    assert not stored.has_second_factor
    assert client.get("/admin/enrol").data.decode().count(secret[:4] + " " + secret[4:8]) == 1  # same until confirmed

    wrong = _post(client, "/admin/enrol", code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert wrong.status_code == 400 and b"That code is not right" in wrong.data
    assert not _account(db, "jo@hiow.nhs.uk").has_second_factor

    done = _post(client, "/admin/enrol", code=pyotp.TOTP(secret).now())
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-7-]{19})</code></li>", done.data.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert _account(db, "jo@hiow.nhs.uk").has_second_factor
    assert [a for a, _d in _actions(db)] == ["user.login", "user.factor_enrol"]

    again = client.get("/admin/enrol")  # never shown again once it is on
    assert again.status_code == 303 and again.headers["Location"].endswith("/admin/account")
    account = client.get("/admin/account").data.decode()
    assert secret[:4] not in account and "10 of your recovery codes are unused" in account


def test_signing_in_with_a_second_factor_takes_a_code_and_half_signed_in_opens_nothing(client, db, member_with_factor):
    first = _password_step(client, member_with_factor.email)
    assert first.status_code == 303 and first.headers["Location"].endswith("/admin/login/code")
    for path in ("/admin/", "/admin/account", "/admin/team", "/admin/issues/new", "/admin/subscribers"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"], path
    assert client.get("/admin/enrol").status_code == 303  # not the forced enrolment's either

    wrong = _post(client, "/admin/login/code", code="12345")
    assert wrong.status_code == 400 and b"That code is not right" in wrong.data
    assert not _signed_in(client)
    right = _post(client, "/admin/login/code", code=next_code(member_with_factor.secret))
    assert right.status_code == 303 and right.headers["Location"] == "/admin/"
    assert _signed_in(client)
    assert [(a, d.get("step"), d.get("second_factor")) for a, d in _actions(db) if a != "user.factor_enrol"] == [
        ("user.login_failed", "code", None),
        ("user.login", None, "totp"),
    ]


def test_a_code_is_taken_once(app, db, member_with_factor):
    code = next_code(member_with_factor.secret)
    first, second = app.test_client(), app.test_client()
    assert sign_in_with_code(first, member_with_factor.email, code).status_code == 303
    replayed = sign_in_with_code(second, member_with_factor.email, code)
    assert replayed.status_code == 400 and not _signed_in(second)


def test_a_recovery_code_works_once(app, db, member_with_factor):
    code = member_with_factor.recovery_codes[3]
    first = app.test_client()
    assert sign_in_with_code(first, member_with_factor.email, code.upper().replace("-", " ")).status_code == 303
    assert _signed_in(first)
    again = app.test_client()
    assert sign_in_with_code(again, member_with_factor.email, code).status_code == 400
    assert ("user.recovery_code_used", {"left": 9}) in _actions(db)
    assert "9 of your recovery codes are unused" in first.get("/admin/account").data.decode()


def test_mfa_required_sends_an_account_without_a_factor_to_enrol_first(settings, db):
    from mailer.web import create_app

    app = create_app(settings.with_overrides(mfa_required=True))
    app.config["TESTING"] = True
    client = app.test_client()
    with db.transaction() as s:
        create_admin(s, "new@hiow.nhs.uk", PASSWORD, role="editor")
    first = _password_step(client, "new@hiow.nhs.uk")
    assert first.status_code == 303 and first.headers["Location"].endswith("/admin/enrol")
    assert not _signed_in(client)
    assert client.get("/admin/account").status_code == 302
    assert client.get("/admin/login/code").status_code == 303  # no code page without a factor
    page = client.get("/admin/enrol")
    assert page.status_code == 200 and b"Every account here needs a code" in page.data
    secret = re.search(r'<code id="secret"[^>]*>([A-Z2-7 ]+)</code>', page.data.decode()).group(1).replace(" ", "")
    done = client.post("/admin/enrol", data={"csrf_token": csrf_from(page.data), "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200 and done.data.count(b"<li><code>") == 10
    assert _signed_in(client)
    assert [(a, d.get("second_factor")) for a, d in _actions(db)] == [
        ("user.factor_enrol", None),
        ("user.login", "totp"),
    ]

    # From now on the password alone is not enough.
    later = app.test_client()
    assert _password_step(later, "new@hiow.nhs.uk").headers["Location"].endswith("/admin/login/code")


def test_an_admin_resets_a_members_factor_and_signs_them_out(app, client, db, member_with_factor):
    member = app.test_client()
    assert sign_in_with_code(member, member_with_factor.email, next_code(member_with_factor.secret)).status_code == 303
    sign_in(client, db, email="admin@hiow.nhs.uk", role="admin")
    assert b"Reset<span" in client.get("/admin/team").data
    reset = _post(client, f"/admin/team/users/{member_with_factor.id}/factor-reset", page="/admin/team")
    assert reset.status_code == 303
    account = _account(db, member_with_factor.email)
    assert not account.has_second_factor and account.totp_secret is None
    assert not _signed_in(member)
    assert ("user.factor_reset", {"email": member_with_factor.email, "sign_ins_ended": 1}) in _actions(db)
    assert _password_step(app.test_client(), member_with_factor.email).headers["Location"] == "/admin/"
    with db.sessions() as s:
        assert factors.recovery_codes_left(s, member_with_factor.id) == 0


def test_a_factor_kept_under_a_retired_secret_key_still_works_and_is_encrypted_again(db, settings, member_with_factor):
    rotated = settings.with_overrides(secret_key="a new secret key", secret_key_fallbacks=(settings.secret_key,))
    before = _account(db, member_with_factor.email).totp_secret
    with db.transaction() as s:
        user = s.get(AdminUser, member_with_factor.id)
        assert factors.check_code(s, user, next_code(member_with_factor.secret), rotated) == "totp"
    after = _account(db, member_with_factor.email).totp_secret
    assert after != before
    # Now readable with the new key alone.
    assert factors._decrypt(rotated.with_overrides(secret_key_fallbacks=()), after)[0] == member_with_factor.secret


# --- passwords ---------------------------------------------------------------------------------------------


def test_changing_ones_password_needs_the_current_one_and_ends_the_other_sign_ins(app, client, db):
    sign_in(client, db, email="jo@hiow.nhs.uk", role="editor")
    laptop = app.test_client()
    _password_step(laptop, "jo@hiow.nhs.uk")
    assert _signed_in(laptop)

    def change(**form):
        return _post(client, "/admin/account/password", page="/admin/account", **form)

    wrong = change(current_password="not my password", new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    assert wrong.status_code == 400 and b"Your current password is not right" in wrong.data
    short = change(current_password=PASSWORD, new_password="short", confirm_password="short")
    assert short.status_code == 400 and b"at least 12 characters" in short.data
    mismatch = change(current_password=PASSWORD, new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD + "!")
    assert mismatch.status_code == 400 and b"The two new passwords are not the same" in mismatch.data
    assert _signed_in(laptop)

    done = change(current_password=PASSWORD, new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    assert done.status_code == 303
    assert _signed_in(client) and not _signed_in(laptop)
    assert _password_step(app.test_client(), "jo@hiow.nhs.uk").status_code == 400
    assert _password_step(app.test_client(), "jo@hiow.nhs.uk", NEW_PASSWORD).status_code == 303
    assert ("user.password_change", {"sign_ins_ended": 1}) in _actions(db)
    with db.sessions() as s:
        assert [r.ended_reason for r in s.scalars(select(AdminSession).order_by(AdminSession.id))][:2] == [
            None,
            "password_change",
        ]


def _reset_link(received) -> str:
    return next(u for u in re.findall(r"https?://\S+", received.text()) if "/admin/reset/" in u)


def test_a_reset_by_email_answers_the_same_for_anyone_and_its_link_works_once(
    app, client, db, smtp_server, celery_workers
):
    with db.transaction() as s:
        create_admin(s, "jo@hiow.nhs.uk", PASSWORD, role="editor")
    signed_in_before = app.test_client()
    _password_step(signed_in_before, "jo@hiow.nhs.uk")

    unknown = _post(client, "/admin/forgotten-password", email="nobody@hiow.nhs.uk")
    known = _post(client, "/admin/forgotten-password", email="Jo@hiow.nhs.uk")
    assert unknown.status_code == known.status_code == 200
    assert without_nonce(unknown) == without_nonce(known)
    # The single transactional worker takes the two in order: when Jo's has arrived, the other was acted on.
    [received] = wait_until(lambda: smtp_server.messages_to("jo@hiow.nhs.uk"), message="the reset mail")
    assert not smtp_server.messages_to("nobody@hiow.nhs.uk")
    assert received.message["Subject"] == "Reset your Trust Matters mailer password"
    assert "List-Unsubscribe" not in received.message

    path = path_of(_reset_link(received))
    assert client.get(path).status_code == 200 and client.get(path).status_code == 200  # opening uses nothing
    mismatch = _post(client, path, new_password=NEW_PASSWORD, confirm_password="something else entirely")
    assert mismatch.status_code == 400
    done = _post(client, path, new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    assert done.status_code == 303 and done.headers["Location"].endswith("/admin/login")
    assert not _signed_in(signed_in_before)
    assert client.get(path).status_code == 404
    assert client.post(path, data={"new_password": "x" * 20, "confirm_password": "x" * 20}).status_code in (400, 404)
    assert _password_step(app.test_client(), "jo@hiow.nhs.uk").status_code == 400
    assert _password_step(app.test_client(), "jo@hiow.nhs.uk", NEW_PASSWORD).status_code == 303
    assert [a for a, _d in _actions(db, "user.password_reset")] == [
        "user.password_reset_request",
        "user.password_reset_request",
        "user.password_reset_sent",
        "user.password_reset",
    ]


def _reset_token(db, email: str, settings) -> str:
    with db.transaction() as s:
        mail = passwords.reset_mail(s, email, settings)
    return re.search(r"/admin/reset/([A-Za-z0-9_-]+)", mail.data.decode()).group(1)


def test_a_reset_link_expires_after_30_minutes_and_only_the_newest_works(client, db, settings):
    with db.transaction() as s:
        create_admin(s, "jo@hiow.nhs.uk", PASSWORD, role="editor")
    with time_machine.travel("2026-12-01 09:00 +0000", tick=False) as clock:
        older = _reset_token(db, "jo@hiow.nhs.uk", settings)
        token = _reset_token(db, "jo@hiow.nhs.uk", settings)
        assert client.get(f"/admin/reset/{older}").status_code == 404
        clock.shift(timedelta(minutes=29))
        assert client.get(f"/admin/reset/{token}").status_code == 200
        clock.shift(timedelta(minutes=1))
        expired = client.get(f"/admin/reset/{token}")
        assert expired.status_code == 404 and b"This link has expired" in expired.data
        form = {
            "csrf_token": csrf_from(client.get("/admin/login").data),
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        }
        assert client.post(f"/admin/reset/{token}", data=form).status_code == 404
        # Three mails an hour reach one account, however often the form is sent.
        with db.transaction() as s:
            assert passwords.reset_mail(s, "jo@hiow.nhs.uk", settings) is not None
        with db.transaction() as s:
            assert passwords.reset_mail(s, "jo@hiow.nhs.uk", settings) is None
        clock.shift(timedelta(minutes=31))
        with db.transaction() as s:
            assert passwords.reset_mail(s, "jo@hiow.nhs.uk", settings) is not None
    assert _password_step(client, "jo@hiow.nhs.uk").status_code == 303  # the password never changed


def test_a_reset_does_not_get_past_the_second_factor(client, db, settings, member_with_factor):
    token = _reset_token(db, member_with_factor.email, settings)
    done = _post(client, f"/admin/reset/{token}", new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    assert done.status_code == 303 and not _signed_in(client)
    first = _password_step(client, member_with_factor.email, NEW_PASSWORD)
    assert first.headers["Location"].endswith("/admin/login/code")
    assert not _signed_in(client)


def test_an_account_without_a_password_refuses_every_password_and_a_reset_sets_one(client, db, settings):
    with db.transaction() as s:
        user = create_admin(s, "sso@hiow.nhs.uk", PASSWORD, role="editor")
        user.password_hash = ""  # signs in only through single sign-on
    for typed in ("", PASSWORD):
        refused = _password_step(client, "sso@hiow.nhs.uk", typed)
        assert refused.status_code == 400 and b"Enter a correct email address and password" in refused.data
    token = _reset_token(db, "sso@hiow.nhs.uk", settings)
    assert (
        _post(client, f"/admin/reset/{token}", new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD).status_code
        == 303
    )
    assert _password_step(client, "sso@hiow.nhs.uk", NEW_PASSWORD).status_code == 303


def test_an_account_linked_to_the_provider_gets_no_password_by_mail(client, db, settings):
    """A password would outlive switching the person off in Entra ID, where the trust ends access."""
    with db.transaction() as s:
        user = create_admin(s, "entra@hiow.nhs.uk", PASSWORD, role="editor")
        user.password_hash = sso.NO_PASSWORD
        s.add(ExternalIdentity(user_id=user.id, issuer="https://login.test/v2.0", subject="oid-1", created_at=utcnow()))
    with db.transaction() as s:
        assert passwords.reset_mail(s, "entra@hiow.nhs.uk", settings) is None
        assert s.scalar(select(func.count()).select_from(PasswordReset)) == 0
    refused = _password_step(client, "entra@hiow.nhs.uk", sso.NO_PASSWORD)
    assert refused.status_code == 400 and b"Enter a correct email address and password" in refused.data


# --- lockout -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("email", ["jo@hiow.nhs.uk", "nobody@hiow.nhs.uk"])
def test_ten_failures_lock_an_address_for_15_minutes_whether_or_not_it_has_an_account(app, db, email):
    with db.transaction() as s:
        create_admin(s, "jo@hiow.nhs.uk", PASSWORD, role="editor")
    client = app.test_client()
    with time_machine.travel("2026-12-01 09:00 +0000", tick=False) as clock:
        # From ten client addresses: the per-address limit never sees more than one.
        answers = [_password_step(client, email, "wrong password!!", REMOTE_ADDR=f"10.0.0.{n}") for n in range(10)]
        assert [a.status_code for a in answers] == [400] * 9 + [429]
        assert b"too many failed attempts to sign in with this email address" in answers[-1].data
        right = _password_step(client, email, PASSWORD, REMOTE_ADDR="10.0.1.1")
        assert right.status_code == 429 and not _signed_in(client)
        clock.shift(timedelta(minutes=15))
        after = _password_step(client, email, PASSWORD, REMOTE_ADDR="10.0.1.2")
        assert after.status_code == (303 if email.startswith("jo") else 400)
    actions = [a for a, _d in _actions(db)]
    failed_after = 0 if email.startswith("jo") else 1  # nobody has that address: still refused, as before
    assert actions.count("user.login_failed") == 11 + failed_after and actions.count("user.lockout") == 1


def test_wrong_codes_count_towards_the_lockout(app, db, member_with_factor):
    client = app.test_client()
    with time_machine.travel("2026-12-01 09:00 +0000", tick=True):
        for n in range(9):
            _password_step(client, member_with_factor.email, "wrong password!!", REMOTE_ADDR=f"10.0.0.{n}")
        assert _password_step(client, member_with_factor.email, REMOTE_ADDR="10.0.1.1").status_code == 303
        locked = client.post(
            "/admin/login/code",
            data={"csrf_token": csrf_from(client.get("/admin/login/code").data), "code": "000000"},
            environ_base={"REMOTE_ADDR": "10.0.1.1"},
        )
        assert locked.status_code == 429
        with db.sessions() as s:
            assert lockout.locked_until(s, member_with_factor.email) is not None


def test_the_cli_resets_a_factor_for_when_no_admin_can_sign_in(test_env, db, member_with_factor):
    from click.testing import CliRunner

    from mailer.cli import main

    done = CliRunner().invoke(main, ["admin", "reset-factor", member_with_factor.email], env=test_env)
    assert done.exit_code == 0, done.output
    assert not _account(db, member_with_factor.email).has_second_factor
    again = CliRunner().invoke(main, ["admin", "reset-factor", member_with_factor.email], env=test_env)
    assert again.exit_code != 0 and "has no second factor" in again.output
    with db.sessions() as s:
        [row] = s.scalars(select(AuditEvent).where(AuditEvent.action == "user.factor_reset"))
    assert row.actor_label == "mailer admin reset-factor"
