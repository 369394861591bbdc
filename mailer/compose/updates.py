"""Progress updates: drafted, then published. Publishing puts it in the archive and feeds and sends it,
through the delivery engine, to the topic's "as it happens" subscribers in its areas; digests collect it
for everyone else."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..audience.segments import topics_by_slug
from ..audit import Actor
from ..config import Settings
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Issue, Update, services_mask, services_of, utcnow
from ..render.content import markdown_to_html, web_tables
from .inputs import UpdateInput
from .mail import freeze


def _values(session: Session, data: UpdateInput) -> dict:
    """The update's columns; InvalidInput if its topic is not one we have."""
    topic = topics_by_slug(session).get(data.topic)
    if topic is None:
        raise InvalidInput({"topic": f"Unknown topic: {data.topic}"})
    return {
        "title": data.title,
        "summary": data.summary,
        "body": data.body,
        "topic_id": topic.id,
        "areas": list(data.areas),
        "services": services_mask(data.services),
        "link": data.link,
    }


def _slug(session: Session, title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80].rstrip("-") or "update"
    slug, n = base, 1
    while session.scalar(select(Update.id).where(Update.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_update(session: Session, data: UpdateInput, actor: Actor | None = None) -> Update:
    values = _values(session, data)
    update = Update(slug=_slug(session, values["title"]), status="draft", **values)
    update.created_by_id = actor.person_id if actor else None
    session.add(update)
    session.flush()
    audit.record(session, actor, "update.create", update, title=update.title)
    return update


def edit_update(session: Session, update_id: int, data: UpdateInput, actor: Actor | None = None) -> Update:
    update = get_update(session, update_id)
    if update.status != "draft":
        raise Conflict("A published update cannot be changed: it has been sent. Publish a correction.")
    for key, value in _values(session, data).items():
        setattr(update, key, value)
    audit.record(session, actor, "update.edit", update)
    session.flush()
    return update


def list_updates(session: Session, limit: int = 200) -> list[Update]:
    """The newest updates first."""
    return list(session.scalars(select(Update).order_by(Update.id.desc()).limit(limit)))


def get_update(session: Session, update_id: int) -> Update:
    update = session.get(Update, update_id) if 0 < update_id <= 2**31 - 1 else None
    if update is None:
        raise NotFound(f"No update with id {update_id}")
    return update


def publish_update(
    session: Session, update_id: int, actor: Actor | None = None, settings: Settings | None = None
) -> Issue:
    """Publish: archive, feeds, digests from now on, and an email to the "as it happens" subscribers now.

    The email is an issue of kind `update` in `sending`, its content frozen (and, given the settings, its
    email rendered) now; the caller enqueues its planning after commit."""
    update = session.get(Update, update_id, with_for_update=True) if 0 < update_id <= 2**31 - 1 else None
    if update is None:
        raise NotFound(f"No update with id {update_id}")
    if update.status != "draft":
        raise Conflict("This update is already published")
    now = utcnow()
    update.status = "published"
    update.published_at = now
    keep_update_page(update)
    issue = Issue(
        kind="update",
        update_id=update.id,
        subject=update.title,
        preheader=update.summary[:200],
        body="",
        blocks=update_blocks(update),
        topic_id=update.topic_id,
        status="sending",
        send_requested_at=now,
        approved_at=now,
        approved_by_id=actor.person_id if actor else None,
        slug=None,  # the update has its own page; the email's "view in browser" is that page
    )
    session.add(issue)
    session.flush()
    freeze(session, issue, settings)
    audit.record(session, actor, "update.publish", update, email_issue=issue.id)
    return issue


def keep_update_page(update: Update) -> str:
    """The update's body as its page shows it, rendered the first time it is asked for (on publishing) and
    kept: its page never renders Markdown per view."""
    if update.archive_html is None:
        update.archive_html = web_tables(markdown_to_html(update.body or ""))
    return update.archive_html


def update_blocks(update: Update) -> list[dict]:
    blocks: list[dict] = [{"type": "heading", "text": update.title}]
    if update.summary:
        blocks.append({"type": "text", "markdown": f"**{_escape_md(update.summary)}**"})
    if update.body:
        blocks.append({"type": "text", "markdown": update.body})
    if update.link:
        # Link text that says where it goes, as the update's page does (a screen reader lists links alone).
        blocks.append({"type": "button", "label": f"Find out more about {update.title}", "url": update.link})
    return blocks


def _escape_md(text: str) -> str:
    """`text` as Markdown that shows it as written (`&amp;` too: Markdown reads entities)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!<>|&])", r"\\\1", text)


def update_json(update: Update) -> dict:
    return {
        "id": update.id,
        "slug": update.slug,
        "title": update.title,
        "summary": update.summary,
        "body": update.body,
        "topic": update.topic.slug,
        "areas": update.areas,
        "services": services_of(update.services),
        "link": update.link,
        "status": update.status,
        "published_at": update.published_at.isoformat() if update.published_at else None,
    }
