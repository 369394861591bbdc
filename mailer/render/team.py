"""Mail to a colleague, not list mail: the team's own notices (a send paused by itself) and account mail (a password
reset). One layout for all of them, no List-Unsubscribe; the caller fills in who it goes to and its envelope sender,
so a bounce of it never counts against a subscriber or an issue."""

from __future__ import annotations

from typing import Any

from .email import EmailContent, render_email
from .message import CompiledMessage, compile_message


def team_message(settings, *, template: str, subject: str, preheader: str, extra: dict[str, Any]) -> CompiledMessage:
    """`template` (templates/email/<template>.mjml and .txt) rendered once with `extra`, compiled for filling in."""
    content = EmailContent(
        subject=subject,
        preheader=preheader,
        body_html="",
        body_text="",
        template=template,
        organisation=settings.organisation,
        contact_email=settings.contact_email,
        topic_name="Trust Matters mailer",
        extra=extra,
    )
    html, text = render_email(content, {})
    return compile_message(
        subject=subject,
        mail_from=settings.mail_from,
        reply_to=settings.mail_reply_to,
        html=html,
        text=text,
        body_markers={},
        one_click=False,
    )
