"""Subscribe (double opt-in), confirm and unsubscribe.

The answer to a subscribe request never depends on whether the address is known, and nothing changes for
an address until its owner confirms from the email we sent to it. Unsubscribing is honoured at once: the
subscription ends and the person's not-yet-sent deliveries for that topic are skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..delivery.ledger import skip_pending_for
from ..errors import Conflict, NotFound
from ..links import ConfirmLink, UnsubscribeLink
from ..models import (
    FREQUENCIES,
    SERVICES,
    ConsentEvent,
    Subscriber,
    Subscription,
    Suppression,
    Topic,
    email_key,
    services_mask,
    utcnow,
)
from . import wording
from .changes import CONFIRMATIONS_PER_HOUR
from .emails import hash_address
from .inputs import PublicSignUp, SignUp, parse_with_topics
from .lookups import open_topics, recent_requests
from .segments import areas_by_slug, topics_by_slug
from .signed_links import confirm_request, unsubscribe_target


def hash_ip(ip: str | None, secret: str) -> str | None:
    """Consent records keep a keyed hash of the IP, enough to spot abuse without keeping the address."""
    if not ip:
        return None
    return hashlib.sha256(f"{secret}:{ip}".encode()).hexdigest()


@dataclass
class SubscribeOutcome:
    subscriber_id: int
    request_id: int
    # False when this address has had enough confirmation mails lately; the page says the same either way.
    send_confirmation: bool
    public_id: str = ""  # what the person's links name


def sign_up(topics: dict[str, Topic], areas: dict, data: dict, *, area_required: bool = False) -> SignUp:
    """A sign-up's fields checked (InvalidInput naming every wrong one). Reads topics and areas, never
    subscribers: the answer is the same whoever the address belongs to."""
    return parse_with_topics(topics, PublicSignUp if area_required else SignUp, data, areas=areas)


def sign_up_fields(
    *, email, topic_slugs, name=None, area=None, audience=None, services=None, frequency="immediately"
) -> dict:
    """The keyword arguments of a sign-up in the model's shape."""
    return {
        "email": email,
        "topics": list(topic_slugs),
        "name": name,
        "area": area,
        "audience": audience,
        "services": services or [],
        "frequency": frequency or "immediately",
    }


def request_subscription(
    session: Session,
    *,
    email: str,
    topic_slugs: list[str],
    name: str | None = None,
    area: str | None = None,
    audience: str | None = None,
    services: list[str] | None = None,
    frequency: str = "immediately",
    area_required: bool = False,
    channel: str = "web",
    ip_hash: str | None = None,
    requested_at: datetime | None = None,
) -> SubscribeOutcome:
    """Record a request to subscribe and say whether to send a confirmation email.

    Creates a pending subscriber for a new address; for a known address nothing changes until the
    owner confirms. The request (topics, name, area) is kept as a consent event, which the confirmation
    link names, dated `requested_at` (when the person asked; default now).
    """
    fields = sign_up_fields(
        email=email,
        topic_slugs=topic_slugs,
        name=name,
        area=area,
        audience=audience,
        services=services,
        frequency=frequency,
    )
    known = topics_by_slug(session)
    form = sign_up(known, areas_by_slug(session), fields, area_required=area_required)
    address = form.email
    topics = sorted((known[slug] for slug in form.topics), key=lambda t: t.position)
    asked = requested_at or utcnow()

    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(address)))
    if subscriber is None:
        subscriber = Subscriber(
            email=address,
            email_key=email_key(address),
            email_hash=hash_address(session, address),
            status="pending",
            subscribed_at=asked,
        )
        session.add(subscriber)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            # Someone subscribed the same address at the same moment: use their row.
            subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(address)))

    now = utcnow()
    recent = recent_requests(session, subscriber.id, now)
    complained = session.scalar(
        select(Suppression.id).where(
            Suppression.email_hash == subscriber.email_hash, Suppression.reason == "complained"
        )
    )
    request = ConsentEvent(
        subscriber_id=subscriber.id,
        kind="subscribe_requested",
        channel=channel,
        wording_version=wording.CURRENT,
        details={
            "topics": [t.slug for t in topics],
            "frequency": form.frequency,
        }
        | form.answers(),
        ip_hash=ip_hash,
        created_at=asked,
    )
    session.add(request)
    send = recent < CONFIRMATIONS_PER_HOUR and complained is None
    if send:
        subscriber.confirm_requested_at = now
    session.flush()
    return SubscribeOutcome(
        subscriber_id=subscriber.id, request_id=request.id, send_confirmation=send, public_id=subscriber.public_id
    )


@dataclass
class ConfirmOutcome:
    subscriber: Subscriber
    topics: list[Topic] = field(default_factory=list)
    already_confirmed: bool = False


def load_request(session: Session, request_id: int) -> ConsentEvent:
    request = session.get(ConsentEvent, request_id)
    if request is None or request.kind != "subscribe_requested":
        raise NotFound("That subscription request does not exist")
    subscriber = session.get(Subscriber, request.subscriber_id)
    if subscriber is None or subscriber.status == "erased":
        raise NotFound("That subscription request does not exist")
    return request


def request_topics(session: Session, request: ConsentEvent) -> list[Topic]:
    """The topics a sign-up asked for that are still offered: one retired since is neither shown nor joined."""
    slugs = request.details.get("topics") or []
    return list(
        session.scalars(
            select(Topic).where(Topic.slug.in_(slugs), Topic.retired_at.is_(None)).order_by(Topic.position)
        )
    )


def is_confirmed(session: Session, request_id: int) -> bool:
    return session.scalar(select(ConsentEvent.id).where(ConsentEvent.confirms_id == request_id)) is not None


def confirmation_state(session: Session, link: ConfirmLink) -> tuple[bool, list[Topic]]:
    """For the confirmation page: whether the request a link names is confirmed already, and its topics (if it
    is, those the person has now: they may have left some since). NotFound as `confirm_request`."""
    request = confirm_request(session, link)
    if is_confirmed(session, request.id):
        return True, open_topics(session, request.subscriber_id)
    return False, request_topics(session, request)


def unsubscribe_state(session: Session, link: UnsubscribeLink) -> tuple[Topic | None, list[Topic]]:
    """For the unsubscribe page: the topic the link names (None: everything) and the topics the person has now.
    NotFound (StaleLink) as `unsubscribe_target`."""
    subscriber = unsubscribe_target(session, link)
    topic = session.get(Topic, link.topic_id) if link.topic_id else None
    return topic, open_topics(session, subscriber.id)


def confirm_subscription(session: Session, request_id: int, ip_hash: str | None = None) -> ConfirmOutcome:
    """Apply a subscribe request: the subscriber becomes active with the requested topics.

    Confirming the same request twice changes nothing the second time.
    """
    request = load_request(session, request_id)
    subscriber = session.get(Subscriber, request.subscriber_id)
    if is_confirmed(session, request.id):
        # Say what is true now: they may have unsubscribed from some of these since.
        return ConfirmOutcome(subscriber=subscriber, topics=open_topics(session, subscriber.id), already_confirmed=True)
    topics = request_topics(session, request)

    now = utcnow()
    subscriber.status = "active"
    subscriber.confirmed_at = subscriber.confirmed_at or now
    subscriber.unsubscribed_at = None
    subscriber.subscribed_at = subscriber.subscribed_at or request.created_at
    details = request.details
    for key in ("name", "area", "audience"):
        if details.get(key):
            setattr(subscriber, key, details[key])
    if details.get("services"):
        subscriber.services = services_mask([s for s in details["services"] if s in SERVICES])
    frequencies = details.get("frequencies") or {}
    open_topic_ids = set(
        session.scalars(
            select(Subscription.topic_id).where(
                Subscription.subscriber_id == subscriber.id, Subscription.ended_at.is_(None)
            )
        )
    )
    for topic in topics:
        if topic.id not in open_topic_ids:
            frequency = frequencies.get(topic.slug) or details.get("frequency") or "immediately"
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    topic_id=topic.id,
                    source=request.channel,
                    frequency=frequency if frequency in FREQUENCIES else "immediately",
                )
            )
    # Proving they read our mail lifts a bounce suppression; a complaint stays until they confirm like this.
    for suppression in session.scalars(select(Suppression).where(Suppression.email_hash == subscriber.email_hash)):
        session.delete(suppression)
    session.add(
        ConsentEvent(
            subscriber_id=subscriber.id,
            kind="confirm",
            channel="email",
            wording_version=request.wording_version,
            details={"topics": [t.slug for t in topics]},
            confirms_id=request.id,
            ip_hash=ip_hash,
        )
    )
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        # The same link was POSTed twice at once; the other request confirmed it.
        raise Conflict("This subscription has already been confirmed") from exc
    return ConfirmOutcome(subscriber=subscriber, topics=topics)


@dataclass
class UnsubscribeOutcome:
    subscriber: Subscriber
    ended: list[Topic]
    remaining: list[Topic]
    topic: Topic | None  # the topic the link was for; None for "everything"


def unsubscribe(
    session: Session,
    subscriber_id: int,
    topic_id: int | None,
    *,
    channel: str = "web",
    ip_hash: str | None = None,
) -> UnsubscribeOutcome:
    """End the subscription to one topic (or all when `topic_id` is None) and skip pending deliveries.

    Idempotent: unsubscribing again changes nothing, writes nothing (no consent event: the record shows when the
    person left, not how often a mail provider repeated the request) and reports the same state.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status == "erased":
        raise NotFound("We could not find that subscription")
    topic = session.get(Topic, topic_id) if topic_id else None
    if topic_id and topic is None:
        raise NotFound("We could not find that subscription")

    query = select(Subscription).where(Subscription.subscriber_id == subscriber.id, Subscription.ended_at.is_(None))
    if topic is not None:
        query = query.where(Subscription.topic_id == topic.id)
    now = utcnow()
    ended = []
    for subscription in session.scalars(query):
        subscription.end("unsubscribed", now)
        ended.append(subscription.topic)
    skip_pending_for(session, subscriber.id, topic.id if topic else None, reason="unsubscribed")

    remaining = open_topics(session, subscriber.id)
    left = False  # whether the person, not only a subscription, is now unsubscribed
    if topic is None or not remaining:
        if subscriber.status in ("active", "pending"):
            subscriber.status = "unsubscribed"
            subscriber.unsubscribed_at = now
            left = True
    if ended or left:
        session.add(
            ConsentEvent(
                subscriber_id=subscriber.id,
                kind="unsubscribe",
                channel=channel,
                details={"topics": [t.slug for t in ended], "all": topic is None},
                ip_hash=ip_hash,
            )
        )
    session.flush()
    return UnsubscribeOutcome(subscriber=subscriber, ended=ended, remaining=remaining, topic=topic)
