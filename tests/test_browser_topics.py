"""The Topics page in a real browser (Chromium through Playwright, checked with axe and under the CSP): an admin
adds "Name consultation", the public form offers it, the admin retires it and the form no longer does."""

from __future__ import annotations

import os
import re

import pytest
from test_browser import browser, live_server, page  # noqa: F401 - the live site and the browser, as fixtures

from support.browser import CHROMIUM, NO_CHROMIUM, assert_accessible, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=NO_CHROMIUM),
]


def test_an_admin_adds_a_topic_the_public_form_offers_it_and_retiring_it_takes_it_off(page, db):  # noqa: F811
    from playwright.sync_api import expect

    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, "admin@hiow.nhs.uk", "a long enough password", role="admin")
    sign_in(page, "admin@hiow.nhs.uk")

    page.get_by_role("link", name="Topics").first.click()
    expect(page.get_by_role("heading", name="Topics", exact=True)).to_be_visible()
    assert_accessible(page, "the Topics page")
    page.get_by_role("button", name="Add topic").click()  # nothing filled in: the name says what it needs
    expect(page.get_by_text("Enter a name for the topic").first).to_be_visible()
    assert_accessible(page, "the Topics page with an error")

    page.get_by_label("Name", exact=True).fill("Name consultation")
    page.get_by_label("Description (optional)").fill("Help us choose the new trust's name.")
    page.get_by_role("button", name="Add topic").click()
    expect(page.get_by_text("Name consultation added")).to_be_visible()

    page.goto("/subscribe")
    expect(page.get_by_label(re.compile("Name consultation"))).to_be_visible()
    assert_accessible(page, "the sign-up form with the new topic")

    page.goto("/admin/topics")
    page.get_by_role("button", name=re.compile("Retire.*Name consultation")).click()
    expect(page.get_by_text("Name consultation is retired")).to_be_visible()
    assert_accessible(page, "the Topics page with a retired topic")
    page.goto("/subscribe")
    expect(page.get_by_label(re.compile("Name consultation"))).to_have_count(0)
