"""The site as deployed: over https through nginx, gunicorn behind it, BASE_URL=https://…, in Chromium.

Before this, every form post over https was refused ("Your form has expired"): pages said
`Referrer-Policy: no-referrer`, so Chromium sent no Referer, and Flask-WTF refuses a post over https without
one. These journeys would have caught it; they also check that no page breaks its own Content-Security-Policy
and that the mail the workers send links to the https site.

Needs Debian's chromium, nginx and libnss3-tools (certutil); without them the tests skip and say so.
The stack is described in tests/support/https.py.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import select

from conftest import csrf_from, wait_until
from mailer.models import Issue, Subscriber, Subscription
from support.browser import (
    CHROMIUM,
    NO_CHROMIUM,
    TIMEOUT_MS,
    CspWatch,
    assert_accessible,
    fill_subscribe_form,
    launch_chromium,
    sign_in,
)
from support.flows import confirm_link, links_in, manage_link, unsubscribe_link
from support.https import HttpsSite, missing_tools

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=NO_CHROMIUM),
    pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or ""),
]
HSTS = "max-age=31536000"


@pytest.fixture(scope="module")
def site(test_env, tmp_path_factory):
    with HttpsSite(test_env, tmp_path_factory.mktemp("https")) as running:
        yield running


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright, site):
    """Chromium whose NSS database trusts the test CA: certificates are verified, not ignored."""
    chromium = launch_chromium(playwright, env={**os.environ, "HOME": str(site.certificates.browser_home())})
    yield chromium
    chromium.close()


@pytest.fixture()
def csp():
    return CspWatch()


@pytest.fixture()
def page(browser, site, csp):
    context = browser.new_context(base_url=site.url)  # no ignore_https_errors: the certificate must verify
    context.set_default_timeout(TIMEOUT_MS)
    csp.attach(context)
    tab = context.new_page()
    yield tab
    context.close()
    assert csp.violations == [], "pages broke their own Content-Security-Policy"


def _subscriber(db, email):
    with db.sessions() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email_key == email))


def _open_topics(db, email):
    with db.sessions() as s:
        person = s.scalar(select(Subscriber).where(Subscriber.email_key == email))
        rows = s.scalars(select(Subscription).where(Subscription.subscriber_id == person.id))
        return {row.topic.slug: row.frequency for row in rows if row.ended_at is None}


def test_the_certificate_is_verified_not_ignored(playwright, browser, site, tmp_path):
    """The browser trusts the site through the test CA; one without the CA refuses it."""
    from playwright.sync_api import Error

    context = browser.new_context()
    response = context.new_page().goto(site.url + "/")
    assert response.ok
    details = response.security_details()
    assert details["subjectName"] == "localhost" and details["protocol"] in ("TLS 1.2", "TLS 1.3"), details
    context.close()

    stranger = launch_chromium(playwright, env={**os.environ, "HOME": str(tmp_path)})
    try:
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
            stranger.new_page().goto(site.url + "/")
    finally:
        stranger.close()


def test_public_journey_over_https(page, site, db, smtp_server):
    """Subscribe, confirm from the email, change preferences, leave from the link: every post over https."""
    from playwright.sync_api import expect

    address = "https.person@example.org"
    home = page.goto("/")
    assert home.headers["strict-transport-security"] == HSTS
    assert "script-src 'self' 'nonce-" in home.headers["content-security-policy"]
    assert_accessible(page, "the home page over https")

    fill_subscribe_form(page, address)
    expect(page).to_have_url(f"{site.url}/subscribe/check-your-email")

    [mail] = smtp_server.wait_for(address)
    link = confirm_link(mail)
    assert link.startswith(f"{site.url}/confirm/"), link
    confirm_page = page.goto(link)
    assert confirm_page.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    wait_until(lambda: _subscriber(db, address).status == "active", 10, message="the subscriber to be active")

    manage = page.goto(manage_link(mail))
    assert manage.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", level=1)).to_have_text("Manage your subscriptions")
    page.get_by_label("How often: Trust Matters").select_option(label="Monthly digest")
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_contain_text("Your choices have been saved")
    assert _open_topics(db, address) == {"trust-matters": "monthly"}

    page.goto(unsubscribe_link(mail))
    expect(page.get_by_role("heading", level=1)).to_have_text("Stop all emails from us")
    page.get_by_role("button", name="Unsubscribe from everything").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You have been unsubscribed")
    assert _open_topics(db, address) == {}
    assert _subscriber(db, address).status == "unsubscribed"


def test_team_journey_over_https(page, site, db, smtp_server):
    """An editor writes and submits an issue, signs out; a publisher approves and sends it. The mail links to
    the https site, and its one-click unsubscribe works as a mail provider would use it."""
    from playwright.sync_api import expect

    from mailer.accounts import create_admin
    from mailer.audience import commands
    from mailer.audience.inputs import NewSubscriber
    from mailer.audience.lookups import parse_in
    from mailer.audit import SYSTEM

    reader = "https.reader@example.org"
    with db.transaction() as s:
        create_admin(s, "editor@hiow.nhs.uk", "a long enough password", role="editor")
        create_admin(s, "publisher@hiow.nhs.uk", "a long enough password", role="publisher")
        commands.add_subscriber(
            s,
            parse_in(
                s,
                NewSubscriber,
                {
                    "email": reader,
                    "subscriptions": ["trust-matters"],
                    "area": "portsmouth",
                    "consent": {"source": "Paper form, Portsmouth", "collected": True},
                },
            ),
            SYSTEM,
        )

    sign_in(page, "editor@hiow.nhs.uk")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("link", name="New issue").first.click()
    page.get_by_label("Topic").select_option(label="Trust Matters")
    page.get_by_label("Subject").fill("Trust Matters over https")
    page.get_by_label("Text", exact=True).fill("The new hub in Portsmouth opens in March.")
    page.get_by_role("button", name="Save and preview").click()
    expect(
        page.frame_locator("iframe[title='Email preview, desktop width']").get_by_text("The new hub in Portsmouth")
    ).to_be_visible()
    assert_accessible(page, "the issue page over https")
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator("#issue-status")).to_have_text(re.compile("In.review", re.I))
    issue_url = page.url
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")

    sign_in(page, "publisher@hiow.nhs.uk")
    page.goto(issue_url)
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    page.get_by_role("button", name=re.compile("^Send to 1 ")).click()
    expect(page.get_by_role("status")).to_contain_text("Sending has started")

    [mail] = smtp_server.wait_for(reader)
    assert mail.message["Subject"] == "Trust Matters over https"
    ours = [u for u in links_in(mail.text()) if "localhost" in u or "mailer.test" in u]
    assert ours and all(u.startswith(site.url + "/") for u in ours), ours
    unsubscribe = unsubscribe_link(mail)
    assert unsubscribe.startswith(f"{site.url}/u/")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    with db.sessions() as s:
        issue_id = s.scalar(select(Issue.id).where(Issue.subject == "Trust Matters over https"))
    wait_until(lambda: _issue_status(db, issue_id) == "sent", 30, message="the issue to be sent")
    page.reload()
    expect(page.locator("#issue-status")).to_contain_text("Sent")

    # RFC 8058: the reader's mail provider posts to the List-Unsubscribe URL, from its own servers.
    answer = site.request(
        unsubscribe,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 200, answer.read()
    assert _open_topics(db, reader) == {}


def _issue_status(db, issue_id: int) -> str:
    with db.sessions() as s:
        return s.scalar(select(Issue.status).where(Issue.id == issue_id))


def test_forged_cross_site_posts_are_refused_behind_the_proxy(site, db):
    """Behind the proxy the app knows it is on https (TRUSTED_PROXIES), so Flask-WTF checks the Referer."""
    jar = http.cookiejar.CookieJar()
    opener = site.opener(urllib.request.HTTPCookieProcessor(jar))
    page = site.request("/subscribe", opener=opener)
    assert page.status == 200
    assert page.headers["Strict-Transport-Security"] == HSTS
    token = csrf_from(page.read())

    def post(email, headers):
        form = {"csrf_token": token, "email": email, "topics": "trust-matters", "area": "hampshire"}
        return site.request("/subscribe", data=urllib.parse.urlencode(form).encode(), headers=headers, opener=opener)

    refused = {
        "no referer": {},
        "another site": {"Referer": "https://evil.example/", "Origin": "https://evil.example"},
        "another origin only": {"Referer": f"{site.url}/subscribe", "Origin": "https://evil.example"},
    }
    for why, headers in refused.items():
        answer = post("forged@example.org", headers)
        assert answer.status == 400 and b"Your form has expired" in answer.read(), why
    assert _subscriber(db, "forged@example.org") is None

    accepted = post("real@example.org", {"Referer": f"{site.url}/subscribe", "Origin": site.url})
    assert accepted.status == 303
    assert accepted.headers["Location"].endswith("/subscribe/check-your-email")
