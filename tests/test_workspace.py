"""The comms team's workspace: the block composer, images, preview checks, test sends, archive and feeds."""

from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET

import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import select

from conftest import csrf_from, wait_until
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.compose.blocks import checks
from mailer.models import Issue, Media, Update, utcnow
from support.flows import send_issue, sign_in

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def png(width=40, height=20, colour=(0, 94, 184)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def _compose(client, data: dict, files: dict | None = None, issue_id: int | None = None):
    url = f"/admin/issues/{issue_id}/edit" if issue_id else "/admin/issues/new"
    page = client.get(url)
    form = {"csrf_token": csrf_from(page.data), "topic": "trust-matters", "subject": "November", **data}
    for name, (content, filename) in (files or {}).items():
        form[name] = (io.BytesIO(content), filename)
    return client.post(url, data=form, content_type="multipart/form-data")


def _issue(db, issue_id) -> Issue:
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        s.expunge(issue)
        return issue


def _published_update(db, title="Ward move agreed", slug="ward-move-agreed"):
    with db.transaction() as s:
        from mailer.models import Topic

        topic_id = s.scalar(select(Topic.id).where(Topic.slug == "project-fusion"))
        s.add(
            Update(
                slug=slug,
                title=title,
                summary="The board agreed the plan.",
                body="Details.",
                topic_id=topic_id,
                status="published",
                published_at=utcnow(),
            )
        )


def test_compose_blocks_without_javascript_then_save(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    _published_update(db)
    # Start with one text block; add a heading, then move it to the top.
    response = _compose(client, {"block-0-type": "text", "block-0-markdown": "Hello **all**.", "action": "add-heading"})
    assert response.status_code == 200 and b"2. Heading" in response.data
    response = _compose(
        client,
        {
            "block-0-type": "text",
            "block-0-markdown": "Hello **all**.",
            "block-1-type": "heading",
            "block-1-text": "Project Fusion this month",
            "action": "up-1",
        },
    )
    assert response.data.index(b"Project Fusion this month") < response.data.index(b"Hello **all**.")
    # Save with every kind of block; the image uploads with the same post. Latest updates are the topic's.
    response = _compose(
        client,
        {
            "topic": "project-fusion",
            "block-0-type": "heading",
            "block-0-text": "Project Fusion this month",
            "block-1-type": "text",
            "block-1-markdown": "Hello **all**. [Read the board papers](https://example.nhs.uk/papers)",
            "block-2-type": "image",
            "block-2-alt": "The new community hub in Newport",
            "block-2-caption": "Opening in spring",
            "block-2-link": "",
            "block-3-type": "button",
            "block-3-label": "Book a place",
            "block-3-url": "https://example.nhs.uk/events",
            "block-4-type": "updates",
            "block-4-count": "3",
            "block-5-type": "divider",
            "action": "save",
        },
        files={"block-2-file": (png(), "hub.png")},
    )
    assert response.status_code == 303, response.data
    issue_id = int(response.headers["Location"].rsplit("/", 1)[1])
    issue = _issue(db, issue_id)
    assert [b["type"] for b in issue.blocks] == ["heading", "text", "image", "button", "updates", "divider"]
    assert issue.blocks[2]["media"] is not None and issue.blocks[2]["alt"] == "The new community hub in Newport"

    page = client.get(f"/admin/issues/{issue_id}")
    assert b"Before you send" not in page.data and b"Checked" in page.data
    html = client.get(f"/admin/issues/{issue_id}/preview").data.decode()
    assert "Project Fusion this month" in html and "Book a place" in html and "Ward move agreed" in html
    assert 'alt="The new community hub in Newport"' in html
    assert "/media/" in html and "View this email in your browser" in html
    assert b"Latest updates" in page.data and b"* Ward move agreed" in page.data  # the plain text part

    # Removing a block, then saving: the issue has five blocks.
    form = {f"block-{i}-type": b["type"] for i, b in enumerate(issue.blocks)}
    form |= {
        "block-0-text": "Project Fusion this month",
        "block-1-markdown": "Hello.",
        "block-2-media": str(issue.blocks[2]["media"]),
    }
    form |= {
        "block-2-alt": "Hub",
        "block-3-label": "Book a place",
        "block-3-url": "https://example.nhs.uk/e",
        "block-4-count": "2",
    }
    response = _compose(client, form | {"action": "remove-5"}, issue_id=issue_id)
    assert response.status_code == 200 and b"6. Divider" not in response.data
    response = _compose(
        client, {k: v for k, v in form.items() if not k.startswith("block-5")} | {"action": "save"}, issue_id=issue_id
    )
    assert response.status_code == 303
    assert len(_issue(db, issue_id).blocks) == 5


def test_bad_blocks_are_reported_where_they_are_and_nothing_is_saved(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    response = _compose(
        client,
        {
            "block-0-type": "image",
            "block-0-alt": "",
            "block-1-type": "button",
            "block-1-label": "Go",
            "block-1-url": "javascript:alert(1)",
            "block-2-type": "updates",
            "block-2-count": "50",
            "action": "save",
        },
        files={"block-0-file": (b"GIF89a not really", "fake.gif")},
    )
    assert response.status_code == 400
    text = response.data.decode()
    assert "not an image we can use" in text
    assert "Describe the image" in text
    assert "full web address" in text
    assert "between 1 and 10" in text
    with db.transaction() as s:
        assert s.scalar(select(Issue.id)) is None and s.scalar(select(Media.id)) is None


def test_images_are_checked_and_served_with_long_caching(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    response = _compose(
        client,
        {"block-0-type": "image", "block-0-alt": "Big", "action": "save"},
        files={"block-0-file": (png(7000, 10), "wide.png")},
    )
    assert response.status_code == 400 and b"at most 6000 pixels" in response.data
    _compose(
        client,
        {"block-0-type": "image", "block-0-alt": "Small", "action": "save"},
        files={"block-0-file": (png(), "small.png")},
    )
    with db.transaction() as s:
        media = s.scalar(select(Media))
        name = media.stored_name
    served = client.get(f"/media/{name}")
    assert served.status_code == 200 and served.data == png()
    assert "immutable" in served.headers["Cache-Control"] and served.headers["Content-Type"] == "image/png"
    assert client.get("/media/../../etc/passwd").status_code == 404
    assert client.get("/media/" + "0" * 64 + ".png").status_code == 404


def _photo_with_gps() -> bytes:
    """A phone photo as cameras write it: GPS position, camera, orientation "turn 90 degrees clockwise" (6), an
    XMP author and a JPEG comment. Its top left corner is red, so the turn can be seen in the pixels."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "Phonemaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (50.0, 41.0, 30.0), 3: "W", 4: (1.0, 17.0, 0.0)})
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Jo Bloggs"/></rdf:RDF></x:xmpmeta>'
    )
    picture = Image.new("RGB", (40, 20), (0, 94, 184))
    picture.paste((255, 0, 0), (0, 0, 10, 10))
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif, xmp=xmp, comment=b"Taken at 12 Acacia Avenue", quality=90)
    return out.getvalue()


def _upload(client, db, content: bytes, filename: str) -> tuple[Media, bytes]:
    """Upload one image through the composer; its row and the bytes /media serves for it."""
    _compose(
        client,
        {"block-0-type": "image", "block-0-alt": "A photo", "action": "save"},
        files={"block-0-file": (content, filename)},
    )
    with db.transaction() as s:
        media = s.scalars(select(Media).order_by(Media.id.desc())).first()
        s.expunge(media)
    served = client.get(f"/media/{media.stored_name}")
    assert served.status_code == 200
    return media, served.data


def test_uploaded_photos_lose_their_gps_position_and_other_metadata_but_stay_upright(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    photo = _photo_with_gps()
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(0x8825)  # the upload does carry a position
    media, served = _upload(client, db, photo, "IMG_0001.jpg")

    image = Image.open(io.BytesIO(served))
    assert image.format == "JPEG" and dict(image.getexif()) == {} and not image.getexif().get_ifd(0x8825)
    for trace in (b"Exif\x00\x00", b"Phonemaker", b"Jo Bloggs", b"xmpmeta", b"Acacia"):
        assert trace not in served, trace
    assert not {"exif", "xmp", "comment"} & set(image.info)
    # Turned the way the camera said before the orientation went: 20 wide, 40 high, red now top right.
    assert (image.width, image.height) == (media.width, media.height) == (20, 40)
    red, green, blue = image.getpixel((17, 2))
    assert red > 200 and green < 60 and blue < 60
    # Still named by the hash of what is stored and served; the same photo again is the same file.
    assert media.sha256 == hashlib.sha256(served).hexdigest() and media.size == len(served)
    again, _ = _upload(client, db, photo, "copy.jpg")
    assert again.id == media.id


def test_uploaded_png_loses_text_chunks_and_animated_gif_stays_animated(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Jo Bloggs")
    text.add_itxt("Comment", "Drawn at home, 12 Acacia Avenue", zip=True)
    out = io.BytesIO()
    Image.new("RGBA", (30, 30), (0, 94, 184, 128)).save(out, "PNG", pnginfo=text, exif=_exif_with_gps())
    _, served = _upload(client, db, out.getvalue(), "diagram.png")
    image = Image.open(io.BytesIO(served))
    assert image.mode == "RGBA" and image.getpixel((5, 5)) == (0, 94, 184, 128)
    assert b"Jo Bloggs" not in served and b"eXIf" not in served and b"zTXt" not in served and b"tEXt" not in served

    frames = [Image.new("RGB", (30, 30), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(
        out,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=[100, 200, 300],
        loop=0,
        comment=b"Made by Jo Bloggs",
    )
    _, served = _upload(client, db, out.getvalue(), "spinner.gif")
    animation = Image.open(io.BytesIO(served))
    assert b"Jo Bloggs" not in served and animation.n_frames == 3 and animation.info["loop"] == 0
    shown = []
    for i in range(3):
        animation.seek(i)
        shown.append((animation.convert("RGB").getpixel((1, 1)), animation.info["duration"]))
    assert shown == [((255, 0, 0), 100), ((0, 255, 0), 200), ((0, 0, 255), 300)]


def _exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (50.0, 41.0, 30.0)})
    return exif


def test_stored_script_reaches_neither_the_admin_nor_the_email(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    response = _compose(
        client,
        {
            "subject": f"Hi {XSS}",
            "preheader": XSS,
            "block-0-type": "heading",
            "block-0-text": XSS,
            "block-1-type": "text",
            "block-1-markdown": f"{XSS} [x](javascript:alert(1))",
            "block-2-type": "button",
            "block-2-label": XSS[:60],
            "block-2-url": "https://example.nhs.uk/?q=<script>",
            "action": "save",
        },
    )
    assert response.status_code == 303, response.data
    issue_id = int(response.headers["Location"].rsplit("/", 1)[1])
    for path in (
        f"/admin/issues/{issue_id}",
        f"/admin/issues/{issue_id}/preview",
        f"/admin/issues/{issue_id}/edit",
        "/admin/",
    ):
        body = client.get(path).data.decode()
        assert "<script>alert" not in body, path
        assert "onerror=alert" not in body.replace("onerror=alert(1)&gt;", ""), path
        assert 'href="javascript:' not in body, path


def test_preview_checks_point_out_what_a_colleague_would():
    blocks = [
        {"type": "text", "markdown": "To book, [click here](https://example.nhs.uk)."},
        {"type": "button", "label": "Read more", "url": "http://example.nhs.uk"},
        {"type": "image", "media": 1, "alt": ""},
        {"type": "text", "markdown": "   "},
    ]
    found = checks("", blocks, 110 * 1024)
    messages = " | ".join(m for _, m in found)
    assert "no subject" in messages
    assert "“click here”" in messages and "“Read more”" in messages
    assert "no alt text" in messages and "empty" in messages
    assert "not https" in messages and "102 KB" in messages
    assert checks("Fine", [{"type": "text", "markdown": "[Board papers](https://x.nhs.uk)"}], 20_000) == []


def test_a_test_send_arrives_marked_and_goes_to_nobody_else(client, db, smtp_server, celery_workers):
    with db.transaction() as s:
        confirm_subscription(
            s, request_subscription(s, email="reader@example.org", topic_slugs=["trust-matters"]).request_id
        )
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    response = _compose(client, {"block-0-type": "text", "block-0-markdown": "Draft words.", "action": "save"})
    issue_id = int(response.headers["Location"].rsplit("/", 1)[1])
    page = client.get(f"/admin/issues/{issue_id}")
    bad = client.post(
        f"/admin/issues/{issue_id}/test", data={"csrf_token": csrf_from(page.data), "to": "me, not-an-address"}
    )
    assert b"Not an email address" in client.get(bad.headers["Location"]).data
    client.post(
        f"/admin/issues/{issue_id}/test",
        data={"csrf_token": csrf_from(page.data), "to": "me@hiow.nhs.uk, you@hiow.nhs.uk"},
    )
    [mine] = smtp_server.wait_for("me@hiow.nhs.uk")
    smtp_server.wait_for("you@hiow.nhs.uk")
    assert mine.message["Subject"] == "[TEST] November"
    assert "Draft words." in mine.text()
    assert smtp_server.messages_to("reader@example.org") == []
    assert _issue(db, issue_id).status == "draft"


@pytest.fixture()
def sent_issue(client, db, smtp_server, celery_workers):
    with db.transaction() as s:
        confirm_subscription(
            s,
            request_subscription(
                s, email="private.person@example.org", name="Priya Private", topic_slugs=["trust-matters"]
            ).request_id,
        )
    _published_update(db, title="Ward move agreed & confirmed", slug="ward-move")
    sign_in(client, db, role="publisher", email="publisher@hiow.nhs.uk")
    response = _compose(
        client,
        {
            "subject": "Trust Matters: November <news>",
            "preheader": "What changed this month",
            "block-0-type": "text",
            "block-0-markdown": "Our **news** this month.",
            "block-1-type": "updates",
            "block-1-count": "3",
            "action": "save",
        },
    )
    issue_id = int(response.headers["Location"].rsplit("/", 1)[1])
    send_issue(client, issue_id)
    smtp_server.wait_for("private.person@example.org")
    wait_until(lambda: _issue(db, issue_id).status == "sent", 30, message="sent")
    return _issue(db, issue_id)


def test_the_archive_shows_what_was_sent_and_nobody_who_got_it(client, db, smtp_server, sent_issue):
    [mail] = smtp_server.messages_to("private.person@example.org")
    web_link = re.search(r"View this email in your browser: (\S+)", mail.text()).group(1)
    assert web_link.endswith(f"/news/{sent_issue.slug}")
    listing = client.get("/news").data.decode()
    assert "Trust Matters: November &lt;news&gt;" in listing and "Ward move agreed &amp; confirmed" in listing
    page = client.get(f"/news/{sent_issue.slug}").data.decode()
    assert "Our <strong>news</strong> this month." in page
    for personal in ("private.person", "Priya", "/u/", "/manage/"):
        assert personal not in page and personal not in listing
    assert client.get("/news/updates/ward-move").status_code == 200
    assert client.get("/news/no-such-issue").status_code == 404


def test_atom_and_rss_feeds_parse_and_list_issues_and_updates(client, sent_issue):
    atom = client.get("/news/feed.atom")
    assert atom.headers["Content-Type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    root = ET.fromstring(atom.data)
    titles = [e.findtext("a:title", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert "Trust Matters: November <news>" in titles and "Ward move agreed & confirmed" in titles
    for entry in root.findall("a:entry", ns):
        assert entry.find("a:link", ns).get("href").startswith("http://mailer.test/news/")
        assert entry.findtext("a:updated", namespaces=ns)
    rss = ET.fromstring(client.get("/news/feed.rss").data)
    items = rss.findall("./channel/item")
    assert {i.findtext("title") for i in items} == set(titles)
    assert b"private.person" not in atom.data


def test_statistics_count_what_happened_without_tracking(client, db, smtp_server, sent_issue):
    [mail] = smtp_server.messages_to("private.person@example.org")
    one_click = mail.message["List-Unsubscribe"].strip("<>").replace("http://mailer.test", "")
    assert client.post(one_click, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    page = client.get(f"/admin/issues/{sent_issue.id}/stats").data.decode()

    def stat(key):
        return int(re.search(rf'data-stat="{key}">([\d,]+)<', page).group(1).replace(",", ""))

    assert (stat("recipients"), stat("sent"), stat("bounced"), stat("unsubscribed")) == (1, 1, 0, 1)
    assert "Not given" in page  # by area: the one recipient gave none
    assert "<img" not in mail.html()  # no tracking pixel
    overview = client.get("/admin/stats").data.decode()
    assert "Trust Matters: 0 subscribed now" in overview
    assert re.search(
        r"cell--numeric\">1</td><td class=\"nhsuk-table__cell nhsuk-table__cell--numeric\">1</td>",
        overview,
    )


@pytest.mark.parametrize(
    "blocks",
    [
        [{"type": ["x"]}],
        [{"type": {"a": 1}}],
        [{"type": "updates", "count": "²"}],
        [{"type": "updates", "count": 2.5}],
        [{"type": "image", "media": 10**20, "alt": "x"}],
        "not a list",
        [None],
    ],
)
def test_odd_blocks_through_the_api_are_a_400_not_a_500(client, db, blocks):
    from mailer.accounts import create_token

    with db.transaction() as s:
        headers = {"Authorization": f"Bearer {create_token(s, 'e', role='editor')[1]}"}
    response = client.post(
        "/api/v1/issues", json={"subject": "S", "topic": "careers", "blocks": blocks}, headers=headers
    )
    assert response.status_code == 400, response.get_json()


def test_odd_composer_fields_are_a_400_not_a_500(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    for form in (
        {"block-0-type": "image", "block-0-media": "²", "block-0-alt": "x", "action": "save"},
        {"block-0-type": "updates", "block-0-count": "²", "action": "save"},
        {"block-0-type": "text", "block-0-markdown": "x", "segment": "²", "action": "save"},
        {"block-0-type": "image", "block-0-media": "9" * 30, "block-0-alt": "x", "action": "save"},
    ):
        assert _compose(client, form).status_code == 400, form


def test_an_issue_sent_to_a_segment_is_not_published(client, db, smtp_server, celery_workers):
    from mailer.audience import commands
    from mailer.audience.inputs import SegmentInput
    from mailer.audience.lookups import parse_in
    from mailer.audit import SYSTEM

    with db.transaction() as s:
        confirm_subscription(
            s,
            request_subscription(
                s, email="staff@example.org", topic_slugs=["trust-matters"], area="hampshire"
            ).request_id,
        )
        hampshire = {"all": [{"field": "area", "op": "is", "value": "hampshire"}]}
        data = parse_in(s, SegmentInput, {"name": "Hampshire", "rules": hampshire})
        segment_id = commands.save_segment(s, data, SYSTEM).id
    sign_in(client, db, role="publisher", email="publisher@hiow.nhs.uk")
    response = _compose(
        client,
        {
            "subject": "Staff only",
            "segment": str(segment_id),
            "block-0-type": "text",
            "block-0-markdown": "Internal.",
            "action": "save",
        },
    )
    issue_id = int(response.headers["Location"].rsplit("/", 1)[1])
    send_issue(client, issue_id)
    [mail] = smtp_server.wait_for("staff@example.org")
    assert "View this email in your browser" not in mail.text()
    assert "Staff only" not in client.get("/news").data.decode()
    assert b"Staff only" not in client.get("/news/feed.atom").data
    assert client.get(f"/news/{_issue(db, issue_id).slug}").status_code == 404
