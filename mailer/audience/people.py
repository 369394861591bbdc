"""One person's data: attributes, preferences, consent collected elsewhere, subject access and erasure.

Every change here is recorded as a consent event saying when, how (channel), under which wording and,
for the comms team, by whom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..delivery.ledger import skip_pending_for
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    AREAS,
    AUDIENCES,
    FREQUENCIES,
    SERVICES,
    ConsentEvent,
    Delivery,
    Issue,
    Subscriber,
    Subscription,
    Suppression,
    Topic,
    email_key,
    services_mask,
    services_of,
    utcnow,
)
from ..render.content import clean_text
from . import wording
from .emails import hash_address, normalise_email
from .segments import topics_by_slug

NAME_MAX = 200
# How many confirmation emails one address may be sent in an hour: enough for "I lost the email",
# too few for anyone to use a form or the API to flood someone's inbox.
CONFIRMATIONS_PER_HOUR = 3
_UK_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")
SOURCE_MAX = 500


def _slug_for(value: str, choices: dict) -> str | None:
    """A slug from a slug or its label, ignoring case and spacing ('Isle of Wight' → 'isle-of-wight')."""
    text = " ".join(value.split()).lower()
    for slug, label in choices.items():
        label = label[0] if isinstance(label, tuple) else label
        if text in (slug, label.lower(), slug.replace("-", " ")):
            return slug
    return None


@dataclass
class Attributes:
    name: str | None = None
    area: str | None = None
    audience: str | None = None
    services: list[str] = field(default_factory=list)


def clean_attributes(
    *, name=None, area=None, audience=None, services=None, area_required: bool = False
) -> tuple[Attributes, dict[str, str]]:
    """Validate the optional attributes; returns (values, errors by field). Labels are accepted for slugs."""
    errors: dict[str, str] = {}
    out = Attributes()
    if name is not None and not isinstance(name, str):
        errors["name"] = "Name must be text"
    else:
        out.name = " ".join(clean_text(name or "").split()) or None
        if out.name and len(out.name) > NAME_MAX:
            errors["name"] = f"Name must be {NAME_MAX} characters or fewer"
    for key, choices, message in (
        ("area", AREAS, "Select where you live or work from the list"),
        ("audience", AUDIENCES, "Select which of these describes you from the list"),
    ):
        value = area if key == "area" else audience
        if value is None or (isinstance(value, str) and not value.strip()):
            if key == "area" and area_required:
                errors["area"] = "Select where you live or work"
            continue
        slug = _slug_for(value, choices) if isinstance(value, str) else None
        if slug is None:
            errors[key] = message
        setattr(out, key, slug)
    if services is None:
        services = []
    if isinstance(services, str):
        services = [s for s in services.split(";") if s.strip()]
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        errors["services"] = "Services must be a list of service names"
    else:
        slugs = []
        for value in services:
            slug = _slug_for(value, SERVICES)
            if slug is None:
                errors["services"] = f"Unknown service {value.strip()!r}: use {', '.join(SERVICES)}"
                break
            if slug not in slugs:
                slugs.append(slug)
        out.services = [s for s in SERVICES if s in slugs]
    return out, errors


def parse_subscriptions(
    session: Session, items, field_name: str = "subscriptions", topics: dict[str, Topic] | None = None
) -> list[tuple[Topic, str]]:
    """[{"topic": slug, "frequency": f}] or ["slug", "slug:weekly"] → [(Topic, frequency)] in display order."""
    if not isinstance(items, list) or not items:
        raise InvalidInput({field_name: "Choose at least one topic"})
    wanted: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            slug, _, frequency = item.strip().partition(":")
        elif isinstance(item, dict) and set(item) <= {"topic", "frequency"} and isinstance(item.get("topic"), str):
            # A frequency that is not a string (a list, an object, a number) is refused below, not defaulted.
            slug, frequency = item["topic"], "" if item.get("frequency") is None else item["frequency"]
        else:
            raise InvalidInput({field_name: 'Each subscription is {"topic": slug, "frequency": ...}'})
        if isinstance(frequency, str):
            frequency = (frequency or "immediately").strip()
        slug = slug.strip()
        if not isinstance(frequency, str) or frequency not in FREQUENCIES:
            raise InvalidInput(
                {field_name: f"Unknown frequency {frequency!r} for {slug}: use {', '.join(FREQUENCIES)}"}
            )
        if slug in wanted and wanted[slug] != frequency:
            raise InvalidInput({field_name: f"Topic {slug} is listed twice with different frequencies"})
        wanted[slug] = frequency
    if topics is None:
        topics = topics_by_slug(session)
    unknown = [s for s in wanted if s not in topics]
    if unknown:
        raise InvalidInput({field_name: f"Unknown topic: {', '.join(unknown)}"})
    return sorted(((topics[s], f) for s, f in wanted.items()), key=lambda pair: pair[0].position)


def find_subscriber(session: Session, email: str) -> Subscriber:
    """The current record for an address (NotFound if none, or if it was erased)."""
    try:
        address = normalise_email(email)
    except InvalidInput as exc:
        raise NotFound("No subscriber with that address") from exc
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(address)))
    if subscriber is None:
        raise NotFound("No subscriber with that address")
    return subscriber


def open_subscriptions(session: Session, subscriber_id: int) -> list[Subscription]:
    return list(
        session.scalars(
            select(Subscription)
            .join(Topic, Topic.id == Subscription.topic_id)
            .where(Subscription.subscriber_id == subscriber_id, Subscription.ended_at.is_(None))
            .order_by(Topic.position)
        )
    )


def left_topics(session: Session, subscriber_id: int) -> set[int]:
    """Topics this person unsubscribed from (and has not rejoined): only they may subscribe them again."""
    ended = set(
        session.scalars(
            select(Subscription.topic_id).where(
                Subscription.subscriber_id == subscriber_id, Subscription.ended_reason == "unsubscribed"
            )
        )
    )
    return ended - {s.topic_id for s in open_subscriptions(session, subscriber_id)}


def _attributes_of(subscriber: Subscriber) -> dict:
    return {
        "name": subscriber.name,
        "area": subscriber.area,
        "audience": subscriber.audience,
        "services": services_of(subscriber.services or 0),
    }


def _apply_attributes(subscriber: Subscriber, attrs: Attributes, *, keep_blank: bool) -> dict:
    """Set the attributes; with keep_blank an empty value leaves what is there. Returns {field: [old, new]}."""
    before = _attributes_of(subscriber)
    for key in ("name", "area", "audience"):
        value = getattr(attrs, key)
        if value is not None or not keep_blank:
            setattr(subscriber, key, value)
    if attrs.services or not keep_blank:
        subscriber.services = services_mask(attrs.services)
    after = _attributes_of(subscriber)
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

    Someone other than the owner (an import, the API, an admin) never re-adds a topic the person left.
    `current` (open subscriptions by topic id) and `refused` (topics left) may come preloaded.
    """
    now = now or utcnow()
    if current is None:
        current = {s.topic_id: s for s in open_subscriptions(session, subscriber.id)} if subscriber.id else {}
    if refused is None:
        refused = set() if by_owner or not subscriber.id else left_topics(session, subscriber.id)
    elif by_owner:
        refused = set()
    wanted_ids = set()
    for topic, frequency in wanted:
        wanted_ids.add(topic.id)
        subscription = current.get(topic.id)
        if subscription is None:
            if topic.id in refused:
                change.refused.append(topic.slug)
                continue
            session.add(Subscription(subscriber=subscriber, topic_id=topic.id, frequency=frequency, source=source))
            change.added[topic.slug] = frequency
        elif subscription.frequency != frequency:
            change.frequency[topic.slug] = [subscription.frequency, frequency]
            if subscription.frequency == "immediately":
                # They had this topic's news as it happened until now: their first digest starts here.
                # (Between two digest frequencies nothing is reset: the next digest picks up where the last ended.)
                subscription.frequency_since = now
            subscription.frequency = frequency
    if replace:
        for topic_id, subscription in current.items():
            if topic_id not in wanted_ids:
                subscription.end("unsubscribed", now)
                change.removed.append(subscription.topic.slug)
                skip_pending_for(session, subscriber.id, topic_id, reason="unsubscribed")


def update_preferences(
    session: Session,
    subscriber: Subscriber,
    *,
    subscriptions: list[tuple[Topic, str]],
    attributes: Attributes,
    channel: str,
    ip_hash: str | None = None,
    admin_user_id: int | None = None,
) -> Change:
    """What the owner (preference centre) or an admin sets: topics, frequencies and attributes, all at once.

    No topics at all means unsubscribing from everything. Recorded as one `change` consent event.
    """
    if subscriber.status == "erased":
        raise NotFound("We could not find that subscription")
    now = utcnow()
    change = Change()
    change.attributes = _apply_attributes(subscriber, attributes, keep_blank=False)
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
    if subscriptions and change.added and subscriber.status in ("pending", "unsubscribed") and by_owner:
        # The owner, from a link we emailed them, chose topics: that is as good as confirming.
        subscriber.status = "active"
        subscriber.confirmed_at = subscriber.confirmed_at or now
        subscriber.unsubscribed_at = None
    if not subscriptions and subscriber.status in ("active", "pending"):
        subscriber.status = "unsubscribed"
        subscriber.unsubscribed_at = now
        skip_pending_for(session, subscriber.id, None, reason="unsubscribed")
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


def parse_consent_date(value, field_name: str = "consent_date") -> datetime | None:
    """A consent date (YYYY-MM-DD or ISO datetime) not in the future, as aware UTC; None when blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput({field_name: "Consent date must be a date like 2026-03-31 or 31/03/2026"})
    text = value.strip()
    shown = text if len(text) <= 40 else text[:40] + "…"
    try:
        if _UK_DATE.fullmatch(text):  # how spreadsheets in the UK write dates: day first
            day, month, year = (int(part) for part in text.split("/"))
            moment = datetime(year, month, day, tzinfo=UTC)
        else:
            moment = datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            # An offset can carry a moment past the calendar's ends (0001-01-01T00:00+01:00): OverflowError.
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidInput({field_name: f"{shown!r} is not a date like 2026-03-31 or 31/03/2026"}) from None
    if moment > utcnow():
        raise InvalidInput({field_name: "Consent date is in the future"})
    if moment.year < 2000:
        raise InvalidInput({field_name: "Consent date is before 2000: check the date"})
    return moment


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
        ids = [s.id for s in known.by_key.values()]
        for subscriber_id in ids:
            known.current[subscriber_id] = {}
            known.left[subscriber_id] = set()
        if ids:
            for subscription in session.scalars(select(Subscription).where(Subscription.subscriber_id.in_(ids))):
                if subscription.ended_at is None:
                    known.current[subscription.subscriber_id][subscription.topic_id] = subscription
                elif subscription.ended_reason == "unsubscribed":
                    known.left[subscription.subscriber_id].add(subscription.topic_id)
            for subscriber_id in ids:
                known.left[subscriber_id] -= set(known.current[subscriber_id])
        return known


def add_subscriber(
    session: Session,
    *,
    email: str,
    subscriptions: list[tuple[Topic, str]],
    attributes: Attributes,
    consent_source: str,
    consent_date: datetime | None,
    collected_elsewhere: bool,
    channel: str,
    admin_user_id: int | None = None,
    api_token: str | None = None,
    import_id: int | None = None,
    row: int | None = None,
    known: Known | None = None,
) -> AddOutcome:
    """Add or update someone on the team's say-so (API, admin, import), with where consent came from.

    Only when consent was collected elsewhere do they become active at once; otherwise this is a
    subscribe request and the caller sends the confirmation email. An address that unsubscribed, bounced,
    complained or was erased is never brought back this way (Conflict says why). Every check happens
    before anything is written. With `known` (an import's batch) nothing is flushed: the caller flushes.
    """
    address = normalise_email(email)
    source = " ".join(clean_text(consent_source or "").split())
    if not source:
        raise InvalidInput({"consent_source": "Say where and how consent was given"})
    if len(source) > SOURCE_MAX:
        raise InvalidInput({"consent_source": f"Consent source must be {SOURCE_MAX} characters or fewer"})
    batch = known is not None
    if known is None:
        known = Known.load(session, [address])
    hashed = hash_address(session, address)
    subscriber = known.by_key.get(email_key(address))
    refusal = refusal_reason(known, subscriber, hashed)
    if refusal:
        raise Conflict(refusal)
    now = utcnow()
    created = subscriber is None
    if created:
        subscriber = Subscriber(
            email=address,
            email_key=email_key(address),
            email_hash=hashed,
            status="pending",
            services=0,
            subscribed_at=consent_date or now,
        )
        session.add(subscriber)
        known.by_key[subscriber.email_key] = subscriber
    details = {"source": source, "consent_date": consent_date.isoformat() if consent_date else None}
    if api_token:
        details["api_token"] = api_token
    if row is not None:
        details["row"] = row
    if not collected_elsewhere:
        # Double opt-in: nothing changes until the owner confirms from the email.
        request = ConsentEvent(
            subscriber=subscriber,
            kind="subscribe_requested",
            channel=channel,
            wording_version=wording.CURRENT,
            details=details
            | {
                "topics": [t.slug for t, _ in subscriptions],
                "frequencies": {t.slug: f for t, f in subscriptions},
                "name": attributes.name,
                "area": attributes.area,
                "audience": attributes.audience,
                "services": attributes.services,
            },
            admin_user_id=admin_user_id,
            import_id=import_id,
        )
        session.add(request)
        session.flush()
        if recent_requests(session, subscriber.id, now) > CONFIRMATIONS_PER_HOUR:
            # Enough confirmation mails to this address lately: recorded, not sent.
            return AddOutcome(subscriber, created, Change())
        subscriber.confirm_requested_at = now
        return AddOutcome(subscriber, created, Change(), request_id=request.id)

    change = Change()
    change.attributes = _apply_attributes(subscriber, attributes, keep_blank=True)
    apply_subscriptions(
        session,
        subscriber,
        subscriptions,
        source=channel,
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
    if subscriber.subscribed_at is None or (consent_date and consent_date < subscriber.subscribed_at):
        if not created:
            change.attributes["subscribed_at"] = [_iso(subscriber.subscribed_at), _iso(consent_date or now)]
        subscriber.subscribed_at = consent_date or now
    if created or change:
        session.add(
            ConsentEvent(
                subscriber=subscriber,
                kind="subscribe" if created else "change",
                channel=channel,
                wording_version=None,
                details=details | change.details(),
                admin_user_id=admin_user_id,
                import_id=import_id,
                created_at=now,
            )
        )
    if not batch:
        session.flush()
    return AddOutcome(subscriber, created, change)


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


def recent_requests(session: Session, subscriber_id: int, now: datetime) -> int:
    """Subscribe requests (each one a confirmation email) for this person in the hour up to `now`."""
    return session.scalar(
        select(func.count(ConsentEvent.id)).where(
            ConsentEvent.subscriber_id == subscriber_id,
            ConsentEvent.kind == "subscribe_requested",
            ConsentEvent.created_at > now - timedelta(hours=1),
        )
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def profile(session: Session, subscriber: Subscriber) -> dict:
    """What the API and the admin show for one person: attributes, subscriptions and consent history."""
    topics = {topic_id: slug for topic_id, slug in session.execute(select(Topic.id, Topic.slug))}
    subscriptions = session.scalars(
        select(Subscription).where(Subscription.subscriber_id == subscriber.id).order_by(Subscription.id)
    )
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "status": subscriber.status,
        **_attributes_of(subscriber),
        "subscribed_at": _iso(subscriber.subscribed_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "subscriptions": [
            {
                "topic": topics[s.topic_id],
                "frequency": s.frequency,
                "source": s.source,
                "started_at": _iso(s.started_at),
                "ended_at": _iso(s.ended_at),
                "ended_reason": s.ended_reason,
            }
            for s in subscriptions
        ],
        "consent": consent_history(session, subscriber.id),
    }


def consent_history(session: Session, subscriber_id: int) -> list[dict]:
    events = session.scalars(
        select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id).order_by(ConsentEvent.id)
    )
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "channel": e.channel,
            "at": _iso(e.created_at),
            "wording_version": e.wording_version,
            "wording": wording.WORDING.get(e.wording_version) if e.wording_version else None,
            "details": e.details,
            "admin_user_id": e.admin_user_id,
            "import_id": e.import_id,
        }
        for e in events
    ]


def subject_access(session: Session, subscriber: Subscriber) -> dict:
    """Everything we hold about a person (UK GDPR article 15), as one JSON-ready document."""
    data = profile(session, subscriber)
    data["created_at"] = _iso(subscriber.created_at)
    data["confirmation_emails"] = {
        "last_requested_at": _iso(subscriber.confirm_requested_at),
        "last_sent_at": _iso(subscriber.confirm_sent_at),
    }
    deliveries = session.execute(
        select(Delivery.issue_id, Issue.subject, Delivery.status, Delivery.sent_at, Delivery.last_error)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    )
    data["emails_sent"] = [
        {
            "issue": d.issue_id,
            "subject": d.subject,
            "status": d.status,
            "sent_at": _iso(d.sent_at),
            "note": d.last_error,
        }
        for d in deliveries
    ]
    suppression = session.scalar(select(Suppression).where(Suppression.email_hash == subscriber.email_hash))
    data["suppressed"] = {"reason": suppression.reason, "since": _iso(suppression.created_at)} if suppression else None
    data["what_we_keep_and_why"] = (
        "Your email address and choices, to send you the updates you asked for; a record of when and how you "
        "agreed, to show we had your consent; a record of each email we sent you, to avoid sending it twice."
    )
    return data


def anonymise(session: Session, subscriber: Subscriber, now: datetime | None = None) -> None:
    """Remove the address and name; the row, its hash and its ledger rows stay as anonymous history."""
    now = now or utcnow()
    address = subscriber.email
    subscriber.email = None
    subscriber.email_key = None
    subscriber.name = None
    subscriber.anonymised_at = now
    # Consent records keep what happened and when, not the personal details someone typed.
    for event in session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber.id)):
        event.ip_hash = None
        if event.details:
            event.details = _without_names(event.details)
    # Mail servers often quote the address in a refusal; the ledger keeps the outcome, not the address.
    if address:
        pattern = re.compile(re.escape(address), re.IGNORECASE)
        for delivery in session.scalars(
            select(Delivery).where(Delivery.subscriber_id == subscriber.id, Delivery.last_error.is_not(None))
        ):
            delivery.last_error = pattern.sub("(address removed)", delivery.last_error)
    session.flush()


def _without_names(details: dict) -> dict:
    """Consent details without any name: top-level (requests) or in an attribute change ([old, new])."""
    out = {k: v for k, v in details.items() if k != "name"}
    if isinstance(out.get("attributes"), dict) and "name" in out["attributes"]:
        out["attributes"] = {k: v for k, v in out["attributes"].items() if k != "name"}
    return out


def delete_consent_events(session: Session, subscriber_ids: list[int]) -> None:
    """All consent events of these people: confirmations first, since they point at the requests."""
    of_them = ConsentEvent.subscriber_id.in_(subscriber_ids)
    session.execute(delete(ConsentEvent).where(of_them, ConsentEvent.confirms_id.is_not(None)))
    session.execute(delete(ConsentEvent).where(of_them))


def erase(session: Session, subscriber: Subscriber, *, channel: str, admin_user_id: int | None = None) -> None:
    """Erase a person (UK GDPR article 17): subscriptions end, pending mail is skipped, personal data goes.

    Only a one-way hash of the address stays, on the suppression list, so no import can bring it back.
    """
    if subscriber.status == "erased":
        raise Conflict("This subscriber has already been erased")
    now = utcnow()
    for subscription in open_subscriptions(session, subscriber.id):
        subscription.end("erased", now)
    skip_pending_for(session, subscriber.id, None, reason="erased")
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id, Delivery.status == "sending")
        .values(last_error="erased while sending")
        .execution_options(synchronize_session=False)
    )
    existing = session.scalar(select(Suppression).where(Suppression.email_hash == subscriber.email_hash))
    if existing is None:
        session.add(Suppression(email_hash=subscriber.email_hash, reason="erased"))
    else:
        existing.reason, existing.detail = "erased", None
    subscriber.status = "erased"
    subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
    subscriber.audience = None
    subscriber.area = None
    subscriber.services = 0
    anonymise(session, subscriber, now)
    # The history of consent is about a person who asked to be forgotten: only the fact of erasure stays.
    delete_consent_events(session, [subscriber.id])
    session.add(ConsentEvent(subscriber_id=subscriber.id, kind="erase", channel=channel, admin_user_id=admin_user_id))
    session.flush()
