"""The admin preview says, in plain words, what the mail programs most readers use do with this issue
(caniemail.com's data, read from the npm package installed by `make setup`)."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from conftest import csrf_from
from mailer.render import client_support
from support.flows import sign_in


def picture(kind: str, frames: int = 1) -> bytes:
    images = [Image.new("RGB", (120, 68), (0, 94 + 40 * n, 184)) for n in range(frames)]
    out = io.BytesIO()
    images[0].save(out, kind, save_all=frames > 1, append_images=images[1:], duration=200, loop=0)
    return out.getvalue()


def compose(client, blocks: list[dict], files: dict | None = None, issue_id: int | None = None) -> int:
    url = f"/admin/issues/{issue_id}/edit" if issue_id else "/admin/issues/new"
    form = {"csrf_token": csrf_from(client.get(url).data), "topic": "trust-matters", "subject": "December"}
    for i, block in enumerate(blocks):
        form.update({f"block-{i}-{name}": value for name, value in block.items()})
    for name, (content, filename) in (files or {}).items():
        form[name] = (io.BytesIO(content), filename)
    response = client.post(url, data={**form, "action": "save"}, content_type="multipart/form-data")
    assert response.status_code == 303, response.data[:3000]
    return int(response.headers["Location"].rstrip("/").split("/")[-1])


def warnings_on(client, issue_id: int) -> list[str]:
    page = client.get(f"/admin/issues/{issue_id}")
    assert page.status_code == 200
    listed = re.search(r'<ul class="nhsuk-list" id="client-warnings">(.*?)</ul>', page.get_data(as_text=True), re.S)
    if listed is None:
        return []
    items = re.findall(r"<li>(.*?)</li>", listed.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in items]


BUTTON = {"type": "button", "label": "Book a place at the forum", "url": "https://www.example.nhs.uk/forum"}
TEXT = {"type": "text", "markdown": "News from **Project Fusion**."}


@pytest.fixture(autouse=True)
def fresh_reports():
    client_support._cache.clear()
    yield
    client_support._cache.clear()


def test_the_preview_warns_what_outlook_on_windows_does_with_webp_pictures_gifs_and_buttons(client, db):
    sign_in(client, db, role="editor")
    image = {"type": "image", "alt": "The forum in the Guildhall", "caption": "", "link": ""}
    issue_id = compose(
        client,
        [TEXT, image, {**image, "alt": "Our new logo, turning"}, BUTTON],
        files={"block-1-file": (picture("WEBP"), "forum.webp"), "block-2-file": (picture("GIF", 3), "logo.gif")},
    )
    warnings = warnings_on(client, issue_id)
    assert any(
        w.startswith("Check Outlook on Windows does not show WebP pictures") and "upload the picture as JPEG" in w
        for w in warnings
    ), warnings
    assert any(w.startswith("Check Outlook on Windows shows only the first frame of an animated GIF") for w in warnings)
    assert any(w.startswith("Check Outlook on Windows shows buttons with square corners.") for w in warnings)
    assert "About border-radius in Outlook on Windows" in " ".join(warnings)  # a link to caniemail's page

    # Another version of the issue, without the pictures and the button: nothing left to warn about.
    compose(client, [TEXT], issue_id=issue_id)
    assert warnings_on(client, issue_id) == []
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert "Nothing in this email shows differently there in a way a reader would notice." in page
    assert "Differences a reader would not notice" in page and "Outlook on Windows: " in page


def test_without_caniemail_data_the_preview_says_it_was_not_checked(client, db, monkeypatch, tmp_path):
    sign_in(client, db, role="editor")
    issue_id = compose(client, [TEXT, BUTTON])
    monkeypatch.setattr(client_support, "DATA", tmp_path / "caniemail.json")
    page = client.get(f"/admin/issues/{issue_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Not checked" in text and "npm package caniemail" in text and "client-warnings" not in text
    monkeypatch.undo()  # installed again: checked at once, nothing unchecked was kept
    assert "square corners" in " ".join(warnings_on(client, issue_id))


def test_a_report_is_worked_out_once_for_each_version_of_the_html():
    html = '<html><body><a href="https://example.nhs.uk" style="border-radius:3px">Book</a></body></html>'
    first = client_support.client_support(html)
    assert first.checked and client_support.client_support(html) is first
    other = client_support.client_support(html.replace("Book", "Book now"))
    assert other is not first and other.warnings == first.warnings
