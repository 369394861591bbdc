"""Transactional emails about a subscription: the double opt-in confirmation and the manage link.

Built for one person and sent on the transactional queue, ahead of any bulk send.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import NotFound
from ..feedback import verp
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


def _mail(
    subscriber: Subscriber,
    settings: Settings,
    *,
    template: str,
    subject: str,
    preheader: str,
    message_id: str,
    fields: dict[str, str],
    extra: dict | None = None,
) -> OutgoingMail:
    markers = markers_for(new_marker_prefix(), tuple(fields))
    content = EmailContent(
        subject=subject,
        preheader=preheader,
        body_html="",
        body_text="",
        template=template,
        organisation=settings.organisation,
        contact_email=settings.contact_email,
        topic_name="Trust Matters",
        extra=extra or {},
    )
    html, text = render_email(content, markers)
    message = compile_message(
        subject=content.subject,
        mail_from=settings.mail_from,
        reply_to=settings.mail_reply_to,
        html=html,
        text=text,
        body_markers=markers,
        # Not List-Unsubscribe-Post: a transactional message is not list mail, and no POST to its link is due.
        unsubscribe_post=False,
    )
    data = message.fill(
        {
            "to": subscriber.email,
            "date": format_datetime(utcnow()),
            "message_id": f"{message_id}@{settings.mail_domain}",
            "list_unsubscribe": fields["unsubscribe_url"],
            **fields,
        }
    )
    return OutgoingMail(
        subscriber_id=subscriber.id,
        # Its own Return-Path (feedback.verp): a bounce names the person, never an issue.
        envelope_from=verp.envelope_for_person(subscriber.id, settings, message.envelope_from),
        recipient=subscriber.email,
        data=data,
    )


def confirmation_mail(session: Session, request_id: int, settings: Settings, links: Links) -> OutgoingMail:
    """The confirmation email for a subscribe request, ready to send."""
    request = load_request(session, request_id)
    subscriber = session.get(Subscriber, request.subscriber_id)
    if not subscriber.email:
        raise NotFound("subscriber has no address")
    topics = request_topics(session, request)
    return _mail(
        subscriber,
        settings,
        template="confirmation",
        subject="Confirm your subscription",
        preheader="One click and you will start getting the updates you chose.",
        message_id=f"confirm-{request.id}",
        fields={
            "confirm_url": links.confirm_url(subscriber.public_id, request.id),
            "unsubscribe_url": links.unsubscribe_url(subscriber.public_id, None),
            "manage_url": links.manage_url(subscriber.public_id),
        },
        extra={"topics": [t.name for t in topics]},
    )


def manage_link_mail(session: Session, subscriber_id: int, settings: Settings, links: Links) -> OutgoingMail:
    """The "here is your link to manage your subscriptions" email someone asked for on the site."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or not subscriber.email or subscriber.status == "erased":
        raise NotFound("subscriber has no address")
    return _mail(
        subscriber,
        settings,
        template="manage_link",
        subject="Manage your subscriptions",
        preheader="Change what you get from us, or unsubscribe.",
        message_id=f"manage-{subscriber.id}-{int(utcnow().timestamp())}",
        fields={
            "manage_url": links.manage_url(subscriber.public_id),
            "unsubscribe_url": links.unsubscribe_url(subscriber.public_id, None),
        },
    )


def mark_confirmation_sent(session: Session, subscriber_id: int) -> None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is not None:
        subscriber.confirm_sent_at = utcnow()
