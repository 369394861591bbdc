"""In Chromium, with MFA_REQUIRED: a new account's first sign-in goes through setting up its second factor, then
signs in with a code; every page on the way passes axe-core and keeps its Content-Security-Policy."""

from __future__ import annotations

import os
import re
import threading

import pyotp
import pytest
from werkzeug.serving import make_server

from conftest import free_port
from support.browser import CHROMIUM, NO_CHROMIUM, TIMEOUT_MS, CspWatch, assert_accessible, running_chromium, sign_in
from support.flows import next_code

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=NO_CHROMIUM),
]


@pytest.fixture(scope="module")
def live_server(settings):
    """The app with MFA_REQUIRED on 127.0.0.1:<free port>. Yields its URL."""
    from mailer.web import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(settings.with_overrides(base_url=url, mfa_required=True))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()
    thread.join(10)
    app.extensions["mailer"].db.dispose()


@pytest.fixture()
def page(live_server):
    with running_chromium() as browser:
        context = browser.new_context(base_url=live_server)
        context.set_default_timeout(TIMEOUT_MS)
        csp = CspWatch().attach(context)
        yield context.new_page()
        context.close()
        assert csp.violations == [], "pages broke their own Content-Security-Policy"


def test_a_first_sign_in_sets_up_the_second_factor_then_signs_in_with_a_code(page, db):
    from playwright.sync_api import expect

    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, "sam@hiow.nhs.uk", "a long enough password", role="editor")
    sign_in(page, "sam@hiow.nhs.uk")
    expect(page.get_by_role("heading", name="Set up a second factor")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    assert_accessible(page, "enrolment")
    secret = page.locator("#secret").inner_text().replace(" ", "")

    page.get_by_label("Code from the app").fill("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.get_by_role("button", name="Switch it on").click()
    expect(page.get_by_role("link", name=re.compile("That code is not right"))).to_be_visible()
    assert_accessible(page, "enrolment with an error")
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Switch it on").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    assert_accessible(page, "recovery codes")
    page.get_by_role("link", name=re.compile("continue")).click()
    expect(page.get_by_text("Signed in as sam@hiow.nhs.uk")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, "sam@hiow.nhs.uk")
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    assert_accessible(page, "the code step")
    page.get_by_label("Code").fill(next_code(secret))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("Signed in as sam@hiow.nhs.uk")).to_be_visible()
    page.get_by_role("link", name="Your account").click()
    expect(page.get_by_text("10 of your recovery codes are unused")).to_be_visible()
    assert_accessible(page, "your account")


def test_the_forgotten_password_pages_are_accessible(page):
    from playwright.sync_api import expect

    page.goto("/admin/login")
    page.get_by_role("link", name="Forgotten your password?").click()
    assert_accessible(page, "forgotten password")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("link", name="Enter your email address")).to_be_visible()
    assert_accessible(page, "forgotten password with an error")
    page.get_by_label("Email address").fill("someone@hiow.nhs.uk")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
