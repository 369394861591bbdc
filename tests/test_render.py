"""Rendering: Markdown made safe, MJML once, per-recipient fill-in that decodes to exactly what was filled."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.compose.blocks import Rendered
from mailer.render import EmailContent, compile_message, markdown_to_html, markdown_to_text, render_email
from mailer.render.content import clean_text
from mailer.render.message import markers_for, new_marker_prefix

FIELDS = ("unsubscribe_url", "manage_url", "name")


def _compiled(body_html="<p>Hello</p>", body_text="Hello", subject="Trust Matters"):
    markers = markers_for(new_marker_prefix(), FIELDS)
    content = EmailContent(
        subject=subject,
        body_html=body_html,
        body_text=body_text,
        organisation="HIOW NHS",
        contact_email="comms@example.nhs.uk",
        topic_name="Trust Matters",
        extra={
            "blocks": [Rendered("text", html=body_html, text=body_text)],
            "framing": "",
            "web_url": "https://mailer.example/news/1",
            "reason": "You are getting this email because you subscribed to Trust Matters from HIOW NHS.",
            "unsubscribe_label": "Unsubscribe from Trust Matters",
        },
    )
    html, text = render_email(content, markers)
    return compile_message(
        subject=subject, mail_from="Trust Matters <tm@example.nhs.uk>", html=html, text=text, body_markers=markers
    )


def _fill(message, url="https://mailer.example/u/abc.def", **extra):
    values = {
        "to": "reader@example.org",
        "date": "Mon, 23 Nov 2026 10:00:00 +0000",
        "message_id": "issue-1.2@example.nhs.uk",
        "list_unsubscribe": url,
        "unsubscribe_url": url,
        "manage_url": "https://mailer.example/manage/x",
        **extra,
    }
    return email.message_from_bytes(message.unstuff(message.fill(values)), policy=email.policy.default)


def test_script_and_event_handlers_never_reach_the_html():
    html = markdown_to_html("Hi <script>alert(1)</script> <img src=x onerror=alert(1)> [x](javascript:alert(1))")
    # Raw HTML is shown as text, never as markup; a javascript: link is not a link.
    assert "<script" not in html and "<img" not in html and "href" not in html
    assert "&lt;script&gt;" in html


def test_markdown_links_become_label_and_url_in_text():
    assert "the plan (https://example.nhs.uk/plan)" in markdown_to_text("Read [the plan](https://example.nhs.uk/plan).")


def test_a_filled_message_has_both_parts_and_the_headers():
    msg = _fill(_compiled())
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["List-Unsubscribe"] == "<https://mailer.example/u/abc.def>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == "<issue-1.2@example.nhs.uk>"
    assert 'href="https://mailer.example/u/abc.def"' in msg.get_body(("html",)).get_content()
    assert "https://mailer.example/u/abc.def" in msg.get_body(("plain",)).get_content()


def test_no_line_on_the_wire_is_longer_than_smtp_allows():
    long_body = "word " * 5000
    raw = _compiled(body_html=f"<p>{long_body}</p>", body_text=long_body).fill(
        {
            "to": "a@b.c",
            "date": "d",
            "message_id": "m",
            "list_unsubscribe": "u",
            "unsubscribe_url": "u",
            "manage_url": "m",
        }
    )
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")  # only CRLF line ends


def test_header_values_cannot_inject_headers():
    import pytest

    with pytest.raises(ValueError):
        _compiled().fill(
            {
                "to": "a@b.c\r\nBcc: victim@example.org",
                "date": "d",
                "message_id": "m",
                "list_unsubscribe": "u",
                "unsubscribe_url": "u",
                "manage_url": "https://mailer.example/manage/x",
            }
        )


url_chars = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=200
)


@settings(max_examples=60, deadline=None)
@given(
    body=st.text(min_size=0, max_size=400),
    token=url_chars,
    subject=st.text(min_size=1, max_size=80).filter(lambda s: s.strip() and "\r" not in s and "\n" not in s),
)
def test_fill_decodes_to_exactly_the_values_whatever_the_content(body, token, subject):
    """Quoted-printable encoding done once, values spliced in per recipient: a decoder must see the
    same text as if the message had been built whole for that recipient."""
    from html import escape

    message = _compiled(body_html=f"<p>{escape(body)}</p>", body_text=body, subject=subject)
    url = f"https://mailer.example/u/{token}"
    msg = _fill(message, url=url)
    assert msg["Subject"] == " ".join(clean_text(subject).split())
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    assert f"Unsubscribe from Trust Matters: {url}\n" in text
    assert f'href="{url}"' in html
    assert clean_text(body) in text


def test_lines_starting_with_a_dot_survive_smtp(smtp_server):
    """fill() output is dot-stuffed once at compile time; the server must get every dot back."""
    from mailer.transports import SmtpTransport

    text = ".starts with a dot\n..two dots\n.\nend"
    message = _compiled(body_html="<p>x</p>", body_text=text)
    transport = SmtpTransport(f"smtp://127.0.0.1:{smtp_server.port}")
    try:
        for value in (".leading-dot-value", "plain"):
            transport.send(
                message.envelope_from,
                "dots@example.org",
                message.fill(
                    {
                        "to": "dots@example.org",
                        "date": "d",
                        "message_id": "m",
                        "list_unsubscribe": "u",
                        "unsubscribe_url": value,
                        "manage_url": "https://mailer.example/manage/x",
                    }
                ),
            )
    finally:
        transport.close()
    first, second = smtp_server.wait_for("dots@example.org", count=2)
    body = first.text().replace("\r\n", "\n")
    assert text in body and "Unsubscribe from Trust Matters: .leading-dot-value" in body
    assert "Unsubscribe from Trust Matters: plain" in second.text()
