"""The public archive: sent issues and published updates, as pages and as Atom and RSS feeds.

Only what was sent to everyone is shown: the rendered blocks of an issue (never a recipient's links), and
updates. Nothing here reads subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

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


def atom(items: list[Entry], base_url: str, title: str) -> str:
    updated = items[0].at if items else datetime(2026, 1, 1).astimezone()
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title>",
        f'<link rel="alternate" type="text/html" href="{escape(base_url)}/news"/>',
        f'<link rel="self" type="application/atom+xml" href="{escape(base_url)}/news/feed.atom"/>',
        f"<id>{escape(base_url)}/news</id>",
        f"<updated>{updated.isoformat()}</updated>",
    ]
    for item in items:
        url = escape(base_url + item.path)
        parts += [
            "<entry>",
            f"<title>{escape(item.title)}</title>",
            f'<link rel="alternate" type="text/html" href="{url}"/>',
            f"<id>{url}</id>",
            f"<updated>{item.at.isoformat()}</updated>",
            f"<published>{item.at.isoformat()}</published>",
            f'<category term="{escape(item.topic)}"/>',
            f"<summary>{escape(item.summary or item.title)}</summary>",
            f"<author><name>{escape(title)}</name></author>",
            "</entry>",
        ]
    parts.append("</feed>")
    return "\n".join(parts) + "\n"


def rss(items: list[Entry], base_url: str, title: str, description: str) -> str:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>',
        f"<title>{escape(title)}</title>",
        f"<link>{escape(base_url)}/news</link>",
        f"<description>{escape(description)}</description>",
        "<language>en-gb</language>",
        f'<atom:link href="{escape(base_url)}/news/feed.rss" rel="self" type="application/rss+xml"/>',
    ]
    for item in items:
        url = escape(base_url + item.path)
        parts += [
            "<item>",
            f"<title>{escape(item.title)}</title>",
            f"<link>{url}</link>",
            f'<guid isPermaLink="true">{url}</guid>',
            f"<pubDate>{format_datetime(item.at)}</pubDate>",
            f"<category>{escape(item.topic)}</category>",
            f"<description>{escape(item.summary or item.title)}</description>",
            "</item>",
        ]
    parts.append("</channel></rss>")
    return "\n".join(parts) + "\n"
