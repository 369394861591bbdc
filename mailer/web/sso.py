"""Signing in with an NHS account: OpenID Connect's authorization code flow with the trust's Entra ID tenant.

Authlib's Flask client runs the protocol (a well-kept library rather than our own JWT and OAuth code): it sends
the browser to the provider with a random state, nonce and PKCE challenge (S256) kept in the session, takes the
code back, exchanges it with the client secret and the PKCE verifier, and checks the ID token against the
provider's published keys (JWKS): signature, issuer, audience (our client id), expiry and nonce. The verified
claims then go to the room's command, mailer.sso.sign_in_with_claims, and the sign-in starts the way the password
sign-in's does (sessions.begin). Anything refused gets a page saying why and an audit row.

The callback address is built from BASE_URL, never from the request's Host: behind the trust's proxies the
request may name an inside host, and the provider only returns to the address registered with it.
"""

from __future__ import annotations

import logging

import requests
from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from authlib.integrations.requests_client import OAuth2Session
from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, url_for
from flask import session as cookie
from flask_login import current_user
from joserfc.errors import ClaimError, JoseError

from ..config import Settings, SingleSignOn
from ..sso import Refused, record_refusal, sign_in_with_claims
from . import sessions
from .admin import _safe_next
from .context import runtime_of_app
from .limits import LOGIN_LIMIT, limiter

log = logging.getLogger(__name__)

bp = Blueprint("sso", __name__)
CLIENT = "entra"
NEXT_KEY = "sso_next"
# How far the provider's clock may be from ours when checking the ID token's times (Authlib's default).
CLOCK_LEEWAY = 120


class _CaBundleSession(OAuth2Session):
    """requests lets REQUESTS_CA_BUNDLE (set machine-wide on many hosts) override a session's own `verify`: here the
    CA bundle given for the provider (OIDC_CA_BUNDLE) wins."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify not in (True, None):
            merged["verify"] = self.verify
        return merged


class _CaBundleApp(FlaskOAuth2App):
    client_cls = _CaBundleSession


def install(app: Flask, settings: Settings) -> None:
    """The sign-in routes (404 while single sign-on is off) and, when it is on, the provider's client."""
    app.register_blueprint(bp, url_prefix="/admin/sso")
    sso = settings.sso
    if sso is None:
        return
    oauth = OAuth(app)
    oauth.register(
        CLIENT,
        client_id=sso.client_id,
        client_secret=sso.client_secret,
        server_metadata_url=sso.metadata_url,
        client_kwargs={
            "scope": "openid email profile",
            "code_challenge_method": "S256",
            "default_timeout": 10,
            # A CA of the test's own; unset, requests' usual trust store
            **({"verify": sso.ca_bundle} if sso.ca_bundle else {}),
        },
        **({"client_cls": _CaBundleApp} if sso.ca_bundle else {}),
    )


def _sso() -> SingleSignOn:
    sso = runtime_of_app().settings.sso
    if sso is None:
        abort(404, "Single sign-on is not set up on this site.")
    return sso


def _client():
    return current_app.extensions["authlib.integrations.flask_client"].create_client(CLIENT)


def callback_url() -> str:
    """Where the provider sends the browser back: BASE_URL's host and scheme, whatever the request said."""
    return runtime_of_app().settings.base_url + url_for("sso.callback")


@bp.get("/start")
@limiter.limit(LOGIN_LIMIT)
def start():
    _sso()
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    cookie[NEXT_KEY] = _safe_next(request.args.get("next"))
    try:
        return _client().authorize_redirect(callback_url())
    except requests.RequestException as exc:
        return _unreachable(exc)


@bp.get("/callback")
@limiter.limit(LOGIN_LIMIT)
def callback():
    sso = _sso()
    next_page = cookie.get(NEXT_KEY) or url_for("admin.dashboard")
    try:
        claims = _verified_claims(sso)
        with runtime_of_app().db.transaction() as session:
            user, secret = sign_in_with_claims(
                session, sso, claims, mfa_required=runtime_of_app().settings.mfa_required
            )
    except Refused as refusal:
        return _refused(refusal)
    except requests.RequestException as exc:
        return _unreachable(exc)
    sessions.begin(user, secret)
    return redirect(next_page, code=303)


def _verified_claims(sso: SingleSignOn) -> dict:
    """The ID token's claims once Authlib has checked it; Refused, saying what was wrong, otherwise."""
    try:
        token = _client().authorize_access_token(
            claims_options={
                "iss": {"essential": True, "value": sso.issuer},
                "aud": {"essential": True, "value": sso.client_id},
                "sub": {"essential": True},
            },
            leeway=CLOCK_LEEWAY,
        )
    except MismatchingStateError as exc:
        raise Refused(
            "state_mismatch",
            "This sign-in was not started in this browser, or it was started too long ago. Start again.",
        ) from exc
    except OAuthError as exc:
        raise Refused(
            "provider_error",
            "Your NHS account's sign-in did not finish"
            + (" (you cancelled it)." if exc.error == "access_denied" else ".")
            + " Start again, or ask your IT team if it keeps happening.",
            error=str(exc.error)[:100],
            description=str(exc.description or "")[:300],
        ) from exc
    except ClaimError as exc:
        raise Refused(
            "nonce_mismatch" if exc.claim == "nonce" else "invalid_token",
            "The sign-in could not be checked: the token from your NHS account's sign-in was not valid for this "
            "site. Start again.",
            claim=exc.claim,
            error=str(exc)[:300],
        ) from exc
    except (JoseError, ValueError) as exc:
        raise Refused(
            "invalid_token",
            "The sign-in could not be checked: the token from your NHS account's sign-in was not valid for this "
            "site. Start again.",
            error=f"{type(exc).__name__}: {exc}"[:300],
        ) from exc
    claims = token.get("userinfo")
    if not claims:
        raise Refused("no_id_token", "Your NHS account's sign-in sent no ID token, so nobody can be signed in.")
    return dict(claims)


def _refused(refusal: Refused):
    with runtime_of_app().db.transaction() as session:
        record_refusal(session, refusal)
    status = 403 if refusal.reason in _NOT_ALLOWED else 400
    return render_template("admin/sso_refused.html", message=str(refusal), reason=refusal.reason), status


# Refusals of who someone is (a page that says so, 403); the others are a sign-in that went wrong (400).
_NOT_ALLOWED = {"no_role", "no_second_factor", "mfa_unknown", "account_off", "address_taken", "last_admin", "no_email"}


def _unreachable(exc: Exception):
    log.warning("the OpenID provider could not be reached: %s", exc)
    refusal = Refused(
        "provider_unreachable",
        "We could not reach the NHS account sign-in service. Try again in a few minutes, or sign in with a password.",
        error=f"{type(exc).__name__}"[:100],
    )
    with runtime_of_app().db.transaction() as session:
        record_refusal(session, refusal)
    return render_template("admin/sso_refused.html", message=str(refusal), reason=refusal.reason), 502
