"""The team's home page and the issues list in Chromium: each checked with axe under the page's CSP, and the
sending panel's progress moving on by itself (static/home.js) while the ledger fills, without a reload.

Uses test_browser's live server and browser (Debian's Chromium through Playwright); skipped without it."""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import select
from test_browser import browser, live_server, page  # noqa: F401  (the fixtures, shared)
from test_home import _issue, _mark_sent, _sending

from mailer.models import Delivery
from support.browser import CHROMIUM, NO_CHROMIUM, assert_accessible, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=NO_CHROMIUM),
]


def test_the_home_page_shows_a_send_moving_on_by_itself_and_the_issues_list_filters(page, db):  # noqa: F811
    from playwright.sync_api import expect

    from mailer.accounts import create_admin
    from mailer.compose.issues import submit_issue

    with db.transaction() as s:
        create_admin(s, "publisher@hiow.nhs.uk", "a long enough password", role="publisher")
    waiting = _issue(db, "Ward move: please check", topic="careers")
    with db.transaction() as s:
        submit_issue(s, waiting)
    issue_id, rows = _sending(db, "Project Fusion: March", 10, "reader")
    _mark_sent(db, rows[:3])

    sign_in(page, "publisher@hiow.nhs.uk")
    expect(page.get_by_role("heading", name="Home", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Ward move: please check")).to_be_visible()
    progress = page.locator(f"#sending-{issue_id}-text")
    expect(progress).to_have_text(re.compile(r"3 of 10 done"))
    assert_accessible(page, "the home page with a send in progress")
    page.evaluate("window.notReloaded = true")

    _mark_sent(db, rows[3:8])
    expect(progress).to_have_text(re.compile(r"8 of 10 done"), timeout=20_000)  # home.js asks every 5 s
    assert page.evaluate("window.notReloaded") is True  # the panel was swapped in, the page never reloaded
    bar = page.locator(f"#sending-{issue_id}-bar")
    assert bar.get_attribute("value") == "8" and bar.get_attribute("max") == "10"
    with db.sessions() as s:
        assert s.scalar(select(Delivery.status).where(Delivery.id == rows[9])) == "pending"

    page.get_by_role("link", name="All issues").click()
    page.get_by_label("Status").select_option(value="in_review")
    page.get_by_role("button", name="Show issues").click()
    expect(page.locator("#issues-table tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name="Ward move: please check")).to_be_visible()
    assert "status=in_review" in page.url
    assert_accessible(page, "the issues list, filtered")

    page.goto("/admin/issues?status=bogus&page=0")
    expect(page.get_by_role("heading", name="There is a problem")).to_be_visible()
    link = page.get_by_role("link", name=re.compile("Status must be one of"))
    assert link.get_attribute("href") == "#filter-status"
    expect(page.locator("#filter-status-error")).to_contain_text("Status must be one of")
    assert_accessible(page, "the issues list with a filter it could not use")
