"""An issue as a list of blocks: heading, text, image, button, latest updates, divider.

Blocks are stored as plain JSON on the issue, checked here (errors name the block: `blocks[2].alt`), and
turned into what the MJML partials in templates/email/blocks/ and the archive page need. Text is Markdown
made safe by nh3; nothing a writer types reaches the email or a page as markup of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InvalidInput
from ..models import Media, Update
from ..render.content import (
    clean_text,
    has_control_characters,
    markdown_to_html,
    markdown_to_text,
    narrowest_table_width,
    nesting_problem,
    tables_in,
)
from ..render.web import issue_page_html

BLOCK_TYPES = {
    "heading": "Heading",
    "text": "Text",
    "image": "Image",
    "button": "Button",
    "updates": "Latest updates",
    "divider": "Divider",
}
FIELDS = {
    "heading": ("text",),
    "text": ("markdown",),
    "image": ("media", "alt", "link", "caption"),
    "button": ("label", "url"),
    "updates": ("count",),
    "divider": (),
}
# What a latest-updates block is headed with, unless the block right above it is a heading of the writer's.
UPDATES_HEADING = "Latest updates"
MAX_BLOCKS = 60
TEXT_MAX = 20_000
# All the Markdown one issue may hold: far beyond a newsletter (~8,000 words; Gmail clips the email at 102 KB
# of HTML long before), and it bounds what rendering one costs: markdown-it-py's worst input (`![` repeated)
# takes ~25 ms a thousand characters, HTML and text, so ~1.3 s at this size (bench/archive_bench.py).
ISSUE_TEXT_MAX = 50_000
# How wide the email's content is on the narrowest phone in common use: 320 px less the 24 px margins.
PHONE_CONTENT_WIDTH = 272
# Link text that says nothing out of context (screen reader users list links on their own).
VAGUE_LINKS = {"click here", "here", "read more", "more", "this link", "link", "click", "find out more"}


def blocks_of(issue) -> list[dict]:
    """The issue's blocks; an issue written as one Markdown body (the API, older drafts) is one text block."""
    if issue.blocks:
        return list(issue.blocks)
    return [{"type": "text", "markdown": issue.body}] if (issue.body or "").strip() else []


def _one_line(value, limit: int) -> str:
    text = " ".join(clean_text(value if isinstance(value, str) else "").split())
    return text[: limit + 1]


def _url(value, *, mail_ok: bool = False) -> str | None:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc and not has_control_characters(text) and " " not in text:
        return text
    if mail_ok and parts.scheme == "mailto" and "@" in parts.path:
        return text
    raise ValueError("Enter a full web address starting with https://" + (" (or mailto:)" if mail_ok else ""))


def validate_blocks(session: Session, blocks) -> list[dict]:
    """Normalised blocks, or InvalidInput with one message per wrong field (`blocks[i].field`)."""
    if not isinstance(blocks, list):
        raise InvalidInput({"blocks": "Blocks must be a list"})
    if len(blocks) > MAX_BLOCKS:
        raise InvalidInput({"blocks": f"An issue can have at most {MAX_BLOCKS} blocks"})
    errors: dict[str, str] = {}
    out: list[dict] = []
    media_ids = {
        b["media"] for b in blocks if isinstance(b, dict) and isinstance(b.get("media"), int) and 0 < b["media"] < 2**31
    }
    known_media = set(session.scalars(select(Media.id).where(Media.id.in_(media_ids)))) if media_ids else set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str) or block["type"] not in BLOCK_TYPES:
            errors[where] = f"Each block needs a type: one of {', '.join(BLOCK_TYPES)}"
            continue
        kind = block["type"]
        unknown = sorted(set(block) - {"type", *FIELDS[kind]})
        if unknown:
            errors[f"{where}.{unknown[0]}"] = f"A {kind} block has no {unknown[0]!r}"
            continue
        clean: dict = {"type": kind}
        if kind == "heading":
            clean["text"] = _one_line(block.get("text"), 200)
            if not clean["text"]:
                errors[f"{where}.text"] = "Write the heading"
            elif len(clean["text"]) > 200:
                errors[f"{where}.text"] = "A heading must be 200 characters or fewer"
        elif kind == "text":
            clean["markdown"] = clean_text(block.get("markdown") if isinstance(block.get("markdown"), str) else "")
            if not clean["markdown"].strip():
                errors[f"{where}.markdown"] = "Write the text, or remove the block"
            elif len(clean["markdown"]) > TEXT_MAX:
                errors[f"{where}.markdown"] = f"Text must be {TEXT_MAX:,} characters or fewer"
            elif problem := nesting_problem(clean["markdown"]):
                errors[f"{where}.markdown"] = problem
        elif kind == "image":
            media = block.get("media")
            clean["media"] = (
                media if isinstance(media, int) and not isinstance(media, bool) and 0 < media < 2**31 else None
            )
            clean["alt"] = _one_line(block.get("alt"), 300)
            clean["caption"] = _one_line(block.get("caption"), 300)
            if clean["media"] not in known_media:
                errors[f"{where}.media"] = "Choose an image to upload"
            if not clean["alt"]:
                errors[f"{where}.alt"] = "Describe the image for people who cannot see it (alt text)"
            elif len(clean["alt"]) > 300:
                errors[f"{where}.alt"] = "Alt text must be 300 characters or fewer"
            try:
                clean["link"] = _url(block.get("link"))
            except ValueError as exc:
                errors[f"{where}.link"] = str(exc)
        elif kind == "button":
            clean["label"] = _one_line(block.get("label"), 60)
            if not clean["label"]:
                errors[f"{where}.label"] = "Write what the button says"
            elif len(clean["label"]) > 60:
                errors[f"{where}.label"] = "Button text must be 60 characters or fewer"
            try:
                clean["url"] = _url(block.get("url"), mail_ok=True)
                if clean["url"] is None:
                    errors[f"{where}.url"] = "Enter where the button goes"
            except ValueError as exc:
                errors[f"{where}.url"] = str(exc)
        elif kind == "updates":
            count = block.get("count", 3)
            if isinstance(count, str) and count.strip().isdecimal() and len(count.strip()) < 4:
                count = int(count)
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
                errors[f"{where}.count"] = "Show between 1 and 10 updates"
            clean["count"] = count
        out.append(clean)
    total = sum(len(b["markdown"]) for b in out if b["type"] == "text")
    if total > ISSUE_TEXT_MAX and "blocks" not in errors:
        errors["blocks"] = (
            f"An issue can hold at most {ISSUE_TEXT_MAX:,} characters of text; this one has {total:,}. "
            "Shorten it or split it into two issues"
        )
    if errors:
        raise InvalidInput(errors)
    return out


@dataclass
class Rendered:
    """A block ready for the templates: only safe values."""

    type: str
    html: str = ""
    text: str = ""
    url: str | None = None
    label: str = ""
    alt: str = ""
    caption: str = ""
    image_url: str = ""
    width: int = 0
    height: int = 0
    items: list | None = None
    groups: list | None = None  # for a digest: [{"topic": name, "items": [...]}]
    heading: str = ""  # the updates block's own heading; none right under a heading the writer gave it


def latest_updates(
    session: Session, count: int, topic_id: int | None = None, before: datetime | None = None
) -> list[Update]:
    """The `count` most recent published updates, in the topic if given, published at or before `before`."""
    query = select(Update).where(Update.status == "published", Update.published_at.is_not(None))
    if topic_id is not None:
        query = query.where(Update.topic_id == topic_id)
    if before is not None:
        query = query.where(Update.published_at <= before)
    return list(session.scalars(query.order_by(Update.published_at.desc(), Update.id.desc()).limit(count)))


def resolve_blocks(
    session: Session | None, blocks: list[dict], *, topic_id: int | None = None, before: datetime | None = None
) -> list[dict]:
    """The blocks with what they pull in written into them, as plain JSON to keep (`FrozenContent.blocks`).

    A "latest updates" block gets its updates (`items`: id, title, summary, slug): the newest in the issue's
    topic published at or before `before` (when the send started). A digest's block (`ids`) gets them by
    topic (`groups`). An image gets its stored file and size (`file`, `pixels`); one whose upload is gone is
    left out. Blocks already resolved come back as they are, so resolving is done once and kept."""
    media_ids = [b.get("media") for b in blocks if b["type"] == "image" and "file" not in b]
    media = {m.id: m for m in session.scalars(select(Media).where(Media.id.in_(media_ids)))} if media_ids else {}
    out = []
    for i, block in enumerate(blocks):
        kind = block["type"]
        if kind == "image" and "file" not in block:
            item = media.get(block.get("media"))
            if item is None:
                continue
            block = {**block, "file": item.stored_name, "pixels": [item.width, item.height]}
        elif kind == "updates" and "items" not in block and "groups" not in block:
            if block.get("ids"):
                # A digest's chosen updates, grouped by topic in display order.
                chosen = {u.id: u for u in session.scalars(select(Update).where(Update.id.in_(block["ids"])))}
                groups: dict[int, dict] = {}
                for update in sorted((chosen[i] for i in block["ids"] if i in chosen), key=lambda u: u.topic.position):
                    group = groups.setdefault(update.topic_id, {"topic": update.topic.name, "items": []})
                    group["items"].append(_kept_item(update))
                block = {**block, "groups": list(groups.values())}
            else:
                found = latest_updates(session, block.get("count", 3), topic_id, before)
                block = {**block, "items": [_kept_item(u) for u in found]}
        out.append(block)
    return out


def _kept_item(update: Update) -> dict:
    return {"id": update.id, "title": update.title, "summary": update.summary or "", "slug": update.slug}


@dataclass
class _Picture:
    stored_name: str
    width: int
    height: int


def render_blocks(
    session: Session | None,
    blocks: list[dict],
    base_url: str,
    with_text: bool = True,
    *,
    topic_id: int | None = None,
    before: datetime | None = None,
) -> list[Rendered]:
    """Blocks as safe HTML (and, `with_text`, text) for the email and the archive. Blocks not yet resolved are
    resolved first (see `resolve_blocks`); resolved ones need no database (`session` may then be None)."""
    out = []
    resolved = resolve_blocks(session, blocks, topic_id=topic_id, before=before)
    for i, block in enumerate(resolved):
        kind = block["type"]
        if kind == "heading":
            out.append(Rendered(kind, text=block["text"]))
        elif kind == "text":
            text = markdown_to_text(block["markdown"]) if with_text else ""
            out.append(Rendered(kind, html=markdown_to_html(block["markdown"]), text=text))
        elif kind == "image":
            item = _Picture(block["file"], *block["pixels"])
            width = min(item.width, 592)
            out.append(
                Rendered(
                    kind,
                    url=block.get("link"),
                    alt=block["alt"],
                    caption=block.get("caption") or "",
                    image_url=f"{base_url}/media/{item.stored_name}",
                    width=width,
                    height=round(item.height * width / item.width) if item.width else item.height,
                )
            )
        elif kind == "button":
            out.append(Rendered(kind, label=block["label"], url=block["url"]))
        elif kind == "updates" and block.get("groups") is not None:
            # Links are made here, by the process that renders, so they point at this site's BASE_URL.
            groups = [
                {"topic": g["topic"], "items": [_item(item, base_url) for item in g["items"]]} for g in block["groups"]
            ]
            out.append(Rendered(kind, groups=groups))
        elif kind == "updates":
            items = [_item(item, base_url) for item in block["items"]]
            under_heading = i > 0 and resolved[i - 1]["type"] == "heading"
            out.append(Rendered(kind, items=items, heading="" if under_heading else UPDATES_HEADING))
        else:
            out.append(Rendered(kind))
    return out


def archive_page(session: Session | None, blocks: list[dict]) -> str:
    """The blocks as the archive page shows them, rendered once and kept (`Issue.archive_html`). Images and
    updates are linked by site path, so the page is right whatever BASE_URL the site is reached at later.
    Given resolved blocks (`resolve_blocks`, as frozen when the send started), it shows exactly what they say."""
    return issue_page_html(render_blocks(session, blocks, base_url="", with_text=False))


def _item(kept: dict, base_url: str) -> dict:
    return {"title": kept["title"], "summary": kept["summary"], "url": f"{base_url}/news/updates/{kept['slug']}"}


def checks(subject: str, blocks: list[dict], html_size: int) -> list[tuple[str, str]]:
    """What a careful colleague would point out before sending: (level, message), level 'error' or 'warning'."""
    found: list[tuple[str, str]] = []
    if not (subject or "").strip():
        found.append(("error", "The issue has no subject"))
    if not blocks:
        found.append(("error", "The issue has no content: add a block"))
    for i, block in enumerate(blocks, start=1):
        kind = block.get("type")
        if kind == "image" and not (block.get("alt") or "").strip():
            found.append(("error", f"Block {i}: the image has no alt text"))
        if kind == "text" and not (block.get("markdown") or "").strip():
            found.append(("warning", f"Block {i}: the text block is empty"))
        if kind == "button" and block.get("label", "").strip().lower() in VAGUE_LINKS:
            found.append(("warning", f"Block {i}: the button says “{block['label']}”: say where it goes"))
        if kind == "text":
            for label in _link_labels(block.get("markdown") or ""):
                if label.strip().lower() in VAGUE_LINKS:
                    found.append(("warning", f"Block {i}: a link says “{label}”: say where it goes"))
            for rows in tables_in(block.get("markdown") or ""):
                if narrowest_table_width(rows) > PHONE_CONTENT_WIDTH:
                    found.append(
                        (
                            "warning",
                            f"Block {i}: a table with {len(rows[0])} columns is wider than a phone screen: the email "
                            "shows it as one record per row (Header: value) and the web page scrolls it. Use "
                            "fewer columns or shorter words to keep it a table",
                        )
                    )
        for key in ("url", "link"):
            if (block.get(key) or "").startswith("http://"):
                found.append(("warning", f"Block {i}: {block[key]} is not https"))
    if html_size > 102 * 1024:
        found.append(("warning", f"The email is {html_size / 1024:.0f} KB: Gmail cuts off messages over 102 KB"))
    return found


def _link_labels(markdown: str) -> list[str]:
    from markdown_it import MarkdownIt

    labels = []
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        children = token.children or []
        inside, label = False, []
        for child in children:
            if child.type == "link_open":
                inside, label = True, []
            elif child.type == "link_close":
                inside = False
                labels.append("".join(label))
            elif inside and child.type in ("text", "code_inline"):
                label.append(child.content)
    return labels
