"""An issue as a list of blocks: heading, text, image, button, latest updates, divider.

Blocks are checked by their input models (compose/inputs.py: errors name the block, `blocks[2].alt`), stored as
plain JSON on the issue, and turned here into what the MJML partials in templates/email/blocks/ and the archive
page need. Text is Markdown
made safe by nh3; nothing a writer types reaches the email or a page as markup of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Media, Update
from ..render.content import (
    fits_a_phone,
    markdown_to_html,
    markdown_to_text,
    tables_in,
)
from ..render.web import issue_page_html
from .inputs import BLOCK_MODELS

BLOCK_TYPES = {
    "heading": "Heading",
    "text": "Text",
    "image": "Image",
    "button": "Button",
    "updates": "Latest updates",
    "divider": "Divider",
}
# The fields each kind of block has besides its type (what the composer's form posts for it).
FIELDS = {
    get_args(model.model_fields["type"].annotation)[0]: tuple(name for name in model.model_fields if name != "type")
    for model in BLOCK_MODELS
}
# What a latest-updates block is headed with, unless the block right above it is a heading of the writer's.
UPDATES_HEADING = "Latest updates"
_MARKDOWN_PICTURE = re.compile(r"!\[[^\]]*\]\(")
# Link text that says nothing out of context (screen reader users list links on their own).
VAGUE_LINKS = {"click here", "here", "read more", "more", "this link", "link", "click", "find out more"}


def blocks_of(issue) -> list[dict]:
    """The issue's blocks; an issue written as one Markdown body (the API, older drafts) is one text block."""
    if issue.blocks:
        return list(issue.blocks)
    return [{"type": "text", "markdown": issue.body}] if (issue.body or "").strip() else []


def stored(blocks: list[BaseModel] | None) -> list[dict] | None:
    """Checked blocks (compose.inputs.Block) as the issue keeps them: plain JSON, every field present."""
    return None if blocks is None else [block.model_dump() for block in blocks]


def missing_images(session: Session, blocks: list[dict]) -> dict[str, str]:
    """`blocks[i].media` for each image block whose upload is not (or no longer) there."""
    wanted = {i: b["media"] for i, b in enumerate(blocks) if b["type"] == "image"}
    ids = {m for m in wanted.values() if m is not None}
    known = set(session.scalars(select(Media.id).where(Media.id.in_(ids)))) if ids else set()
    return {f"blocks[{i}].media": "Choose an image to upload" for i, media in wanted.items() if media not in known}


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
        found += [(level, f"Block {i}: {message}") for level, message in _block_checks(block)]
    if html_size > 102 * 1024:
        found.append(("warning", f"The email is {html_size / 1024:.0f} KB: Gmail cuts off messages over 102 KB"))
    return found


def _block_checks(block: dict) -> list[tuple[str, str]]:
    kind = block.get("type")
    found: list[tuple[str, str]] = []
    if kind == "image" and not (block.get("alt") or "").strip():
        found.append(("error", "the image has no alt text"))
    if kind == "text":
        found += _text_checks(block.get("markdown") or "")
    if kind == "button" and block.get("label", "").strip().lower() in VAGUE_LINKS:
        found.append(("warning", f"the button says “{block['label']}”: say where it goes"))
    for key in ("url", "link"):
        if (block.get(key) or "").startswith("http://"):
            found.append(("warning", f"{block[key]} is not https"))
    return found


def _text_checks(markdown: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if not markdown.strip():
        found.append(("warning", "the text block is empty"))
    for label in _link_labels(markdown):
        if label.strip().lower() in VAGUE_LINKS:
            found.append(("warning", f"a link says “{label}”: say where it goes"))
    if _MARKDOWN_PICTURE.search(markdown):
        found.append(
            (
                "warning",
                "a picture in the text: Outlook for Windows shows it at its full size, wider than the email. "
                "Use an image block, which sizes it for every mail program",
            )
        )
    for rows in tables_in(markdown):
        if not fits_a_phone(rows):
            found.append(
                (
                    "warning",
                    f"a table with {len(rows[0])} columns is wider than a phone screen: the email shows it as one "
                    "record per row (Header: value) and the web page scrolls it. Use fewer columns or shorter "
                    "words to keep it a table",
                )
            )
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
