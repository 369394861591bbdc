"""The double opt-in email: built for one request, sent on the transactional queue."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import NotFound
from ..links import Links
from ..models import ConsentEvent, Subscriber, utcnow
from ..render import EmailContent, compile_message, render_email
from ..render.message import markers_for, new_marker_prefix
from .subscriptions import load_request, request_topics


@dataclass
class OutgoingMail:
    subscriber_id: int
    envelope_from: str
    recipient: str
    data: bytes


def latest_request_id(session: Session, subscriber_id: int) -> int | None:
    return session.scalar(
        select(ConsentEvent.id)
        .where(ConsentEvent.subscriber_id == subscriber_id, ConsentEvent.kind == "subscribe_requested")
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    )


def confirmation_mail(session: Session, request_id: int, settings: Settings, links: Links) -> OutgoingMail:
    """The confirmation email for a subscribe request, ready to send."""
    request = load_request(session, request_id)
    subscriber = session.get(Subscriber, request.subscriber_id)
    if not subscriber.email:
        raise NotFound("subscriber has no address")
    topics = request_topics(session, request)
    markers = markers_for(new_marker_prefix(), ("confirm_url", "unsubscribe_url"))
    content = EmailContent(
        subject="Confirm your subscription",
        preheader="One click and you will start getting the updates you chose.",
        body_html="",
        body_text="",
        template="confirmation",
        organisation=settings.organisation,
        contact_email=settings.contact_email,
        topic_name="Trust Matters",
        extra={"topics": [t.name for t in topics]},
    )
    html, text = render_email(content, markers)
    message = compile_message(
        subject=content.subject,
        mail_from=settings.mail_from,
        reply_to=settings.mail_reply_to,
        html=html,
        text=text,
        body_markers=markers,
    )
    unsubscribe_url = links.unsubscribe_url(subscriber.id, None)
    data = message.fill(
        {
            "to": subscriber.email,
            "date": format_datetime(utcnow()),
            "message_id": f"confirm-{request.id}@{settings.mail_domain}",
            "list_unsubscribe": unsubscribe_url,
            "unsubscribe_url": unsubscribe_url,
            "confirm_url": links.confirm_url(request.id),
        }
    )
    return OutgoingMail(
        subscriber_id=subscriber.id, envelope_from=message.envelope_from, recipient=subscriber.email, data=data
    )


def mark_confirmation_sent(session: Session, subscriber_id: int) -> None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is not None:
        subscriber.confirm_sent_at = utcnow()
