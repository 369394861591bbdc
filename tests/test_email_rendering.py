"""Every kind of email the mailer sends, checked by programs nobody here wrote, as readers' mail programs see it.

One of each kind is sent by the real code and received by the test SMTP server (tests/support/email_samples.py):
confirmation, manage link, the newsletter with every kind of block (a heading, text with a table, a block quote
and lists, a 1200×675 photo, a button, latest updates, a divider), its [TEST] send, a progress update and a
weekly digest of two topics. Then, for each:

- Chromium (Debian's) lays its HTML out at 320 and 375 pixels (phones) and 600 (a desktop reading pane): every
  image keeps its shape, nothing is wider than the screen, no ordinary word is split over two lines, and the
  email fetches nothing but its own images; without its style blocks (as Gmail's apps show it with a non-Google
  account) its text looks the same.
- SpamAssassin (Debian's, local tests only) scores the whole message, headers and both parts, below 1.0.
- caniemail's linter finds nothing unsupported in Gmail, Outlook on Windows, Outlook.com, Apple Mail or Yahoo
  beyond the differences accepted, each with its reason, in tests/email_client_allowances.py.

The module renders in one Chromium page and scores in one SpamAssassin process (about 10 s here, most of it
starting them). It runs on both CI runs: the emails are made through the database, so PostgreSQL makes them too.
"""

from __future__ import annotations

import pytest
from email_client_allowances import ALLOWANCES, accepted

from support.browser import running_chromium
from support.email_layout import lay_out, looks, without_style_blocks
from support.email_lint import lint
from support.email_samples import KINDS, PHOTO_SIZE, send_every_kind
from support.spamassassin import score_messages

WIDTHS = (320, 375, 600)
PHONE = 375
SPAM_LIMIT = 1.0
WITH_IMAGES = ("newsletter", "test_send")
# SpamAssassin's rules for text a reader cannot see because of its colour or size.
HIDDEN_TEXT_RULES = {"HTML_FONT_LOW_CONTRAST", "HTML_FONT_TINY_NORDNS", "HTML_ENTITY_ASCII_TINY"}


def cases(widths=None):
    """pytest params for every kind (× width)."""
    if widths is None:
        return [pytest.param(kind, id=kind) for kind in KINDS]
    return [pytest.param(kind, width, id=f"{kind}-{width}") for kind in KINDS for width in widths]


@pytest.fixture(scope="module")
def sent(settings, db, smtp_server, celery_workers):
    from mailer.web import create_app
    from mailer.web.limits import limiter

    app = create_app(settings)
    app.config["TESTING"] = True
    try:
        yield send_every_kind(app, db, smtp_server)
    finally:
        with app.app_context():
            limiter.reset()


@pytest.fixture(scope="module")
def chromium():
    with running_chromium() as browser:
        yield browser.new_page()


@pytest.fixture(scope="module")
def layouts(sent, chromium, settings):
    return {kind: lay_out(chromium, sent.html(kind), WIDTHS, sent.media_paths, settings.base_url) for kind in KINDS}


@pytest.fixture(scope="module")
def spam(sent):
    return score_messages({kind: sent.messages[kind].data for kind in KINDS})


@pytest.fixture(scope="module")
def findings(sent):
    return lint({kind: sent.html(kind) for kind in KINDS})


# --- Chromium ---------------------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(("kind", "width"), cases(WIDTHS))
def test_every_image_keeps_its_shape(layouts, kind, width):
    layout = layouts[kind][width]
    if kind in WITH_IMAGES:
        (photo,) = [i for i in layout.images if "/media/" in i["src"]]
        assert photo["loaded"] and (photo["naturalWidth"], photo["naturalHeight"]) == PHOTO_SIZE
        assert photo["width"] <= width, photo
    squashed = layout.squashed_images()
    assert not squashed, f"{kind} at {width} px: images drawn out of shape:\n" + "\n".join(
        f"  {i['src']} ({i['alt']}): {i['problem']}" for i in squashed
    )


@pytest.mark.browser
@pytest.mark.parametrize(("kind", "width"), cases(WIDTHS))
def test_nothing_is_wider_than_the_screen(layouts, kind, width):
    layout = layouts[kind][width]
    assert layout.width == width
    assert not layout.overflowing and layout.scroll_width <= width, (
        f"{kind} at {width} px is {layout.scroll_width} px wide; sticking out of the screen:\n"
        + "\n".join(
            f"  {o['element']} from {o['left']} to {o['right']} px"
            + (f", cut off by {o['cut_off_by']}" if o["cut_off_by"] else "")
            for o in layout.overflowing
        )
    )


@pytest.mark.browser
@pytest.mark.parametrize(("kind", "width"), cases(WIDTHS))
def test_no_word_is_split_over_two_lines(layouts, kind, width):
    broken = layouts[kind][width].broken_words
    assert not broken, f"{kind} at {width} px: words broken in the middle:\n" + "\n".join(
        f"  {b['word']!r} in {b['element']}" for b in broken
    )


@pytest.mark.browser
@pytest.mark.parametrize("kind", cases())
def test_an_email_fetches_nothing_but_its_own_images(layouts, kind):
    assert layouts[kind][WIDTHS[0]].refused_requests == []


@pytest.mark.browser
@pytest.mark.parametrize("kind", cases())
def test_what_matters_is_inline_for_clients_that_drop_style_blocks(sent, chromium, settings, kind):
    html = sent.html(kind)
    with_styles = looks(chromium, html, PHONE, sent.media_paths, settings.base_url)
    inline_only = looks(chromium, without_style_blocks(html), PHONE, sent.media_paths, settings.base_url)
    assert [e["element"] for e in inline_only] == [e["element"] for e in with_styles]
    lost = [
        f"  {a['element']}: {a['looks']} without the style blocks, {b['looks']} with them"
        for a, b in zip(inline_only, with_styles, strict=True)
        if a["looks"] != b["looks"]
    ]
    assert not lost, f"{kind}: what Gmail's apps (non-Google accounts) lose with the <style> blocks:\n" + "\n".join(
        lost[:15]
    )


# --- SpamAssassin -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", cases())
def test_spamassassin_scores_every_email_below_one(spam, kind):
    report = spam[kind]
    assert report.score < SPAM_LIMIT, f"{kind} scores {report.score} in SpamAssassin:\n{report.hits()}"


@pytest.mark.parametrize("kind", cases())
def test_spamassassin_sees_no_text_hidden_by_its_colour(spam, kind):
    """Filters read text in the colour of its background as a trick; the preview text must be hidden otherwise."""
    hidden = [r for r in spam[kind].rules if r[1] in HIDDEN_TEXT_RULES]
    assert not hidden, f"{kind}: {hidden}"


# --- caniemail --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    cases(),
)
def test_caniemail_finds_nothing_that_breaks_the_layout_or_hides_content(findings, kind):
    open_findings = sorted({str(f) for f in findings[kind] if accepted(f) is None})
    assert not open_findings, (
        f"{kind}: caniemail finds what some of our readers' mail programs do not support. Fix the template, or "
        "if it only changes how the email looks there, accept it with its reason in "
        "tests/email_client_allowances.py:\n" + "\n".join(open_findings)
    )




@pytest.mark.parametrize(
    "index",
    [
        pytest.param(i, id=f"{i}-{'/'.join(a.titles)[:40]}")
        for i, a in enumerate(ALLOWANCES)
    ],
)
def test_every_allowance_is_still_needed(findings, index):
    allowance = ALLOWANCES[index]
    used = [f for fs in findings.values() for f in fs if allowance.accepts(f)]
    assert used, f"No email needs this allowance any more: take it out of tests/email_client_allowances.py\n{allowance}"


# --- The checks themselves: each one sees the fault it is there for ---------------------------------------------

FAULTY = """<!doctype html><html><body style="margin:0">
<img src="http://mailer.test/media/photo.jpg" alt="squashed" style="width:100%;height:333px">
<table style="width:700px"><tr><td>A table too wide for a phone</td></tr></table>
<div style="overflow-x:auto"><table style="width:700px"><tr><td>A table to swipe</td></tr></table></div>
<table style="width:60px"><tr><td style="word-break:break-all">Status Milestones</td></tr></table>
<img src="https://tracker.example/pixel.gif" alt="">
</body></html>"""


@pytest.mark.parametrize("kind", ["newsletter", "test_send"])
def test_the_newsletter_checked_carries_every_kind_of_block(sent, kind):
    """What the checks above see: a picture, both tables (one as records), a quote and latest updates."""
    html = sent.html(kind)
    assert html.count("/news/updates/") >= 2, "the latest-updates block lists the topic's updates"
    assert "/media/" in html and "<blockquote" in html and "<th " in html and 'class="tm-record"' in html


@pytest.mark.browser
def test_the_layout_checks_see_what_a_reader_would(chromium, sent, settings):
    media = {"/media/photo.jpg": next(iter(sent.media_paths.values()))}
    layout = lay_out(chromium, FAULTY, (320,), media, settings.base_url)[320]
    (squashed,) = layout.squashed_images()
    assert squashed["alt"] == "squashed" and "ratio 0.96" in squashed["problem"]
    assert [o["element"] for o in layout.overflowing] == ['<table style="width:700px"> "A table too wide for a phone"']
    assert layout.scroll_width > 320
    assert "Milestones" in {b["word"] for b in layout.broken_words}
    assert layout.refused_requests == ["https://tracker.example/pixel.gif"]


def test_spamassassin_and_caniemail_are_read_right(sent):
    spam = sent.messages["update"].data.replace(
        b"\r\n\r\n", b"\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n\r\n", 2
    )
    reports = score_messages({"real": sent.messages["update"].data, "spam": spam})
    assert reports["real"].score < SPAM_LIMIT and reports["spam"].score >= 1000
    assert "GTUBE" in [rule for _points, rule, _description in reports["spam"].rules]
    (found,) = lint({"flex": '<div style="display:flex">Two columns</div>'}).values()
    outlook = [f for f in found if f.client == "outlook.windows" and f.title == "display:flex"]
    assert outlook and outlook[0].support == "none" and accepted(outlook[0]) is None


HOSTILE_SNIPPETS = {
    "markdown picture": ('<img src="https://x/big.jpg" alt="A" style="max-width:100%;height:auto">', "max-width"),
    "thick border": ('<div style="border:12px solid #005eb8">Boxed</div>', "border"),
    "span margin": ('<p><span style="margin-left:40px">Indented</span></p>', "margin"),
    "centred div": ('<div style="margin:0 auto;width:300px">Centred</div>', "margin"),
    "px line height": ('<div style="line-height:24px">Text</div>', "line-height"),
    "padded span": ('<p><span style="padding:16px">Padded</span></p>', "padding"),
}


@pytest.mark.parametrize("name", HOSTILE_SNIPPETS)
def test_the_allowances_do_not_accept_what_they_do_not_name(name):
    """Each of these breaks the layout in Outlook on Windows; an allowance for our own use of the same feature
    must not let it through (a reviewer's snippets, all once accepted)."""
    html, title = HOSTILE_SNIPPETS[name]
    (found,) = lint({name: f"<!doctype html><html><body>{html}</body></html>"}).values()
    outlook = [f for f in found if f.client == "outlook.windows" and f.title == title]
    assert outlook, found
    assert all(accepted(f) is None for f in outlook), [str(f) for f in outlook if accepted(f) is not None]


@pytest.mark.parametrize("kind", cases())
def test_the_admin_preview_reads_each_email_as_caniemail_does(sent, findings, kind):
    """The admin preview reads caniemail's data in Python (no node on a web request): for everything it looks
    at, it must find what caniemail's own linter finds."""
    from mailer.render import client_support

    read = client_support.read_titles()
    assert read, "caniemail's data is not installed"
    linter = {(f.client, f.title, f.support) for f in findings[kind] if f.title in read}
    assert client_support.findings(sent.html(kind)) == linter
