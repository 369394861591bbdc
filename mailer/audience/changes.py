"""How one person's record changes: their answers, their subscriptions, and the team adding them.

Every change here is recorded as a consent event saying when, how (channel), under which wording and, for the
comms team, by whom. These are the steps the commands (commands.py) are made of: nothing here records an
audit row or queues a task, and nothing checks input a model has already checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..delivery.ledger import skip_pending_for
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    ConsentEvent,
    Subscriber,
    Subscription,
    Suppression,
    Topic,
    email_key,
    services_mask,
    services_of,
    utcnow,
)
from . import wording
from .emails import hash_address
from .inputs import Attributes, NewSubscriber
from .lookups import left_topics, open_subscriptions, recent_requests

# How many confirmation emails one address may be sent in an hour: enough for "I lost the email",
# too few for anyone to use a form or the API to flood someone's inbox.
CONFIRMATIONS_PER_HOUR = 3


def attributes_of(subscriber: Subscriber) -> dict:
    return {
        "name": subscriber.name,
        "area": subscriber.area,
        "audience": subscriber.audience,
        "services": services_of(subscriber.services or 0),
    }


def apply_attributes(subscriber: Subscriber, answers: Attributes, *, keep_blank: bool) -> dict:
    """Set the answers; with keep_blank an empty one leaves what is there. Returns {field: [old, new]}."""
    before = attributes_of(subscriber)
    for key in ("name", "area", "audience"):
        value = getattr(answers, key)
        if value is not None or not keep_blank:
            setattr(subscriber, key, value)
    if answers.services or not keep_blank:
        subscriber.services = services_mask(answers.services)
    after = attributes_of(subscriber)
    return {k: [before[k], after[k]] for k in before if before[k] != after[k]}


@dataclass
class Change:
    attributes: dict = field(default_factory=dict)
    added: dict = field(default_factory=dict)  # slug → frequency
    removed: list = field(default_factory=list)
    frequency: dict = field(default_factory=dict)  # slug → [old, new]
    refused: list = field(default_factory=list)  # topics left before, not re-added by someone else

    def __bool__(self) -> bool:
        return bool(self.attributes or self.added or self.removed or self.frequency)

    def details(self) -> dict:
        return {k: v for k, v in vars(self).items() if v and k != "refused"}


def topics_wanted(topics: dict[str, Topic], wanted: dict[str, str]) -> list[tuple[Topic, str]]:
    """(Topic, frequency) for checked slugs, in display order."""
    return sorted(((topics[slug], f) for slug, f in wanted.items()), key=lambda pair: pair[0].position)


def apply_subscriptions(
    session: Session,
    subscriber: Subscriber,
    wanted: list[tuple[Topic, str]],
    *,
    source: str,
    replace: bool,
    by_owner: bool,
    change: Change,
    now: datetime | None = None,
    current: dict[int, Subscription] | None = None,
    refused: set[int] | None = None,
) -> None:
    """Make the open subscriptions match `wanted` (replace) or add to them (not replace).

    Someone other than the owner (an import, the API, an admin) never re-adds a topic the person left. Replacing
    leaves a retired topic's subscription alone unless `wanted` is empty (leaving everything).
    `current` (open subscriptions by topic id) and `refused` (topics left) may come preloaded.
    """
    now = now or utcnow()
    if current is None:
        current = {s.topic_id: s for s in open_subscriptions(session, subscriber.id)} if subscriber.id else {}
    if by_owner:
        refused = set()
    elif refused is None:
        refused = left_topics(session, subscriber.id) if subscriber.id else set()
    for topic, frequency in wanted:
        subscription = current.get(topic.id)
        if subscription is not None:
            _set_frequency(subscription, topic, frequency, change, now)
        elif topic.id in refused:
            change.refused.append(topic.slug)
        else:
            session.add(Subscription(subscriber=subscriber, topic_id=topic.id, frequency=frequency, source=source))
            change.added[topic.slug] = frequency
    if replace:
        _end_unwanted(session, subscriber, current, {topic.id for topic, _ in wanted}, change, now)


def _end_unwanted(session, subscriber, current: dict[int, Subscription], kept: set[int], change, now) -> None:
    """End the open subscriptions not `kept`. A retired topic is not offered, so a form never lists it: its
    subscription stays as it was (history, sent nothing), unless they leave everything (nothing kept)."""
    for topic_id, subscription in current.items():
        if kept and subscription.topic.retired_at is not None:
            continue
        if topic_id not in kept:
            subscription.end("unsubscribed", now)
            change.removed.append(subscription.topic.slug)
            skip_pending_for(session, subscriber.id, topic_id, reason="unsubscribed")


def _set_frequency(subscription: Subscription, topic: Topic, frequency: str, change: Change, now: datetime) -> None:
    if subscription.frequency == frequency:
        return
    change.frequency[topic.slug] = [subscription.frequency, frequency]
    if subscription.frequency == "immediately":
        # They had this topic's news as it happened until now: their first digest starts here.
        # (Between two digest frequencies nothing is reset: the next digest picks up where the last ended.)
        subscription.frequency_since = now
    subscription.frequency = frequency


SUPPRESSED = "We cannot email this address at the moment. Subscribe again to confirm it."


def change_preferences(
    session: Session,
    subscriber: Subscriber,
    *,
    subscriptions: list[tuple[Topic, str]],
    answers: Attributes | None,
    channel: str,
    ip_hash: str | None = None,
    admin_user_id: int | None = None,
) -> Change:
    """What the owner (preference centre) or an admin sets: topics, frequencies and answers, all at once
    (`answers` None: left as they are).

    No topics at all means unsubscribing from everything. Recorded as one `change` consent event. An address on
    the suppression list (bounced, reported as spam) gets no topic back this way: only a fresh confirmation
    (the subscribe form) lifts that.
    """
    if subscriber.status == "erased":
        raise NotFound("We could not find that subscription")
    if subscriptions and session.scalar(select(Suppression.id).where(Suppression.email_hash == subscriber.email_hash)):
        raise InvalidInput({"topics": SUPPRESSED})
    now = utcnow()
    change = Change()
    if answers is not None:
        change.attributes = apply_attributes(subscriber, answers, keep_blank=False)
    by_owner = channel in ("web", "email")
    # Someone else (the team) may not start mail to a person who is not subscribed now, nor re-add a topic.
    refused = None if by_owner or subscriber.status == "active" else {topic.id for topic, _ in subscriptions}
    apply_subscriptions(
        session,
        subscriber,
        subscriptions,
        source=channel,
        replace=True,
        by_owner=by_owner,
        change=change,
        now=now,
        refused=refused,
    )
    _follow_status(session, subscriber, bool(subscriptions), change, by_owner=by_owner, now=now)
    if change:
        session.add(
            ConsentEvent(
                subscriber_id=subscriber.id,
                kind="change" if subscriptions else "unsubscribe",
                channel=channel,
                wording_version=wording.CURRENT,
                details=change.details() | ({"all": True} if not subscriptions else {}),
                ip_hash=ip_hash,
                admin_user_id=admin_user_id,
            )
        )
    session.flush()
    return change


def _follow_status(session, subscriber: Subscriber, any_topic: bool, change: Change, *, by_owner, now) -> None:
    """The person's status after their topics changed."""
    if any_topic and change.added and subscriber.status in ("pending", "unsubscribed") and by_owner:
        # The owner, from a link we emailed them, chose topics: that is as good as confirming.
        subscriber.status = "active"
        subscriber.confirmed_at = subscriber.confirmed_at or now
        subscriber.unsubscribed_at = None
    if not any_topic and subscriber.status in ("active", "pending"):
        subscriber.status = "unsubscribed"
        subscriber.unsubscribed_at = now
        skip_pending_for(session, subscriber.id, None, reason="unsubscribed")


# --- the team adds someone ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a change by the team came from, as its consent event records it."""

    channel: str  # admin, api, cli, import
    admin_user_id: int | None = None
    api_token: str | None = None  # the token's name
    import_id: int | None = None
    row: int | None = None  # the spreadsheet row of an import


@dataclass
class AddOutcome:
    subscriber: Subscriber
    created: bool
    change: Change
    request_id: int | None = None  # set when a confirmation email should go (double opt-in)


@dataclass
class Known:
    """What the database holds about some addresses, loaded in a handful of queries for a whole batch."""

    by_key: dict[str, Subscriber] = field(default_factory=dict)
    suppressed: dict[str, str] = field(default_factory=dict)  # email hash → reason
    anonymised: set[str] = field(default_factory=set)  # hashes of people whose address was removed
    current: dict[int, dict[int, Subscription]] = field(default_factory=dict)  # subscriber id → topic id → open
    left: dict[int, set[int]] = field(default_factory=dict)  # subscriber id → topics they unsubscribed from

    @classmethod
    def load(cls, session: Session, addresses: list[str]) -> Known:
        keys = list({email_key(a) for a in addresses})
        hashes = list({hash_address(session, a) for a in addresses})
        known = cls()
        if not keys:
            return known
        known.by_key = {
            s.email_key: s for s in session.scalars(select(Subscriber).where(Subscriber.email_key.in_(keys)))
        }
        known.suppressed = dict(
            session.execute(
                select(Suppression.email_hash, Suppression.reason).where(Suppression.email_hash.in_(hashes))
            ).all()
        )
        known.anonymised = set(
            session.scalars(
                select(Subscriber.email_hash).where(Subscriber.email_hash.in_(hashes), Subscriber.email_key.is_(None))
            )
        )
        known._load_subscriptions(session, [s.id for s in known.by_key.values()])
        return known

    def _load_subscriptions(self, session: Session, ids: list[int]) -> None:
        for subscriber_id in ids:
            self.current[subscriber_id] = {}
            self.left[subscriber_id] = set()
        if not ids:
            return
        for subscription in session.scalars(select(Subscription).where(Subscription.subscriber_id.in_(ids))):
            if subscription.ended_at is None:
                self.current[subscription.subscriber_id][subscription.topic_id] = subscription
            elif subscription.ended_reason == "unsubscribed":
                self.left[subscription.subscriber_id].add(subscription.topic_id)
        for subscriber_id in ids:
            self.left[subscriber_id] -= set(self.current[subscriber_id])


REFUSALS = {
    "bounced": "Mail to this address bounced: it is on the suppression list",
    "complained": "This address reported our mail as spam: it is on the suppression list",
    "erased": "This address asked for its data to be erased: only they can subscribe again",
}


def refusal_reason(known: Known, subscriber: Subscriber | None, hashed: str) -> str | None:
    """Why the team may not (re)subscribe this address, or None. Only its owner can undo these."""
    if subscriber is not None and subscriber.status == "unsubscribed":
        when = subscriber.unsubscribed_at.date().isoformat() if subscriber.unsubscribed_at else None
        return f"This address unsubscribed{' on ' + when if when else ''}: only they can subscribe again"
    if subscriber is not None and subscriber.status in REFUSALS:
        return REFUSALS[subscriber.status]
    reason = known.suppressed.get(hashed)
    if reason is not None and (subscriber is None or subscriber.status != "active"):
        return REFUSALS.get(reason, "This address is on the suppression list")
    if subscriber is None and hashed in known.anonymised:
        return "This address unsubscribed in the past: only they can subscribe again"
    return None


def add(
    session: Session,
    data: NewSubscriber,
    wanted: list[tuple[Topic, str]],
    origin: Origin,
    known: Known | None = None,
) -> AddOutcome:
    """Add or update someone on the team's say-so (API, admin, CLI, import), with where consent came from.

    Only when consent was collected elsewhere do they become active at once; otherwise this is a subscribe
    request and the caller sends the confirmation email. An address that unsubscribed, bounced, complained or
    was erased is never brought back this way (Conflict says why). Every check happens before anything is
    written. With `known` (an import's batch) nothing is flushed: the caller flushes.
    """
    batch = known is not None
    known = known if batch else Known.load(session, [data.email])
    hashed = hash_address(session, data.email)
    subscriber = known.by_key.get(email_key(data.email))
    refusal = refusal_reason(known, subscriber, hashed)
    if refusal:
        raise Conflict(refusal)
    now = utcnow()
    created = subscriber is None
    if created:
        subscriber = _new_subscriber(session, data, hashed, now, known)
    details = _consent_details(data, origin)
    if not data.consent.collected:
        return _request_confirmation(session, subscriber, created, data, wanted, details, origin, now)
    change = _apply_collected(session, subscriber, created, data, wanted, origin, known, now)
    if created or change:
        session.add(
            ConsentEvent(
                subscriber=subscriber,
                kind="subscribe" if created else "change",
                channel=origin.channel,
                wording_version=None,
                details=details | change.details(),
                admin_user_id=origin.admin_user_id,
                import_id=origin.import_id,
                created_at=now,
            )
        )
    if not batch:
        session.flush()
    return AddOutcome(subscriber, created, change)


def _new_subscriber(session: Session, data: NewSubscriber, hashed: str, now: datetime, known: Known) -> Subscriber:
    subscriber = Subscriber(
        email=data.email,
        email_key=email_key(data.email),
        email_hash=hashed,
        status="pending",
        services=0,
        subscribed_at=data.consent.date or now,
    )
    session.add(subscriber)
    known.by_key[subscriber.email_key] = subscriber
    return subscriber


def _consent_details(data: NewSubscriber, origin: Origin) -> dict:
    consent_date = data.consent.date
    details = {"source": data.consent.source, "consent_date": consent_date.isoformat() if consent_date else None}
    if origin.api_token:
        details["api_token"] = origin.api_token
    if origin.row is not None:
        details["row"] = origin.row
    return details


def _request_confirmation(session, subscriber, created, data, wanted, details, origin, now) -> AddOutcome:
    """Double opt-in: nothing changes until the owner confirms from the email."""
    request = ConsentEvent(
        subscriber=subscriber,
        kind="subscribe_requested",
        channel=origin.channel,
        wording_version=wording.CURRENT,
        details=details
        | {"topics": [t.slug for t, _ in wanted], "frequencies": {t.slug: f for t, f in wanted}}
        | data.answers(),
        admin_user_id=origin.admin_user_id,
        import_id=origin.import_id,
    )
    session.add(request)
    session.flush()
    if recent_requests(session, subscriber.id, now) > CONFIRMATIONS_PER_HOUR:
        # Enough confirmation mails to this address lately: recorded, not sent.
        return AddOutcome(subscriber, created, Change())
    subscriber.confirm_requested_at = now
    return AddOutcome(subscriber, created, Change(), request_id=request.id)


def _apply_collected(session, subscriber, created, data, wanted, origin: Origin, known: Known, now) -> Change:
    """Consent collected elsewhere: the answers and topics apply at once, and the person is active."""
    change = Change()
    change.attributes = apply_attributes(subscriber, data, keep_blank=True)
    apply_subscriptions(
        session,
        subscriber,
        wanted,
        source=origin.channel,
        replace=False,
        by_owner=False,
        change=change,
        now=now,
        current=known.current.get(subscriber.id, {}) if not created else {},
        refused=known.left.get(subscriber.id, set()) if not created else set(),
    )
    if subscriber.status == "pending":
        subscriber.status = "active"
        subscriber.confirmed_at = subscriber.confirmed_at or now
        if not created:
            change.attributes["status"] = ["pending", "active"]
    consent_date = data.consent.date
    if subscriber.subscribed_at is None or (consent_date and consent_date < subscriber.subscribed_at):
        if not created:
            change.attributes["subscribed_at"] = [_iso(subscriber.subscribed_at), _iso(consent_date or now)]
        subscriber.subscribed_at = consent_date or now
    return change


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
