"""Turning content into mail: Markdown → safe HTML → MJML → HTML once, then cheap per-recipient fill-in.

Knows nothing of the database: callers hand in plain values.
"""

from .content import markdown_to_html, markdown_to_text
from .email import EmailContent, render_email
from .message import CompiledMessage, compile_message
from .team import team_message

__all__ = [
    "CompiledMessage",
    "EmailContent",
    "compile_message",
    "markdown_to_html",
    "markdown_to_text",
    "render_email",
    "team_message",
]
