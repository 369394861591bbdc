"""An issue as mail: rendered with MJML once per issue, filled in per recipient by delivery."""

from __future__ import annotations

from sqlalchemy.orm import object_session

from ..config import Settings
from ..models import Issue
from ..render import CompiledMessage, EmailContent, compile_message, render_email
from ..render.message import markers_for, new_marker_prefix
from .blocks import blocks_of, render_blocks

BODY_FIELDS = ("unsubscribe_url", "manage_url")
FRAMING = {
    "project-fusion": "Bringing community, mental health and learning disability services together across "
    "Hampshire and the Isle of Wight.",
}


def web_url(issue: Issue, settings: Settings) -> str | None:
    """The issue's page in the public archive ("view in browser"); the archive until it is sent; None for
    an issue sent to a segment, which is not published."""
    if issue.kind == "update" and issue.progress_update is not None:
        return f"{settings.base_url}/news/updates/{issue.progress_update.slug}"
    if issue.segment_id is not None:
        return None
    return f"{settings.base_url}/news/{issue.slug}" if issue.slug else f"{settings.base_url}/news"


def footer(issue: Issue, settings: Settings) -> dict:
    """Why they got it and how to stop, in the footer."""
    if issue.kind == "digest":
        return {
            "reason": f"You are getting this digest because you asked {settings.organisation} for a summary of "
            "updates instead of an email for each one.",
            "unsubscribe_label": "Unsubscribe from everything",
        }
    return {
        "reason": f"You are getting this email because you subscribed to {issue.topic.name} from "
        f"{settings.organisation}.",
        "unsubscribe_label": f"Unsubscribe from {issue.topic.name}",
    }


def issue_content(issue: Issue, settings: Settings) -> EmailContent:
    session = object_session(issue)
    blocks = render_blocks(session, blocks_of(issue), settings.base_url)
    return EmailContent(
        subject=issue.subject,
        preheader=issue.preheader or "",
        body_html="",
        body_text="",
        template="newsletter",
        organisation=settings.organisation,
        contact_email=settings.contact_email,
        topic_name=issue.subject if issue.kind == "digest" else issue.topic.name,
        extra={
            "blocks": blocks,
            "framing": FRAMING.get(issue.topic.slug, ""),
            "web_url": web_url(issue, settings),
            **footer(issue, settings),
        },
    )


def list_id(issue: Issue, settings: Settings) -> tuple[str, str]:
    """(label, id) of the topic's List-Id header."""
    return issue.topic.name, f"{issue.topic.slug}.{settings.mail_domain}"


def compile_issue(issue: Issue, settings: Settings, subject_prefix: str = "") -> CompiledMessage:
    """The issue's whole message, encoded once; recipients differ only in the filled-in fields."""
    markers = markers_for(new_marker_prefix(), BODY_FIELDS)
    html, text = render_email(issue_content(issue, settings), markers)
    return compile_message(
        subject=subject_prefix + issue.subject,
        mail_from=settings.mail_from,
        reply_to=settings.mail_reply_to,
        html=html,
        text=text,
        body_markers=markers,
        list_id=list_id(issue, settings),
    )


def preview(issue: Issue, settings: Settings) -> tuple[str, str]:
    """(html, text) as a recipient would see them, with sample unsubscribe and manage links."""
    sample = {"unsubscribe_url": f"{settings.base_url}/u/example", "manage_url": f"{settings.base_url}/manage/example"}
    html, text = render_email(issue_content(issue, settings), sample)
    return html, text
