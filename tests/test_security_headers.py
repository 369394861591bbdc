"""What each response says about its own safety, and which form posts are refused as cross-site.

Over https Flask-WTF refuses a form post whose Referer is missing or names another site; the referrer policy
must therefore keep same-origin referers while never sending a signed-link path to another site.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from conftest import csrf_from
from mailer.accounts import create_token
from support.flows import confirm_link, manage_link, path_of, sign_in, subscribe, unsubscribe_link, write_issue

HTTPS = "https://localhost"  # what the test client calls itself once it speaks https


@pytest.fixture()
def https_app(settings):
    """The app as deployed: BASE_URL is https (the test client then speaks https to it)."""
    from mailer.web import create_app
    from mailer.web.limits import limiter

    application = create_app(settings.with_overrides(base_url=HTTPS))
    application.config.update(TESTING=True, PREFERRED_URL_SCHEME="https")
    yield application
    with application.app_context():
        limiter.reset()


@pytest.fixture()
def https_client(https_app):
    return https_app.test_client()


def _subscribe_over_https(client, headers):
    page = client.get("/subscribe")
    data = {
        "csrf_token": csrf_from(page.data),
        "email": "someone@example.org",
        "topics": ["trust-matters"],
        "area": "hampshire",
    }
    return client.post("/subscribe", data=data, headers=headers)


# --- referrer policy and cross-site posts ----------------------------------------------------------------------


def test_referrer_policy_keeps_same_origin_referers_and_sends_none_elsewhere(client):
    # "no-referrer" made every https form post fail Flask-WTF's Referer check; "strict-origin-when-cross-origin"
    # would still tell every linked site that the reader came from us. "same-origin" does neither.
    for path in ("/", "/subscribe", "/manage", "/admin/login", "/api/v1/openapi.json"):
        assert client.get(path).headers["Referrer-Policy"] == "same-origin", path


def test_same_origin_post_over_https_is_accepted(https_client):
    response = _subscribe_over_https(https_client, {"Referer": f"{HTTPS}/subscribe", "Origin": HTTPS})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/subscribe/check-your-email")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-referer"),
        pytest.param({"Referer": "https://evil.example/form", "Origin": "https://evil.example"}, id="foreign-referer"),
        pytest.param({"Referer": "http://localhost/subscribe"}, id="same-host-over-http"),
        pytest.param({"Referer": f"{HTTPS}/subscribe", "Origin": "https://evil.example"}, id="foreign-origin"),
        pytest.param({"Referer": f"{HTTPS}/subscribe", "Origin": "null"}, id="opaque-origin"),
    ],
)
def test_cross_site_post_over_https_is_refused(https_client, db, headers):
    from sqlalchemy import func, select

    from mailer.models import PublicRequest, Subscriber

    response = _subscribe_over_https(https_client, headers)
    assert response.status_code == 400
    assert b"Your form has expired" in response.data
    with db.sessions() as s:  # nothing queued for a worker either (a sign-up is a queued request first)
        assert s.scalar(select(func.count()).select_from(PublicRequest)) == 0
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_a_post_refused_for_its_origin_tells_the_operator_which_host_it_claimed(https_client, caplog):
    """Behind nginx with `Host $host` on port 8443 every form failed this way and nothing was logged."""
    refused = _subscribe_over_https(https_client, {"Referer": "https://localhost:8443/subscribe"})
    assert refused.status_code == 400
    [warning] = [r for r in caplog.records if r.getMessage().startswith("form refused")]
    # The Referer's origin only: its path can be a signed link's (/manage/<token>).
    assert "Referer from 'https://localhost:8443'" in warning.getMessage() and HTTPS in warning.getMessage()
    assert "/subscribe" not in warning.getMessage()
    assert "proxy_set_header Host $http_host" in warning.getMessage()


def test_foreign_origin_is_refused_over_http_too(client):
    page = client.get("/subscribe")
    response = client.post(
        "/subscribe",
        data={"csrf_token": csrf_from(page.data), "email": "a@example.org", "topics": ["careers"], "area": "hampshire"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 400 and b"Your form has expired" in response.data


def test_one_click_unsubscribe_takes_posts_from_anywhere(client, https_client, db, smtp_server, celery_workers):
    """RFC 8058: the mail provider's server posts with its own origin (or none); the signed link is the credential."""
    subscribe(client, "leaver@example.org")
    [mail] = smtp_server.wait_for("leaver@example.org")
    link = unsubscribe_link(mail)
    response = https_client.post(
        path_of(link), data={"List-Unsubscribe": "One-Click"}, headers={"Origin": "https://mail.example"}
    )
    assert response.status_code == 200


# --- Content-Security-Policy -----------------------------------------------------------------------------------


class _Page(HTMLParser):
    """The scripts, inline handlers and inline styles of a page."""

    def __init__(self):
        super().__init__()
        self.inline_scripts: list[str | None] = []  # each inline script's nonce
        self.script_sources: list[str] = []
        self.handlers: list[str] = []
        self.styled: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            if attributes.get("src"):
                self.script_sources.append(attributes["src"])
            else:
                self.inline_scripts.append(attributes.get("nonce"))
        if tag == "style":
            self.styled.append("<style>")
        self.handlers += [f"{tag} {name}" for name in attributes if name.startswith("on")]
        if "style" in attributes:
            self.styled.append(f"{tag} style={attributes['style']!r}")


def _directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def _assert_page_obeys_its_policy(response, where):
    assert response.status_code == 200, (where, response.status_code)
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"{where} has no Content-Security-Policy"
    rules = _directives(policy)
    scripts = rules["script-src"]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, (where, policy)
    assert "'unsafe-inline'" not in rules["style-src"], (where, policy)
    assert rules["object-src"] == ["'none'"] and rules["frame-ancestors"] == ["'self'"], (where, policy)
    nonces = [v.removeprefix("'nonce-").removesuffix("'") for v in scripts if v.startswith("'nonce-")]
    page = _Page()
    page.feed(response.get_data(as_text=True))
    assert page.inline_scripts, f"{where}: the NHS.UK template's inline script is missing"
    for nonce in page.inline_scripts:
        assert nonce and nonces == [nonce], f"{where}: an inline script without this response's nonce"
    assert all(src.startswith("/static/") for src in page.script_sources), (where, page.script_sources)
    assert not page.handlers, f"{where}: inline event handlers {page.handlers}"
    assert not page.styled, f"{where}: inline styles {page.styled} (style-src is 'self')"
    return nonces[0]


def test_every_public_page_has_a_csp_that_its_markup_obeys(client, db, smtp_server, celery_workers):
    subscribe(client, "reader@example.org")
    [mail] = smtp_server.wait_for("reader@example.org")
    pages = [
        "/",
        "/subscribe",
        "/subscribe/check-your-email",
        "/manage",
        "/privacy",
        "/news",
        path_of(confirm_link(mail)),
        path_of(manage_link(mail)),
        path_of(unsubscribe_link(mail)),
    ]
    seen = set()
    for path in pages:
        seen.add(_assert_page_obeys_its_policy(client.get(path), path))
    assert len(seen) == len(pages), "a nonce was used twice"
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "script-src" in missing.headers["Content-Security-Policy"]


def test_every_admin_page_has_a_csp_that_its_markup_obeys(client, db):
    sign_in(client, db)
    issue_id = write_issue(client)
    for path in (
        "/admin/",
        "/admin/issues/new",
        f"/admin/issues/{issue_id}",
        "/admin/updates",
        "/admin/segments",
        "/admin/segments/new",
        "/admin/subscribers",
        "/admin/import",
        "/admin/stats",
        "/admin/team",
        "/admin/audit",
    ):
        _assert_page_obeys_its_policy(client.get(path), path)


def test_the_email_preview_keeps_its_own_stricter_policy(client, db):
    sign_in(client, db)
    issue_id = write_issue(client)
    page = client.get(f"/admin/issues/{issue_id}")
    assert re.search(rf'<iframe [^>]*src="/admin/issues/{issue_id}/preview"', page.get_data(as_text=True))
    assert "'self'" in _directives(page.headers["Content-Security-Policy"])["default-src"]  # the frame may load
    preview = client.get(f"/admin/issues/{issue_id}/preview")
    assert preview.status_code == 200
    # Email HTML is all inline styles and must run nothing: the preview's own policy, not the page one.
    policy = _directives(preview.headers["Content-Security-Policy"])
    assert policy == {"default-src": ["'none'"], "img-src": ["*", "data:"], "style-src": ["'unsafe-inline'"]}


def test_json_answers_carry_no_page_policy(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and "Content-Security-Policy" not in response.headers


# --- HSTS ------------------------------------------------------------------------------------------------------


def test_hsts_when_base_url_is_https(https_client):
    response = https_client.get("/")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_no_hsts_when_base_url_is_http(client):
    assert "Strict-Transport-Security" not in client.get("/").headers


# --- caching of personal data ----------------------------------------------------------------------------------


def test_signed_link_pages_are_never_cached(client, smtp_server, celery_workers):
    subscribe(client, "private@example.org")
    [mail] = smtp_server.wait_for("private@example.org")
    for link in (confirm_link(mail), manage_link(mail), unsubscribe_link(mail)):
        response = client.get(path_of(link))
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store", link
    saved = client.post(
        path_of(manage_link(mail)), data={"csrf_token": csrf_from(client.get(path_of(manage_link(mail))).data)}
    )
    assert saved.headers["Cache-Control"] == "no-store"


def test_api_answers_with_personal_data_are_never_cached(client, db, smtp_server, celery_workers):
    with db.transaction() as s:
        _row, secret = create_token(s, "headers", role="admin")
    auth = {"Authorization": f"Bearer {secret}"}
    subscribe(client, "person@example.org")
    smtp_server.wait_for("person@example.org")
    sign_in(client, db)
    issue_id = write_issue(client)
    for path in (
        "/api/v1/subscribers/person@example.org",
        "/api/v1/subscribers/person@example.org/export",
        f"/api/v1/issues/{issue_id}/deliveries",
        "/api/v1/topics/trust-matters/export",
        "/api/v1/topics",
    ):
        response = client.get(path, headers=auth)
        assert response.status_code == 200, (path, response.status_code)
        assert response.headers["Cache-Control"] == "no-store", path
    missing = client.get("/api/v1/subscribers/nobody@example.org", headers=auth)
    assert missing.status_code == 404 and missing.headers["Cache-Control"] == "no-store"


def test_public_pages_without_personal_data_may_be_cached(client):
    assert "no-store" not in client.get("/news").headers.get("Cache-Control", "")


# --- 405 -------------------------------------------------------------------------------------------------------


def test_method_not_allowed_says_which_methods_are(client):
    page = client.delete("/subscribe")
    assert page.status_code == 405
    assert set(page.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
    assert b"Method Not Allowed" in page.data

    api = client.put("/api/v1/topics")  # listed and created (POST), never replaced whole
    assert api.status_code == 405 and api.is_json
    assert set(api.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
