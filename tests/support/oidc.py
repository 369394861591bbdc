"""A stand-in OpenID provider (as Microsoft Entra ID answers a web app's sign-in) on https://127.0.0.1, for the
single sign-on tests.

It serves what the mailer's client reads: the discovery document (/.well-known/openid-configuration), the
signing keys (JWKS at /keys), an authorization endpoint that "signs in" whoever `person` describes and sends the
browser back to the redirect URI with a code and the state, and a token endpoint that checks the client's secret,
the code, the redirect URI and the PKCE verifier (S256) and answers with an RS256 ID token signed with a key made
for the test, carrying the nonce it was given. `tamper` changes the next ID token's claims (an expired one, another
audience or issuer, a nonce that is not ours) and `forge_with` signs it with another key under the same key id,
as a forger would. TLS comes from a certificate authority made for the test, which the app trusts through
OIDC_CA_BUNDLE. It stops at the end of the `with` block or by itself after `lifetime` seconds (support.standin).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from support.standin import HttpStandIn, QuietHandler, local_tls

CLIENT_ID = "6f1c2a8e-5b7d-4e0f-9a3c-1d2e3f4a5b6c"
CLIENT_SECRET = "stand-in client secret, not for production"
KEY_ID = "stand-in-key-1"


def signing_key() -> RSAKey:
    """An RSA key for signing ID tokens, with the stand-in's key id."""
    return RSAKey.generate_key(2048, parameters={"kid": KEY_ID}, private=True)


def default_person() -> dict:
    """Who signs in at the stand-in unless a test says otherwise: a publisher, with a second factor."""
    return {
        "oid": "00000000-0000-0000-0000-0000000000a1",
        "name": "Alex Morgan",
        "email": "alex.morgan@nhs.net",
        "preferred_username": "alex.morgan@nhs.net",
        "roles": ["Mailer.Publisher"],
        "amr": ["pwd", "mfa"],
    }


@dataclass
class OpenIdStandIn(HttpStandIn):
    directory: Path
    lifetime: float = 120.0
    person: dict = field(default_factory=default_person)  # claims the next ID token carries of whoever signs in
    tamper: dict = field(default_factory=dict)  # claims of the next ID token to replace (after the real ones)
    forge_with: RSAKey | None = None  # sign ID tokens with this key (under the served key's id) instead
    unsigned: bool = False  # send an ID token with "alg": "none" and no signature
    deny: str | None = None  # answer the authorization request with this error (e.g. access_denied)
    authorizations: list[dict] = field(default_factory=list)  # the query of each authorization request
    token_requests: list[dict] = field(default_factory=list)  # the form of each token request it accepted
    refusals: list[str] = field(default_factory=list)  # why token requests were refused

    def __enter__(self) -> OpenIdStandIn:
        self.key = signing_key()
        self._tls, self.ca_bundle = local_tls(self.directory, "oidc-test")
        self._codes: dict[str, dict] = {}
        self.serve()
        return self

    def tls(self) -> ssl.SSLContext:
        return self._tls

    @property
    def issuer(self) -> str:
        return self.base_url

    def settings(self, **extra: str) -> dict[str, str]:
        """The environment that points the mailer at this provider."""
        return {
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_CA_BUNDLE": str(self.ca_bundle),
            "OIDC_ROLE_MAP": "Mailer.Editor=editor,Mailer.Publisher=publisher,Mailer.Admin=admin",
            **extra,
        }

    def visit(self, url: str) -> str:
        """What the browser does at the provider: open the authorization URL, get sent back (the Location)."""
        answer = requests.get(url, allow_redirects=False, verify=str(self.ca_bundle), timeout=10)
        assert answer.status_code == 302, (answer.status_code, answer.text)
        return answer.headers["Location"]

    # --- the provider's side --------------------------------------------------------------------------------

    def metadata(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "jwks_uri": f"{self.base_url}/keys",
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def handler(self):
        standin = self

        class Handler(QuietHandler):
            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path == "/.well-known/openid-configuration":
                    self.answer(200, "application/json", json.dumps(standin.metadata()).encode())
                elif path == "/keys":
                    keys = KeySet([standin.key]).as_dict(private=False)
                    self.answer(200, "application/json", json.dumps(keys).encode())
                elif path == "/authorize":
                    self.answer(302, "text/plain", b"", {"Location": standin._authorize(parse_qs(query))})
                else:
                    self.answer(404, "text/plain", b"not here")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path != "/token":
                    self.answer(404, "text/plain", b"not here")
                    return
                status, body = standin._token(form, self.headers.get("Authorization", ""))
                self.answer(status, "application/json", json.dumps(body).encode(), {"Cache-Control": "no-store"})

        return Handler

    def _authorize(self, query: dict[str, list[str]]) -> str:
        asked = {k: v[0] for k, v in query.items()}
        self.authorizations.append(asked)
        back = asked["redirect_uri"]
        if self.deny:
            refusal = {"error": self.deny, "error_description": "The user said no", "state": asked.get("state", "")}
            return f"{back}?{urlencode(refusal)}"
        code = secrets.token_urlsafe(24)
        self._codes[code] = asked
        return f"{back}?{urlencode({'code': code, 'state': asked['state']})}"

    def _token(self, form: dict[str, str], authorization: str) -> tuple[int, dict]:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            return self._refuse("invalid_client")
        asked = self._codes.pop(form.get("code", ""), None)  # a code is good once
        if asked is None or form.get("grant_type") != "authorization_code":
            return self._refuse("invalid_grant")
        if form.get("redirect_uri") != asked["redirect_uri"]:
            return self._refuse("invalid_grant: redirect_uri")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if asked.get("code_challenge_method") != "S256" or challenge != asked.get("code_challenge"):
            return self._refuse("invalid_grant: PKCE")
        self.token_requests.append(form)
        access_token = secrets.token_urlsafe(32)
        return 200, {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": 3600,
            "scope": asked.get("scope", ""),
            "id_token": self.id_token(asked.get("nonce")),
        }

    def _refuse(self, error: str) -> tuple[int, dict]:
        self.refusals.append(error)
        return 400, {"error": error.partition(":")[0], "error_description": error}

    def id_token(self, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "pairwise-" + str(self.person.get("oid", "anyone")),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": "00000000-0000-0000-0000-00000000000t",
            **({"nonce": nonce} if nonce else {}),
            **self.person,
            **self.tamper,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        if self.unsigned:
            return ".".join(_b64(part) for part in ({"alg": "none", "typ": "JWT"}, claims)) + "."
        header = {"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}
        return jwt.encode(header, claims, self.forge_with or self.key)


def _b64(part: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def callback_path(location: str, base_url: str) -> str:
    """The path and query the provider sent the browser back to, checked to be on the site's BASE_URL."""
    assert location.startswith(base_url + "/"), f"sent back to {location}, not to BASE_URL {base_url}"
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}"
