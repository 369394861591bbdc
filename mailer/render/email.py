"""The MJML layout, rendered with Jinja and compiled by mjml-python once per message variant."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from functools import lru_cache
from html import escape as html_escape

import jinja2
from mjml import mjml2html

from ..config import shipped
from .content import clean_text, email_html

TEMPLATES = shipped("templates") / "email"


class TemplateError(ValueError):
    """The email template could not be rendered; the message says where."""


@dataclass(frozen=True)
class EmailContent:
    """Everything a layout needs, as plain values. Recipient-specific values arrive as placeholders."""

    subject: str
    body_html: str
    body_text: str
    template: str = "newsletter"  # templates/email/<template>.mjml and .txt
    preheader: str = ""
    organisation: str = ""
    contact_email: str = ""
    topic_name: str = ""
    extra: dict = field(default_factory=dict)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml", "html"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["email_html"] = email_html
    return env


def render_email(content: EmailContent, placeholders: dict[str, str]) -> tuple[str, str]:
    """Return (html, text) for `content`; `placeholders` maps field names to marker strings left in place."""
    content = replace(
        content, **{f.name: clean_text(getattr(content, f.name)) for f in fields(content) if f.type == "str"}
    )
    context = {"content": content, "field": placeholders, **_cleaned(content.extra)}
    try:
        env = _env()
        mjml_source = env.get_template(f"{content.template}.mjml").render(context)
        text = env.get_template(f"{content.template}.txt").render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"email template {content.template!r}: {exc}") from exc
    try:
        html = mjml2html(mjml_source, fonts={}, disable_comments=True)
    except Exception as exc:  # mjml-python raises a bare exception type for invalid MJML
        raise TemplateError(f"email template {content.template!r} is not valid MJML: {exc}") from exc
    html = _image_heights(_fix_aria_labels(html), context.get("blocks") or [])
    # Block templates leave blank lines where an optional part is empty: at most one in a row.
    return html, _BLANK_RUNS.sub("\n\n", text)


def _cleaned(value):
    """Every string in the template values without invisible control characters (MJML's parser and
    mail clients choke on them), however deeply it sits in lists, dicts or dataclasses."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {k: _cleaned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cleaned(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _cleaned(getattr(value, f.name)) for f in fields(value)})
    return value


_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_ARIA = re.compile(r'aria-label="([^"]*)"')
_RUST_ESCAPE = re.compile(r"\\u\{([0-9a-fA-F]{1,6})\}")


_IMG = re.compile(r"<img\b[^>]*>")


def _image_heights(html: str, blocks) -> str:
    """Each image block's <img> with its real height as the `height` attribute.

    templates/email/blocks/image.mjml asks MJML for `height="auto"`, so the image's CSS is `height:auto;
    width:100%` and it keeps its shape at every width (a fixed CSS height squashed it on phones). MJML writes
    the HTML attribute as `height="auto"` too, which is not valid HTML; the number (with `width`) is what
    Outlook for Windows sizes the picture by, and what other clients use to keep its space while it loads or
    when images are blocked."""
    sizes = {
        f'src="{html_escape(b.image_url)}"': b.height
        for b in blocks
        if getattr(b, "type", None) == "image" and getattr(b, "height", 0)
    }
    if not sizes:
        return html

    def fix(match: re.Match) -> str:
        tag = match.group(0)
        for src, height in sizes.items():
            if src in tag:
                return tag.replace('height="auto"', f'height="{height}"', 1)
        return tag

    return _IMG.sub(fix, html)


def _fix_aria_labels(html: str) -> str:
    """mrml writes some characters of aria-label as Rust escapes (\\u{200d}); screen readers would read
    those out, so turn them back into the characters they stand for."""
    return _ARIA.sub(
        lambda m: 'aria-label="' + _RUST_ESCAPE.sub(lambda e: chr(int(e.group(1), 16)), m.group(1)) + '"', html
    )
