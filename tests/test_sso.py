"""Signing in with an NHS account: OpenID Connect against a stand-in Entra ID (support/oidc.py) over https.

Each sign-in goes as a browser's would: the site sends the browser to the provider (the test client's 302),
the provider sends it back with a code (a real https request to the stand-in), and the site's callback exchanges
the code and checks the ID token with the provider's published keys, over https, as it would in production.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from conftest import BASE_URL, csrf_from
from mailer.accounts import create_admin
from mailer.config import ConfigError, load_settings
from mailer.models import AdminSession, AdminUser, AuditEvent, ExternalIdentity
from support.oidc import CLIENT_ID, OpenIdStandIn, callback_path, signing_key
from support.production import STRONG, production_env


@pytest.fixture()
def provider(tmp_path):
    with OpenIdStandIn(tmp_path) as standin:
        yield standin


@pytest.fixture()
def make_app(test_env, provider):
    """A site signing in through the stand-in provider, with `extra` settings."""
    from mailer.web import create_app
    from mailer.web.limits import limiter

    made = []

    def make(**extra):
        app = create_app(load_settings({**test_env, **provider.settings(**extra)}))
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            limiter.reset()


@pytest.fixture()
def site(make_app):
    return make_app()


def sign_in_with_nhs(client, provider, next_page: str | None = None):
    """Press the button, sign in at the provider, come back: the callback's answer."""
    start = client.get("/admin/sso/start", query_string={"next": next_page} if next_page else None)
    assert start.status_code == 302, start.data
    assert start.headers["Location"].startswith(provider.issuer + "/authorize?")
    return client.get(callback_path(provider.visit(start.headers["Location"]), BASE_URL))


def _accounts(db):
    with db.sessions() as s:
        return {u.email: u.role for u in s.scalars(select(AdminUser))}


def _audit(db, prefix=""):
    with db.sessions() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action.like(f"{prefix}%")).order_by(AuditEvent.id))
        return [(row.action, row.details) for row in rows]


def _refusal_reasons(db):
    return [details["reason"] for action, details in _audit(db, "sso.refused")]


def _signed_in_as(client) -> str | None:
    page = client.get("/admin/")
    if page.status_code != 200:
        return None
    text = page.get_data(as_text=True)
    return text.split("Signed in as ", 1)[1].split(" ", 1)[0]


def test_a_new_team_member_signs_in_with_their_nhs_account(site, provider, db):
    client = site.test_client()
    login = client.get("/admin/login?next=/admin/segments").get_data(as_text=True)
    assert "Sign in with your NHS account" in login and "/admin/sso/start?next=/admin/segments" in login

    answer = sign_in_with_nhs(client, provider, next_page="/admin/segments")

    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/segments"
    assert _signed_in_as(client) == "alex.morgan@nhs.net"
    assert _accounts(db) == {"alex.morgan@nhs.net": "publisher"}
    with db.sessions() as s:
        [identity] = s.scalars(select(ExternalIdentity))
        assert (identity.issuer, identity.subject) == (provider.issuer, "00000000-0000-0000-0000-0000000000a1")
        assert s.scalar(select(AdminSession.user_id)) == identity.user_id  # a server-side sign-in, as a password's
    assert [(a, d.get("method")) for a, d in _audit(db)] == [("user.create", "sso"), ("user.login", "sso")]
    # The protocol as Entra expects it: the code flow with state, nonce and PKCE, back to BASE_URL's address.
    [asked] = provider.authorizations
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
    assert asked["redirect_uri"] == BASE_URL + "/admin/sso/callback"
    assert asked["code_challenge_method"] == "S256" and asked["state"] and asked["nonce"]
    assert set(asked["scope"].split()) == {"openid", "email", "profile"}
    assert len(provider.token_requests) == 1 and not provider.refusals


def test_after_signing_in_only_an_admin_page_is_returned_to(site, provider, db):
    answer = sign_in_with_nhs(site.test_client(), provider, next_page="//evil.example/admin")
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/"


def test_an_sso_account_cannot_sign_in_with_a_password(site, provider, db):
    client = site.test_client()
    sign_in_with_nhs(client, provider)
    other = site.test_client()
    page = other.get("/admin/login")
    answer = other.post(
        "/admin/login", data={"csrf_token": csrf_from(page.data), "email": "alex.morgan@nhs.net", "password": "!sso"}
    )
    assert answer.status_code == 400 and _signed_in_as(other) is None


@pytest.mark.parametrize(
    ("values", "role"),
    [
        (["Mailer.Editor"], "editor"),
        (["Mailer.Editor", "Mailer.Admin", "Something.Else"], "admin"),
        (["Mailer.Publisher", "Mailer.Editor"], "publisher"),
        ("Mailer.Admin", "admin"),  # one value, sent as a string
    ],
)
def test_the_highest_mapped_role_wins(site, provider, db, values, role):
    provider.person["roles"] = values
    assert sign_in_with_nhs(site.test_client(), provider).status_code == 303
    assert _accounts(db) == {"alex.morgan@nhs.net": role}


def test_roles_can_come_from_entra_groups(make_app, provider, db):
    group = "3f6d2a11-7a0e-4c4b-9a57-2b1d1e0c9f10"
    site = make_app(OIDC_ROLES_CLAIM="groups", OIDC_ROLE_MAP=f"{group}=editor")
    provider.person.update(roles=["Mailer.Admin"], groups=["11111111-2222-3333-4444-555555555555", group])
    assert sign_in_with_nhs(site.test_client(), provider).status_code == 303
    assert _accounts(db) == {"alex.morgan@nhs.net": "editor"}  # the roles claim is not read


def test_no_mapped_role_is_refused_with_a_page_that_says_what_to_do(site, provider, db):
    provider.person["roles"] = ["Payroll.Reader"]
    client = site.test_client()
    answer = sign_in_with_nhs(client, provider)
    assert answer.status_code == 403
    assert "has not been given a role in the mailer" in answer.get_data(as_text=True)
    assert _signed_in_as(client) is None and _accounts(db) == {}
    [(action, details)] = _audit(db)
    assert action == "sso.refused" and details["reason"] == "no_role" and details["values"] == ["Payroll.Reader"]


def _refused(site, provider, db, reason: str, status: int = 400):
    client = site.test_client()
    answer = sign_in_with_nhs(client, provider)
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert _signed_in_as(client) is None
    assert _accounts(db) == {}
    assert _refusal_reasons(db) == [reason]
    return answer


def test_a_token_signed_with_another_key_is_refused(site, provider, db):
    provider.forge_with = signing_key()  # same key id, another key: what a forger can do
    answer = _refused(site, provider, db, "invalid_token")
    assert "not valid for this site" in answer.get_data(as_text=True)
    [(_action, details)] = _audit(db)
    assert details["error"].startswith("BadSignatureError")


def test_an_unsigned_token_is_refused(site, provider, db):
    provider.unsigned = True  # "alg": "none"
    _refused(site, provider, db, "invalid_token")


def test_an_expired_token_is_refused(site, provider, db):
    provider.tamper = {"exp": _now() - 600, "iat": _now() - 4200, "nbf": _now() - 4200}  # beyond the leeway
    _refused(site, provider, db, "invalid_token")
    [(_action, details)] = _audit(db)
    assert details["claim"] == "exp"


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    ("tampered", "claim"),
    [
        ({"aud": "another-application"}, "aud"),
        ({"aud": ["another-application", "and-another"]}, "aud"),
        ({"iss": "https://login.microsoftonline.com/another-tenant/v2.0"}, "iss"),
    ],
)
def test_a_token_for_another_audience_or_from_another_issuer_is_refused(site, provider, db, tampered, claim):
    provider.tamper = tampered
    _refused(site, provider, db, "invalid_token")
    [(_action, details)] = _audit(db)
    assert details["claim"] == claim


def test_a_token_with_another_nonce_is_refused(site, provider, db):
    provider.tamper = {"nonce": "a nonce from another sign-in"}
    _refused(site, provider, db, "nonce_mismatch")


def test_a_callback_with_another_state_is_refused(site, provider, db):
    client = site.test_client()
    start = client.get("/admin/sso/start")
    back = urlsplit(provider.visit(start.headers["Location"]))
    code = parse_qs(back.query)["code"][0]
    answer = client.get("/admin/sso/callback", query_string={"code": code, "state": "not-the-state-we-sent"})
    assert answer.status_code == 400 and "Start again" in answer.get_data(as_text=True)
    assert _signed_in_as(client) is None and provider.token_requests == []  # the code was never exchanged
    assert _refusal_reasons(db) == ["state_mismatch"]


def test_a_callback_in_another_browser_is_refused(site, provider, db):
    """A sign-in started by someone else (their code, their state) cannot be finished in this browser."""
    attacker = site.test_client()
    start = attacker.get("/admin/sso/start")
    victim = site.test_client()
    answer = victim.get(callback_path(provider.visit(start.headers["Location"]), BASE_URL))
    assert answer.status_code == 400 and _signed_in_as(victim) is None
    assert _refusal_reasons(db) == ["state_mismatch"]


def test_cancelling_at_the_provider_is_a_clear_page(site, provider, db):
    provider.deny = "access_denied"
    answer = _refused(site, provider, db, "provider_error")
    assert "you cancelled it" in answer.get_data(as_text=True)


def test_a_later_sign_in_follows_the_role_the_provider_gives(site, provider, db):
    provider.person["roles"] = ["Mailer.Editor"]
    sign_in_with_nhs(site.test_client(), provider)
    provider.person["roles"] = ["Mailer.Publisher"]
    provider.person["email"] = "alex.morgan2@nhs.net"  # a renamed address is still the same person (oid)
    client = site.test_client()
    assert sign_in_with_nhs(client, provider).status_code == 303
    assert _accounts(db) == {"alex.morgan@nhs.net": "publisher"}
    assert _signed_in_as(client) == "alex.morgan@nhs.net"
    changes = [d for a, d in _audit(db, "user.change")]
    assert changes == [{"role": "publisher", "previous_role": "editor", "method": "sso"}]
    provider.person["roles"] = ["Mailer.Publisher"]
    sign_in_with_nhs(site.test_client(), provider)
    assert len(_audit(db, "user.change")) == 1  # no change, no row


def test_another_person_with_a_local_accounts_address_is_refused(site, provider, db):
    with db.transaction() as s:
        create_admin(s, "alex.morgan@nhs.net", "a long enough password", role="admin")
    client = site.test_client()
    answer = sign_in_with_nhs(client, provider)
    assert answer.status_code == 403 and "signs in with a password" in answer.get_data(as_text=True)
    assert _signed_in_as(client) is None and _refusal_reasons(db) == ["address_taken"]
    with db.sessions() as s:
        assert s.scalar(select(ExternalIdentity.id)) is None  # never linked by address


def test_a_switched_off_account_is_refused(site, provider, db):
    sign_in_with_nhs(site.test_client(), provider)
    with db.transaction() as s:
        s.scalar(select(AdminUser)).active = False
    client = site.test_client()
    assert sign_in_with_nhs(client, provider).status_code == 403
    assert _signed_in_as(client) is None and _refusal_reasons(db) == ["account_off"]


def test_without_a_second_factor_the_sign_in_is_refused_when_one_is_required(make_app, provider, db):
    site = make_app(MFA_REQUIRED="true")
    provider.person["amr"] = ["pwd"]
    answer = _refused(site, provider, db, "no_second_factor", status=403)
    assert "did not use a second factor" in answer.get_data(as_text=True)
    provider.person["amr"] = ["pwd", "mfa"]
    assert sign_in_with_nhs(site.test_client(), provider).status_code == 303


def test_a_token_that_does_not_say_how_they_signed_in_is_refused_when_a_second_factor_is_required(
    make_app, provider, db
):
    """As Entra ID's v2.0 ID tokens are: no `amr` at all."""
    site = make_app(MFA_REQUIRED="true")
    del provider.person["amr"]
    answer = _refused(site, provider, db, "mfa_unknown", status=403)
    assert "OIDC_TRUST_IDP_MFA=true" in answer.get_data(as_text=True)


def test_trusting_the_providers_second_factor_skips_the_amr_check(make_app, provider, db):
    site = make_app(MFA_REQUIRED="true", OIDC_TRUST_IDP_MFA="true")
    del provider.person["amr"]
    assert sign_in_with_nhs(site.test_client(), provider).status_code == 303


def test_behind_a_proxy_the_callback_is_built_from_base_url(make_app, provider):
    site = make_app(BASE_URL="https://mailer.example.nhs.uk", TRUSTED_PROXIES="1")
    start = site.test_client().get(
        "/admin/sso/start", headers={"Host": "10.0.0.5:8000", "X-Forwarded-Host": "evil.example"}
    )
    redirect_uri = parse_qs(urlsplit(start.headers["Location"]).query)["redirect_uri"]
    assert redirect_uri == ["https://mailer.example.nhs.uk/admin/sso/callback"]


def test_without_sso_settings_there_is_no_button_and_the_routes_are_not_found(client):
    assert "NHS account" not in client.get("/admin/login").get_data(as_text=True)
    assert client.get("/admin/sso/start").status_code == 404
    assert client.get("/admin/sso/callback?code=x&state=y").status_code == 404


def test_an_unreachable_provider_is_a_clear_page(test_env, provider, db, make_app):
    site = make_app()
    provider.__exit__(None, None, None)  # the provider goes away before anyone signs in
    answer = site.test_client().get("/admin/sso/start")
    assert answer.status_code == 502 and "could not reach" in answer.get_data(as_text=True)
    provider.serve()  # for the fixture's own stop
    assert _refusal_reasons(db) == ["provider_unreachable"]


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENTRA = {
    "OIDC_CLIENT_ID": CLIENT_ID,
    "OIDC_CLIENT_SECRET": "secret",
    "ENTRA_TENANT_ID": TENANT,
    "OIDC_ROLE_MAP": "Mailer.Editor=editor, Mailer.Admin=admin",
    "SECRET_KEY": "x",
}


def test_entra_settings_name_the_tenants_issuer(tmp_path):
    sso = load_settings(ENTRA).sso
    assert sso.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert sso.metadata_url == f"https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
    assert sso.role_map == (("Mailer.Editor", "editor"), ("Mailer.Admin", "admin"))
    assert sso.roles_claim == "roles" and not load_settings(ENTRA).mfa_required and not sso.trust_idp_mfa
    production = load_settings({**production_env(tmp_path / "var"), **ENTRA, "SECRET_KEY": STRONG})
    assert production.sso and production.mfa_required  # a second factor by default in production
    assert load_settings({"SECRET_KEY": "x"}).sso is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"OIDC_CLIENT_SECRET": ""}, "OIDC_CLIENT_SECRET"),
        ({"ENTRA_TENANT_ID": "common"}, "tenant's id"),
        ({"ENTRA_TENANT_ID": "", "OIDC_ISSUER": ""}, "OIDC_ISSUER, or ENTRA_TENANT_ID"),
        ({"OIDC_ISSUER": "https://login.example.nhs.uk"}, "not both"),
        ({"ENTRA_TENANT_ID": "", "OIDC_ISSUER": "http://login.example.nhs.uk"}, "https URL"),
        ({"OIDC_ROLE_MAP": ""}, "at least one"),
        ({"OIDC_ROLE_MAP": "Mailer.Editor=owner"}, "value=role"),
        ({"OIDC_ROLE_MAP": "Mailer.Editor"}, "value=role"),
        ({"OIDC_CLIENT_ID": ""}, "OIDC_CLIENT_ID is not"),
        ({"OIDC_TRUST_IDP_MFA": "maybe"}, "true or false"),
        ({"OIDC_CA_BUNDLE": "no/such/ca.pem"}, "no file"),
    ],
)
def test_bad_sso_settings_are_refused_saying_which(change, says):
    with pytest.raises(ConfigError, match=says):
        load_settings({**ENTRA, **change})
