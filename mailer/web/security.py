"""What every response says about its own safety: referrer, framing, caching, CSP, HSTS; and where posts come from.

Kept beside the factory rather than in a library such as Flask-Talisman: Talisman overwrites the stricter policy
that the email previews set on their own responses, decides HSTS from an X-Forwarded-Proto header it has not
been told to trust, and rewrites the session cookie settings on every request. What we need is a few headers.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from flask_wtf.csrf import CSRFError, CSRFProtect

# Same-origin pages keep their Referer (Flask-WTF's HTTPS check needs it on every form post); no other site
# is ever sent one, not even our bare origin, so the signed tokens in /manage, /confirm and /u/ paths stay here.
REFERRER_POLICY = "same-origin"
# A year; not includeSubDomains: the site may live on a domain whose other subdomains are not ours to force.
HSTS = "max-age=31536000"
# Pages and API answers that carry a person's data or a signed link's result: never kept by a browser or proxy.
NO_STORE_PREFIXES = ("/admin", "/confirm/", "/u/", "/manage/", "/api/")
# The NHS.UK frontend's stylesheet loads the Frutiger web font from the NHS's own font host.
NHS_FONTS = "https://assets.nhs.uk"

# Every form post carries a token tied to the session (Flask-WTF); the API, authenticated by bearer tokens,
# is exempt (app.py).
csrf = CSRFProtect()


def csp_nonce() -> str:
    """This request's nonce for inline scripts (the NHS.UK template's one-line js-enabled script)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def content_security_policy(nonce: str | None) -> str:
    """Scripts and styles only from our own origin (inline scripts only with this response's nonce)."""
    scripts = "'self'" + (f" 'nonce-{nonce}'" if nonce else "")
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self'",
            # Issues show the team's images; an image cannot run anything, and the team may link any https one.
            "img-src 'self' data: https:",
            f"font-src 'self' {NHS_FONTS}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        )
    )


def install(app: Flask, *, https: bool) -> None:
    """Register the headers and the Origin check on `app`; `https` is whether BASE_URL is https."""

    @app.context_processor
    def _nonce():
        # The NHS.UK page template puts `cspNonce` on its inline script.
        return {"cspNonce": csp_nonce()}

    @app.before_request
    def _same_origin_posts():
        # Runs after Flask-WTF's own check (registered earlier), which marks the request valid. Browsers send
        # Origin on every form post; one naming another site (or "null") is a cross-site post whatever its
        # token, and over plain http there is no Referer check to catch it.
        if not g.get("csrf_valid"):
            return
        origin = request.headers.get("Origin")
        if origin is not None and origin != _own_origin():
            raise CSRFError("The origin does not match the host.")

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Referrer-Policy", REFERRER_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")  # no clickjacking of admin buttons
        if response.mimetype == "text/html":
            # A view that set its own (stricter) policy keeps it: the email previews do.
            headers.setdefault("Content-Security-Policy", content_security_policy(g.get("csp_nonce")))
        if https and request.is_secure:
            headers.setdefault("Strict-Transport-Security", HSTS)
        if request.path.startswith(NO_STORE_PREFIXES) and request.path != "/api/v1/openapi.json":
            headers["Cache-Control"] = "no-store"
        return response


def retry_after_only_on_refusals(app: Flask) -> None:
    """Flask-Limiter puts Retry-After on every limited answer, but it means "come back later" (RFC 9110): only
    a refusal carries it; the X-RateLimit-* headers still tell a client where it stands. Register this before
    the limiter: Flask runs after-request functions last-registered first, so this one sees its headers."""

    @app.after_request
    def _retry_after(response: Response) -> Response:
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        return response


def _own_origin() -> str:
    parts = urlsplit(request.host_url)
    return f"{parts.scheme}://{parts.netloc}"
