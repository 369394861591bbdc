"""The public pages in a real browser: Debian's Chromium driven by Playwright against the app on a live server.

Covers what the Flask test client cannot: the form as a person uses it (labels, buttons, the NHS error summary's
link to the field) and an axe-core accessibility check of each page as the browser renders it.

Needs /usr/bin/chromium (`apt-get install chromium`); Playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import re
import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from conftest import BASE_URL, free_port, wait_until
from mailer.models import Issue
from support.browser import (
    CHROMIUM,
    NO_CHROMIUM,
    TIMEOUT_MS,
    CspWatch,
    assert_accessible,
    axe_violations,
    fill_subscribe_form,
    running_chromium,
    sign_in,
)
from support.flows import confirm_link, manage_link

# Skip before the session fixtures (Redis, Celery workers) start when there is no browser to drive.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=NO_CHROMIUM),
]


# --- the live server -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(settings):
    """The real app on 127.0.0.1:<free port>, its BASE_URL pointing at itself. Yields that URL."""
    from mailer.web import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(settings.with_overrides(base_url=url))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()
    thread.join(10)
    app.extensions["mailer"].db.dispose()


def on_live_server(mailed_url: str, live_url: str) -> str:
    """A link from an email (built by the workers from BASE_URL) as the same path on the live server."""
    assert mailed_url.startswith(BASE_URL + "/"), f"{mailed_url} is not built from BASE_URL"
    return live_url + mailed_url.removeprefix(BASE_URL)


# --- the browser -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with running_chromium() as chromium:
        yield chromium


@pytest.fixture()
def page(browser, live_server):
    context = browser.new_context(base_url=live_server)
    context.set_default_timeout(TIMEOUT_MS)
    csp = CspWatch().attach(context)
    tab = context.new_page()
    yield tab
    context.close()
    assert csp.violations == [], "pages broke their own Content-Security-Policy"


# --- the tests -------------------------------------------------------------------------------------------------


def test_subscribe_and_confirm_in_a_browser(page, live_server, db, smtp_server, celery_workers):
    from playwright.sync_api import expect

    address = "browser.person@example.org"
    page.goto("/")
    expect(page.locator("h1")).to_have_count(1)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert_accessible(page, "the home page")

    fill_subscribe_form(page, address)
    expect(page).to_have_url(f"{live_server}/subscribe/check-your-email")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    assert_accessible(page, "the check-your-email page")

    [mail] = smtp_server.wait_for(address)
    page.goto(on_live_server(confirm_link(mail), live_server))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    expect(page.get_by_role("listitem").filter(has_text="Trust Matters")).to_have_count(1)
    assert_accessible(page, "the confirmation page")

    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    assert_accessible(page, "the subscribed page")

    def status():
        from sqlalchemy import select

        from mailer.models import Subscriber

        with db.transaction() as s:
            return s.scalar(select(Subscriber.status).where(Subscriber.email_key == address)) == "active"

    wait_until(status, 5, message="the subscriber to be active")

    # Later, from the link in the email's footer, they switch Trust Matters to a monthly digest.
    page.goto(on_live_server(manage_link(mail), live_server))
    expect(page.get_by_role("heading", level=1)).to_have_text("Manage your subscriptions")
    expect(page.get_by_label("Trust Matters", exact=True)).to_be_checked()
    expect(page.get_by_label("Where do you live or work?")).to_have_value("isle-of-wight")
    expect(page.get_by_label("Carer, family member or friend")).to_be_checked()
    expect(page.get_by_label("Mental health services")).to_be_checked()
    assert_accessible(page, "the preference centre")
    page.get_by_label("How often: Trust Matters").select_option(label="Monthly digest")
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_contain_text("Your choices have been saved")
    expect(page.get_by_label("How often: Trust Matters")).to_have_value("monthly")
    assert_accessible(page, "the preference centre after saving")

    with db.transaction() as s:
        from sqlalchemy import select

        from mailer.models import Subscriber, Subscription

        person = s.scalar(select(Subscriber).where(Subscriber.email_key == address))
        assert (person.area, person.audience, person.services) == ("isle-of-wight", "carer", 2)
        assert [
            sub.frequency for sub in s.scalars(select(Subscription).where(Subscription.subscriber_id == person.id))
        ] == ["monthly"]


def test_invalid_email_shows_the_error_summary_linked_to_the_field(page, live_server):
    from playwright.sync_api import expect

    page.goto("/")
    fill_subscribe_form(page, "not an email address")

    summary = page.locator(".nhsuk-error-summary")
    expect(summary).to_be_visible()
    expect(summary.get_by_role("heading", name="There is a problem")).to_be_visible()
    expect(page).to_have_title(re.compile(r"^Error: "))

    link = summary.get_by_role("link")
    expect(link).to_have_count(1)
    assert link.get_attribute("href") == "#email"
    email = page.get_by_label("Email address")
    expect(email).to_have_attribute("id", "email")
    expect(email).to_have_value("not an email address")
    expect(email).to_have_attribute("aria-describedby", "email-error")
    expect(page.locator("#email-error")).to_contain_text("Error:")
    # The Trust Matters choice survives the round trip.
    expect(page.get_by_label("Trust Matters", exact=True)).to_be_checked()

    link.click()
    expect(email).to_be_focused()
    assert_accessible(page, "the form with an error")


def test_axe_is_wired_up(page, live_server):
    """A guard against a silent pass: axe must report a known failure on a page we break on purpose."""
    page.goto("/")
    page.evaluate("() => document.querySelector('#email').removeAttribute('id')")
    ids = {v["id"] for v in axe_violations(page)}
    assert "label" in ids, ids


def test_csp_violations_are_caught(browser, live_server):
    """A guard against a silent pass: an inline script and an inline style, added on purpose, are reported."""
    from playwright.sync_api import expect

    context = browser.new_context(base_url=live_server)
    csp = CspWatch().attach(context)
    page = context.new_page()
    page.goto("/")
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "document.title = 'ran'";
            document.body.append(script);
            document.querySelector("h1").setAttribute("style", "color: red");
        }"""
    )
    expect(page).not_to_have_title("ran")
    wait_until(lambda: len(csp.violations) >= 2, 5, message="the violations to be reported")
    context.close()
    assert {v.get("directive") for v in csp.violations} >= {"script-src-elem", "style-src-attr"}, csp.violations


def test_build_a_segment_watch_its_count_and_send_only_to_it(page, live_server, db, smtp_server, celery_workers):
    """The comms team targets "Isle of Wight carers": the count follows the form, the send follows the count."""
    from playwright.sync_api import expect

    from mailer.accounts import create_admin
    from mailer.audience import commands
    from mailer.audience.inputs import NewSubscriber
    from mailer.audience.lookups import parse_in
    from mailer.audit import SYSTEM

    people = {
        "iow.carer@example.org": ("isle-of-wight", "carer"),
        "iow.carer2@example.org": ("isle-of-wight", "carer"),
        "iow.staff@example.org": ("isle-of-wight", "staff"),
        "hants.carer@example.org": ("hampshire", "carer"),
    }
    with db.transaction() as s:
        create_admin(s, "publisher@hiow.nhs.uk", "a long enough password", role="publisher")
        consent = {"source": "Community event, Newport", "collected": True}
        for email, (area, audience) in people.items():
            fields = {"email": email, "subscriptions": ["trust-matters"], "area": area, "audience": audience}
            commands.add_subscriber(s, parse_in(s, NewSubscriber, fields | {"consent": consent}), SYSTEM)

    sign_in(page, "publisher@hiow.nhs.uk")
    page.get_by_role("link", name="Segments").first.click()
    page.get_by_role("link", name="Create a segment").click()
    page.get_by_label("Name", exact=True).fill("Isle of Wight carers")

    page.get_by_label("Match on").select_option(label="Area")
    page.get_by_label("Isle of Wight").check()
    expect(page.locator("#segment-count")).to_have_text("3")
    assert_accessible(page, "the segment builder")

    page.get_by_role("button", name="Add another condition").click()
    page.locator("#field-1").select_option(label="Audience")
    page.locator("[data-values=audience]").nth(1).get_by_label("Carer, family member or friend").check()
    expect(page.locator("#segment-count")).to_have_text("2")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("status")).to_contain_text("Segment saved")
    expect(page.locator("#segment-count")).to_have_text("2")

    page.get_by_role("link", name="New issue").first.click()
    page.get_by_label("Topic").select_option(label="Trust Matters")
    page.get_by_label("Segment (optional)").select_option(label="Isle of Wight carers")
    page.get_by_label("Subject").fill("Carers' drop-in, Newport")
    page.get_by_label("Text", exact=True).fill("Come and talk to us about mental health services on the island.")
    page.get_by_role("button", name="Save and preview").click()
    expect(page.get_by_text("This issue will go to")).to_contain_text("2")
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_role("button", name="Approve").click()
    page.get_by_role("button", name=re.compile("^Send to 2 ")).click()

    smtp_server.wait_for("iow.carer@example.org")
    smtp_server.wait_for("iow.carer2@example.org")
    # Wait on the issue's status in the database, then look once: reloading the page in a tight loop
    # raced its own navigations.
    with db.sessions() as s:
        issue_id = s.scalar(select(Issue.id).where(Issue.subject == "Carers' drop-in, Newport"))
    wait_until(lambda: _status(db, issue_id) == "sent", 30, message="the issue is sent")
    page.reload()
    expect(page.locator("#issue-status")).to_contain_text("Sent")
    assert smtp_server.messages_to("iow.staff@example.org") == []
    assert smtp_server.messages_to("hants.carer@example.org") == []


def _status(db, issue_id: int) -> str:
    with db.sessions() as s:
        return s.scalar(select(Issue.status).where(Issue.id == issue_id))


def test_compose_preview_test_submit_approve_schedule(page, live_server, db, smtp_server, celery_workers, tmp_path):
    """An editor composes with an image, a button and the latest updates, previews, tests and submits; a
    publisher approves and schedules it. Screenshots land in tmp_path for a person to look at."""
    from datetime import timedelta

    from PIL import Image
    from playwright.sync_api import expect

    from mailer.accounts import create_admin
    from mailer.models import Issue, Topic, Update, utcnow

    with db.transaction() as s:
        create_admin(s, "editor@hiow.nhs.uk", "a long enough password", role="editor")
        create_admin(s, "publisher@hiow.nhs.uk", "a long enough password", role="publisher")
        topic_id = s.query(Topic.id).filter(Topic.slug == "project-fusion").scalar()
        s.add(
            Update(
                slug="board-agrees",
                title="Board agrees the plan",
                summary="Next step: public conversations.",
                topic_id=topic_id,
                status="published",
                published_at=utcnow(),
            )
        )
    image = tmp_path / "hub.png"
    Image.new("RGB", (600, 300), (0, 94, 184)).save(image)

    sign_in(page, "editor@hiow.nhs.uk")
    page.goto("/admin/issues/new")
    page.get_by_label("Topic").select_option(label="Project Fusion updates")
    page.get_by_label("Subject").fill("Project Fusion: December")
    page.get_by_label("Text", exact=True).fill(
        "This month the board agreed the plan. [Read the board papers](https://example.nhs.uk/papers)"
    )
    page.get_by_role("button", name="Image", exact=True).click()
    page.get_by_label("Image", exact=True).set_input_files(str(image))
    page.get_by_label("Alt text").fill("The new community hub in Newport")
    page.get_by_role("button", name="Button", exact=True).click()
    page.get_by_label("Button text").fill("Join a community conversation")
    page.get_by_label("Web address").fill("https://example.nhs.uk/events")
    page.get_by_role("button", name="Latest updates", exact=True).click()
    page.get_by_role("button", name="Heading", exact=True).click()
    page.get_by_label("Heading", exact=True).fill("What is changing")
    page.get_by_role("button", name="Move block 5 up").click()
    page.get_by_role("button", name="Move block 4 up").click()
    page.get_by_role("button", name="Move block 3 up").click()
    page.get_by_role("button", name="Move block 2 up").click()
    expect(page.locator("[data-block] legend").first).to_contain_text("Heading")
    assert_accessible(page, "the composer")
    page.screenshot(path=str(tmp_path / "composer.png"), full_page=True)
    page.get_by_role("button", name="Save and preview").click()

    expect(page.get_by_text("Checked")).to_be_visible()
    expect(page.locator("#plain-text")).to_contain_text("Board agrees the plan")
    expect(
        page.frame_locator("iframe[title='Email preview, mobile width']").get_by_text("Join a community conversation")
    ).to_be_visible()
    assert_accessible(page, "the issue and its preview")
    page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)
    page.get_by_label("Send a test to").fill("editor@hiow.nhs.uk")
    page.get_by_role("button", name="Send test").click()
    [test_mail] = smtp_server.wait_for("editor@hiow.nhs.uk")
    assert test_mail.message["Subject"] == "[TEST] Project Fusion: December"
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator("#issue-status")).to_have_text(re.compile("In.review", re.I))

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "publisher@hiow.nhs.uk")
    issue_id = db.engine.connect().exec_driver_sql("SELECT max(id) FROM issues").scalar()
    page.goto(f"/admin/issues/{issue_id}")
    page.get_by_role("button", name="Approve").click()
    when = (utcnow() + timedelta(days=1)).astimezone(__import__("zoneinfo").ZoneInfo("Europe/London"))
    page.get_by_label("Or send it later").fill(when.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_role("status")).to_contain_text("Scheduled for")
    assert_accessible(page, "a scheduled issue")
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        assert issue.status == "scheduled" and abs((issue.send_at - when).total_seconds()) < 60
        assert [b["type"] for b in issue.blocks] == ["heading", "text", "image", "button", "updates"]


def test_the_team_reads_a_send_that_paused_itself_and_the_suppression_list_in_a_browser(
    page, live_server, db, settings
):
    """The feedback loop's pages as a publisher uses them, each checked with axe and under the CSP: the issue that
    paused itself with its figures, its recipients who bounced, the suppression list (adding one by hand) and
    the statistics page's 30-day figures."""
    from playwright.sync_api import expect
    from test_team_feedback import _paused_issue

    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, "publisher@hiow.nhs.uk", "a long enough password", role="publisher")
    issue_id, _rows = _paused_issue(db, settings)
    sign_in(page, "publisher@hiow.nhs.uk")

    page.goto(f"/admin/issues/{issue_id}")
    expect(page.get_by_text("of the first 110 messages bounced")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Resume"))).to_be_visible()
    assert_accessible(page, "an issue that paused itself, with its figures")

    page.goto(f"/admin/issues/{issue_id}/recipients?who=bounced")
    expect(page.get_by_text("5.1.1").first).to_be_visible()
    assert_accessible(page, "the recipients who bounced")

    page.goto("/admin/suppressions")
    assert_accessible(page, "the suppression list")
    page.get_by_role("button", name="Add to the list").click()  # nothing filled in: each field says what it needs
    expect(page.locator(".nhsuk-error-message").first).to_be_visible()
    assert_accessible(page, "the suppression list's form with its errors")
    page.get_by_label("Email address", exact=True).fill("typed.by.hand@example.org")
    page.get_by_label("Why", exact=True).select_option(value="unsubscribed")
    # Each listing's own "Why" and button name whom they are for, for those who hear the page.
    expect(page.get_by_label("Why take person6@example.org off the list")).to_have_count(1)
    page.get_by_role("button", name="Add to the list").click()
    expect(page.get_by_text("typed.by.hand@example.org").first).to_be_visible()
    assert_accessible(page, "the suppression list after adding an address")

    page.goto("/admin/stats")
    expect(page.get_by_text(re.compile("last 30 days", re.I)).first).to_be_visible()
    assert_accessible(page, "the statistics page with the 30-day figures")
