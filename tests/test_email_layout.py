"""How the emails are laid out where people read them: images in shape at phone widths, tables and other
Markdown styled on the elements themselves (so they survive clients that drop <style>), a plain-text part that
reads well, a hidden preheader that is not hidden text, and the pages staff and readers see around them.

The browser checks open the email's HTML in Debian's Chromium at 320, 375 and 600 px, as it was rendered and
with every <style> block removed, as Gmail's apps do for non-Google accounts.
"""

from __future__ import annotations

import html as htmlmod
import io
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from sqlalchemy import select

from mailer.compose.blocks import archive_page, checks
from mailer.compose.mail import compile_issue, preview
from mailer.compose.updates import publish_update
from mailer.models import Issue, Media, Topic, Update, utcnow
from mailer.render import EmailContent, render_email
from mailer.render.content import markdown_to_text
from support.browser import running_chromium
from support.flows import sign_in

PICTURE = (1200, 675)
TABLE = """| Milestone | Date | Status |
|---|:---:|--:|
| Consultation opens | 12 November 2026 | Done |
| Board decision | 3 December 2026 | Planned |
| Services transfer | 1 April 2027 | Planned |
| Staff consultation | Spring 2027 | Not started |
"""
STORY = (
    """We asked people across the Isle of Wight what matters to them.

> Being able to see the same nurse matters more to me than anything.
>
> > Said at the Newport drop-in.

What happens next:

- The board decides in **December**
- Services move in *April*
  1. Community teams first
  2. Then mental health

Read [the board papers](https://example.nhs.uk/papers) or the `FUSION-2026` reference.

### Milestones

"""
    + TABLE
)


def _topic_id(session, slug="project-fusion") -> int:
    return session.scalar(select(Topic.id).where(Topic.slug == slug))


def _update(session, title="Ward move agreed", slug="ward-move-agreed", **extra) -> Update:
    update = Update(
        slug=slug,
        title=title,
        summary="The board agreed the plan.",
        body="Details.",
        topic_id=_topic_id(session),
        status="published",
        published_at=utcnow(),
        **extra,
    )
    session.add(update)
    session.flush()
    return update


def _picture(session) -> Media:
    media = Media(
        sha256="e" * 64, filename="hub.jpg", content_type="image/png", size=1, width=PICTURE[0], height=PICTURE[1]
    )
    session.add(media)
    session.flush()
    return media


def _newsletter_blocks(media_id: int) -> list[dict]:
    return [
        {"type": "heading", "text": "Project Fusion this month"},
        {"type": "text", "markdown": STORY},
        {
            "type": "image",
            "media": media_id,
            "alt": "The new community hub in Newport",
            "caption": "Opening in spring",
            "link": None,
        },
        {"type": "button", "label": "Book a place at a drop-in", "url": "https://example.nhs.uk/events"},
        {"type": "updates", "count": 3},
        {"type": "divider"},
    ]


def _render(db, settings, blocks_for=_newsletter_blocks, preheader="What changed this month") -> tuple[str, str]:
    """(html, text) of a newsletter with every kind of block, as the admin preview shows it."""
    with db.transaction() as s:
        _update(s)
        media = _picture(s)
        issue = Issue(
            subject="Project Fusion: December",
            preheader=preheader,
            body="",
            topic_id=_topic_id(s),
            slug="december",
            blocks=blocks_for(media.id),
        )
        s.add(issue)
        s.flush()
        return preview(issue, settings)


def _style_attribute(tag: str) -> dict[str, str]:
    match = re.search(r'style="([^"]*)"', tag)
    pairs = (part.split(":", 1) for part in (match.group(1) if match else "").split(";") if ":" in part)
    return {name.strip(): value.strip() for name, value in pairs}


# --- the HTML as written -----------------------------------------------------------------------------------------


def test_an_image_keeps_its_shape_and_tells_outlook_its_size(db, settings):
    html, _ = _render(db, settings)
    [img] = re.findall(r"<img\b[^>]*>", html)
    style = _style_attribute(img)
    assert style["height"] == "auto" and style["width"] == "100%", img
    # The real size in the attributes: Outlook for Windows sizes by them, others keep the space while loading.
    assert 'width="592"' in img and f'height="{round(592 * PICTURE[1] / PICTURE[0])}"' in img, img


def test_markdown_tables_carry_borders_padding_alignment_and_a_header_row_inline(db, settings):
    html, _ = _render(db, settings)
    table = html[html.index("<table style=") : html.index("</table>", html.index("<table style="))]
    assert _style_attribute(re.match(r"<table[^>]*>", table).group(0))["border-collapse"] == "collapse"
    headers = re.findall(r"<th\b[^>]*>", table)
    cells = re.findall(r"<td\b[^>]*>", table)
    assert len(headers) == 3 and len(cells) == 12
    for tag in headers + cells:
        style = _style_attribute(tag)
        assert style["padding"] == "8px" and style["border"] == "1px solid #d8dde0", tag
        assert style["word-break"] == "normal", tag  # MJML's break-word split "Status" into "Statu s"
    assert all('scope="col"' in tag and _style_attribute(tag)["background-color"] == "#f0f4f5" for tag in headers)
    # Columns aligned in the Markdown stay aligned, in the style and in the attribute Outlook reads.
    assert [_style_attribute(tag)["text-align"] for tag in headers] == ["left", "center", "right"]
    assert [re.search(r'align="(\w+)"', tag).group(1) for tag in cells[1:3]] == ["center", "right"]


def test_colours_and_margins_are_on_the_elements_not_only_in_a_style_block(db, settings):
    html, _ = _render(db, settings)
    styles = " ".join(re.findall(r"<style\b[^>]*>(.*?)</style>", html, re.S))
    assert "#005eb8" not in styles and "#4c6272" not in styles and "h2" not in styles
    links = re.findall(r"<a\b[^>]*>", html)
    assert links and all("color" in _style_attribute(a) for a in links), [a for a in links if "color" not in a]
    board = next(a for a in links if "board papers" in html[html.index(a) :][: len(a) + 20])
    assert _style_attribute(board)["color"] == "#005eb8"
    footer = next(a for a in links if "/manage/" in a)
    assert _style_attribute(footer)["color"] == "#4c6272"
    for heading in re.findall(r"<h[1-4]\b[^>]*>", html):
        assert _style_attribute(heading)["margin"] == "0 0 12px", heading


def test_the_preheader_is_hidden_without_white_text_and_padded_against_body_text(db, settings):
    html, _ = _render(db, settings)
    start = html.index("What changed this month")
    hidden = html[html.rindex("<div", 0, start) : html.index("</div>", start)]
    style = _style_attribute(hidden)
    assert style["display"] == "none" and style["mso-hide"] == "all" and style["max-height"] == "0"
    assert style["overflow"] == "hidden" and style["opacity"] == "0"
    # White on the grey background is what SpamAssassin scores as HTML_FONT_LOW_CONTRAST.
    assert "color" not in style and "#ffffff" not in hidden.lower()
    padding = htmlmod.unescape(hidden[hidden.index("What changed this month") + 23 :])
    assert padding.count("\u200c\u00a0") >= 80 and not padding.replace("\u200c\u00a0", "")


def test_the_confirmation_email_needs_no_style_block_either():
    fields = {"confirm_url": "https://x/c", "unsubscribe_url": "https://x/u", "manage_url": "https://x/m"}
    content = EmailContent(
        subject="Confirm your subscription",
        preheader="One click",
        body_html="",
        body_text="",
        template="confirmation",
        organisation="HIOW",
        contact_email="comms@example.nhs.uk",
        extra={"topics": ["Trust Matters"]},
    )
    html, _ = render_email(content, fields)
    assert all(
        _style_attribute(a).get("color") == "#4c6272"
        for a in re.findall(r'<a href="(?:https://x/[um]|mailto)[^>]*>', html)
    )
    assert _style_attribute(re.search(r"<h1\b[^>]*>", html).group(0))["margin"] == "0 0 12px"
    assert "color:#ffffff;line-height:1px" not in html  # MJML's white preheader


def test_the_html_stays_far_under_gmails_clip(db, settings):
    html, _ = _render(db, settings)
    assert len(html.encode()) < 40 * 1024  # Gmail clips at 102 KB; a full issue has plenty of room


# --- the plain-text part -----------------------------------------------------------------------------------------


def test_the_text_part_reads_well_in_a_plain_text_client(db, settings):
    _, text = _render(db, settings)
    # A table: one record per row, each value with its header; not 15 paragraphs of one cell each.
    assert "Milestone: Consultation opens\nDate: 12 November 2026\nStatus: Done\n\nMilestone: Board decision\n" in text
    assert "\nDate\n" not in text and "\nDone\n" not in text
    # Quotes keep their marks, nested ones two.
    assert "> Being able to see the same nurse matters more to me than anything.\n>\n> > Said at the Newport" in text
    # Headings are underlined; lists keep bullets and numbers; links say where they go; emphasis leaves no marks.
    assert "Project Fusion this month\n=========================\n" in text
    assert "Milestones\n----------\n" in text
    assert "* The board decides in December\n* Services move in April\n  1. Community teams first\n" in text
    assert "the board papers (https://example.nhs.uk/papers)" in text and "FUSION-2026" in text
    assert "*" not in text.replace("* ", "") and "`" not in text and "###" not in text


def test_markdown_to_text_keeps_quotes_code_and_line_breaks():
    text = markdown_to_text("> One\n> two  \n> three\n\n    code()\n    more()\n\n1. a\n\n   still a\n2. b\n")
    assert text.startswith("> One two\n> three\n\n    code()\n    more()\n\n1. a\n\n   still a\n\n2. b")


# --- in a browser ------------------------------------------------------------------------------------------------

_MEASURE = """() => {
    const img = document.querySelector("img[alt^='The new community hub']");
    const box = img.getBoundingClientRect();
    const broken = [];
    for (const cell of document.querySelectorAll("th, td")) {
        if (cell.closest("table").getAttribute("role") === "presentation") continue;  // MJML's layout
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (const match of node.textContent.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, match.index);
                range.setEnd(node, match.index + match[0].length);
                if (range.getClientRects().length > 1) broken.push(match[0]);
            }
        }
    }
    const cell = getComputedStyle([...document.querySelectorAll("td")].find(td => td.textContent === "Done"));
    const link = [...document.querySelectorAll("a")].find(a => a.textContent === "the board papers");
    const footer = [...document.querySelectorAll("a")].find(a => a.textContent.startsWith("Change what you get"));
    const heading = [...document.querySelectorAll("h2")].find(h => h.textContent === "Project Fusion this month");
    return {
        imageRatio: box.width / box.height, imageWidth: box.width, loaded: img.complete && img.naturalWidth > 0,
        overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        broken, tables: document.querySelectorAll("th").length,
        cellPadding: cell.paddingLeft, cellBorder: cell.borderTopWidth, cellAlign: cell.textAlign,
        linkColour: getComputedStyle(link).color, footerColour: getComputedStyle(footer).color,
        headingMargin: getComputedStyle(heading).marginBottom,
        preheaderShown: (() => {
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                if (!node.textContent.startsWith("What changed this month")) continue;
                const range = document.createRange();
                range.selectNodeContents(node);
                return range.getClientRects().length > 0;
            }
            return null;
        })(),
    };
}"""


@pytest.fixture(scope="module")
def chromium():
    with running_chromium() as browser:
        yield browser


def _picture_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", PICTURE, (0, 94, 184)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_newsletter_keeps_its_shape_at_phone_and_desktop_widths_with_and_without_style_blocks(
    chromium, db, settings
):
    html, _ = _render(db, settings)
    stripped = re.sub(r"<style\b[^>]*>.*?</style>", "", html, flags=re.S)
    assert "<style" in html and "<style" not in stripped
    picture = _picture_bytes()
    for label, document in (("as sent", html), ("without <style>", stripped)):
        for width in (320, 375, 600):
            page = chromium.new_page(viewport={"width": width, "height": 900})
            try:
                page.route(
                    "**/media/**", lambda route: route.fulfill(status=200, content_type="image/png", body=picture)
                )
                page.set_content(document, wait_until="load")
                seen = page.evaluate(_MEASURE)
            finally:
                page.close()
            where = f"{label} at {width}px: {seen}"
            assert seen["loaded"], where
            assert abs(seen["imageRatio"] - PICTURE[0] / PICTURE[1]) < 0.02, where
            assert seen["imageWidth"] <= width, where
            assert seen["overflow"] <= 0, where
            assert seen["tables"] == 3 and seen["broken"] == [], where
            assert seen["cellPadding"] == "8px" and seen["cellBorder"] == "1px" and seen["cellAlign"] == "right", where
            assert seen["linkColour"] == "rgb(0, 94, 184)" and seen["footerColour"] == "rgb(76, 98, 114)", where
            assert seen["headingMargin"] == "12px", where
            assert seen["preheaderShown"] is False, where


# --- the blocks and checks ---------------------------------------------------------------------------------------


def test_latest_updates_take_the_writers_heading_instead_of_adding_their_own(db, settings):
    def under_heading(media_id):
        return [{"type": "heading", "text": "News from the programme"}, {"type": "updates", "count": 3}]

    html, text = _render(db, settings, blocks_for=under_heading)
    assert "News from the programme" in html and "Ward move agreed" in html
    assert "Latest updates" not in html and "Latest updates" not in text

    def on_its_own(media_id):
        return [{"type": "text", "markdown": "Hello."}, {"type": "updates", "count": 3}]

    with db.transaction() as s:
        for table in (Issue, Update, Media):
            s.execute(table.__table__.delete())
    html, text = _render(db, settings, blocks_for=on_its_own)
    assert html.count("Latest updates") == 1 and "Latest updates\n==============\n" in text


def test_an_update_email_links_with_words_that_say_where_they_go(db, settings):
    with db.transaction() as s:
        update = _update(s, title="Newport hub opening", slug="newport-hub", link="https://example.nhs.uk/hub")
        update.status = "draft"
        update.published_at = None
        issue = publish_update(s, update.id)
        assert not [m for level, m in checks(issue.subject, issue.blocks, 1000) if "say where it goes" in m]
        message = compile_issue(issue, settings)
    html = message.fill(
        {
            "to": "r@example.org",
            "date": "Mon, 23 Nov 2026 10:00:00 +0000",
            "message_id": "m@x",
            "list_unsubscribe": "https://x/u",
            "unsubscribe_url": "https://x/u",
            "manage_url": "https://x/m",
        }
    ).decode()
    assert "Find out more about Newport hub opening" in re.sub(r"=\r?\n", "", html)


def test_preview_checks_warn_about_a_table_wider_than_a_phone():
    narrow = {"type": "text", "markdown": TABLE}
    wide = {
        "type": "text",
        "markdown": "| Programme | Internationalisation | Responsibilities |\n|---|---|---|\n| a | b | c |",
    }
    found = checks("Subject", [narrow, wide], 1000)
    assert [m for _, m in found if "wider than a phone" in m] == [
        "Block 2: a table with 3 columns is wider than a phone screen: the email shows it as one record per row "
        "(Header: value) and the web page scrolls it. Use fewer columns or shorter words to keep it a table"
    ]
    pictured = {"type": "text", "markdown": "Our hub:\n\n![The hub](https://example.nhs.uk/hub.jpg)"}
    assert [m for _, m in checks("Subject", [pictured], 1000) if "picture in the text" in m] == [
        "Block 1: a picture in the text: Outlook for Windows shows it at its full size, wider than the email. "
        "Use an image block, which sizes it for every mail program"
    ]
    linked = {"type": "text", "markdown": "| What | Where |\n|---|---|\n| Papers | [here](https://example.nhs.uk) |"}
    assert any("a link says “here”" in m for _, m in checks("Subject", [linked], 1000))


# --- the pages around the email ----------------------------------------------------------------------------------


def test_archive_dates_are_valid_html_datetimes(client, db):
    with db.transaction() as s:
        _update(s, title="Ward move agreed", slug="ward-move")
    for path in ("/news", "/news/updates/ward-move"):
        page = client.get(path).data.decode()
        stamps = re.findall(r'<time datetime="([^"]+)"', page)
        assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", v) for v in stamps), stamps


def test_the_audit_log_and_consent_record_show_text_as_it_was_written(client, db):
    from mailer.audience.subscriptions import request_subscription

    with db.transaction() as s:
        person_id = request_subscription(
            s, email="sian@example.org", name="Siân O'Brien", topic_slugs=["trust-matters"]
        ).subscriber_id
    sign_in(client, db, role="admin")
    with db.transaction() as s:
        from mailer import audit

        audit.record(s, audit.SYSTEM, "issue.return", None, note='Don\'t send yet: "Siân" <asked> & waits')
    record = htmlmod.unescape(client.get(f"/admin/subscribers/{person_id}").data.decode())
    assert "name: Siân O'Brien" in record and "topics: trust-matters" in record
    log = htmlmod.unescape(client.get("/admin/audit").data.decode())
    assert 'note: Don\'t send yet: "Siân" <asked> & waits' in log
    for page in (record, log):
        assert "\\u00" not in page


_MEASURE_PAGE = """() => {
    const img = document.querySelector("img[alt^='The new community hub']");
    const box = img.getBoundingClientRect();
    const boxes = [...document.querySelectorAll(".tm-table-scroll")];
    return {
        imageRatio: box.width / box.height, loaded: img.complete && img.naturalWidth > 0,
        overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        scrollBoxes: boxes.length, tablesInBoxes: boxes.filter(b => b.querySelector("table")).length,
        quoteBorder: getComputedStyle(document.querySelector(".tm-issue-web blockquote")).borderLeftWidth,
    };
}"""
WIDE_TABLE = """| Workstream | Organisation | Status | Next step |
|---|---|---|---|
| Communications | Hampshire and Isle of Wight Healthcare | Done | 12 November 2026 |
| Interoperability | Southern Health | In progress | Records transfer |
"""


def test_a_table_too_wide_for_a_phone_is_written_as_records_in_the_email_and_boxed_on_the_web(db, settings):
    blocks = [{"type": "text", "markdown": WIDE_TABLE}, {"type": "text", "markdown": TABLE}]
    html, text = _render(db, settings, blocks_for=lambda _media: blocks)
    assert html.count("<th ") == 3, "only the table that fits a phone stays a table"
    records = re.findall(r'<p class="tm-record"[^>]*>(.*?)</p>', html, re.S)
    assert len(records) == 2
    assert records[1].replace("<br />", "<br>") == (  # MJML writes XHTML
        "<strong>Workstream:</strong> Interoperability<br><strong>Organisation:</strong> Southern Health<br>"
        "<strong>Status:</strong> In progress<br><strong>Next step:</strong> Records transfer"
    )
    assert "Organisation: Southern Health" in text
    with db.transaction() as s:
        page = archive_page(s, blocks)
    assert page.count('<div class="tm-table-scroll" role="region" tabindex="0"') == 2
    assert page.count("<table") == 2 and "tm-record" not in page


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_web_version_keeps_the_pictures_shape_and_never_widens_the_page(chromium, client, db):
    with db.transaction() as s:
        media = _picture(s)
        blocks = [*_newsletter_blocks(media.id), {"type": "text", "markdown": WIDE_TABLE}]
        s.add(
            Issue(
                subject="Project Fusion: December", body="", topic_id=_topic_id(s), slug="december-web",
                blocks=blocks, status="sent", send_requested_at=utcnow(), archive_html=archive_page(s, blocks),
            )
        )
    response = client.get("/news/december-web")
    assert response.status_code == 200
    document = response.data.decode()
    picture = _picture_bytes()
    static = Path(__file__).resolve().parents[1] / "mailer" / "web"

    def serve(route):
        path = urlsplit(route.request.url).path
        if path == "/news/december-web":  # the page as the app answered it, with its stylesheets and picture
            return route.fulfill(status=200, content_type="text/html; charset=utf-8", body=document)
        if path.startswith("/media/"):
            return route.fulfill(status=200, content_type="image/png", body=picture)
        if path.startswith("/static/") and (static / path.lstrip("/")).is_file():
            return route.fulfill(path=str(static / path.lstrip("/")))
        return route.fulfill(status=404, body="")

    for width in (320, 600):
        page = chromium.new_page(viewport={"width": width, "height": 900})
        try:
            page.route("http://mailer.test/**", serve)
            page.goto("http://mailer.test/news/december-web", wait_until="load")
            seen = page.evaluate(_MEASURE_PAGE)
        finally:
            page.close()
        where = f"web version at {width}px: {seen}"
        assert seen["loaded"], where
        assert abs(seen["imageRatio"] - PICTURE[0] / PICTURE[1]) < 0.02, where
        assert seen["overflow"] <= 0, where
        assert seen["scrollBoxes"] == seen["tablesInBoxes"] == 2, where
        assert seen["quoteBorder"] == "4px", where


def test_titles_and_summaries_put_into_an_email_show_as_written():
    from mailer.compose.updates import _escape_md
    from mailer.render.content import markdown_to_html

    written = "Tom &amp; Jerry's *drop-in* <Ryde> [2027] #1"
    assert markdown_to_text(_escape_md(written)).strip() == written
    assert htmlmod.unescape(re.sub(r"</?p>", "", markdown_to_html(_escape_md(written)))).strip() == written
