"""The public archive: sent issues and published updates, as pages and as Atom and RSS feeds.

Only what was sent to everyone is shown: the rendered blocks of an issue (never a recipient's links), and
updates. Nothing here reads subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.etree import ElementTree as ET

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Issue, Update

PAGE = 20
ARCHIVED = ("sending", "sent")  # not paused (something may be wrong) or cancelled


@dataclass
class Entry:
    kind: str  # issue, update
    title: str
    summary: str
    path: str
    at: datetime
    topic: str


def entries(session: Session, limit: int = PAGE, before: datetime | None = None) -> list[Entry]:
    """Issues that went out and published updates, newest first."""
    issues = select(Issue).where(*_public_issue())
    updates = select(Update).where(Update.status == "published", Update.published_at.is_not(None))
    if before is not None:
        issues = issues.where(Issue.send_requested_at < before)
        updates = updates.where(Update.published_at < before)
    found = [
        Entry("issue", i.subject, i.preheader or "", f"/news/{i.slug}", i.send_requested_at, i.topic.name)
        for i in session.scalars(issues.order_by(Issue.send_requested_at.desc()).limit(limit))
    ] + [
        Entry("update", u.title, u.summary, f"/news/updates/{u.slug}", u.published_at, u.topic.name)
        for u in session.scalars(updates.order_by(Update.published_at.desc()).limit(limit))
    ]
    found.sort(key=lambda e: e.at, reverse=True)
    return found[:limit]


def _public_issue() -> list:
    """Newsletters that went to everyone subscribed to their topic. One sent to a segment was meant for
    those people only, so it is not published."""
    return [
        Issue.kind == "newsletter",
        Issue.status.in_(ARCHIVED),
        Issue.segment_id.is_(None),
        Issue.slug.is_not(None),
        Issue.send_requested_at.is_not(None),
    ]


def archived_issue(session: Session, slug: str) -> Issue | None:
    return session.scalar(select(Issue).where(Issue.slug == slug, *_public_issue()))


def published_update(session: Session, slug: str) -> Update | None:
    return session.scalar(select(Update).where(Update.slug == slug, Update.status == "published"))


ATOM = "http://www.w3.org/2005/Atom"


def _xml(root: ET.Element) -> str:
    """The document as UTF-8 XML text. ElementTree escapes every text and attribute value (`&`, `<`, `>` and
    `"` included), so a title or topic name can never end an attribute or open an element."""
    ET.indent(root)  # one element a line, for people reading it; only whitespace between elements changes
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def atom(items: list[Entry], base_url: str, title: str) -> str:
    """An Atom 1.0 feed (RFC 4287) of `items`."""
    updated = items[0].at if items else datetime(2026, 1, 1).astimezone()
    feed = ET.Element("feed", {"xmlns": ATOM})
    _sub(feed, "title", title)
    _sub(feed, "link", rel="alternate", type="text/html", href=f"{base_url}/news")
    _sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base_url}/news/feed.atom")
    _sub(feed, "id", f"{base_url}/news")
    _sub(feed, "updated", updated.isoformat())
    for item in items:
        url = base_url + item.path
        entry = _sub(feed, "entry")
        _sub(entry, "title", item.title)
        _sub(entry, "link", rel="alternate", type="text/html", href=url)
        _sub(entry, "id", url)
        _sub(entry, "updated", item.at.isoformat())
        _sub(entry, "published", item.at.isoformat())
        _sub(entry, "category", term=item.topic)
        _sub(entry, "summary", item.summary or item.title)
        _sub(_sub(entry, "author"), "name", title)
    return _xml(feed)


def rss(items: list[Entry], base_url: str, title: str, description: str) -> str:
    """An RSS 2.0 feed of `items`, pointing at itself with atom:link as validators ask."""
    root = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM})
    channel = _sub(root, "channel")
    _sub(channel, "title", title)
    _sub(channel, "link", f"{base_url}/news")
    _sub(channel, "description", description)
    _sub(channel, "language", "en-gb")
    _sub(channel, "atom:link", href=f"{base_url}/news/feed.rss", rel="self", type="application/rss+xml")
    for item in items:
        url = base_url + item.path
        entry = _sub(channel, "item")
        _sub(entry, "title", item.title)
        _sub(entry, "link", url)
        _sub(entry, "guid", url, isPermaLink="true")
        _sub(entry, "pubDate", format_datetime(item.at))
        _sub(entry, "category", item.topic)
        _sub(entry, "description", item.summary or item.title)
    return _xml(root)
