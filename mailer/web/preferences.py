"""The preferences form, shared by the public preference centre and the admin's "change on their behalf"."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audience.people import (
    Change,
    clean_attributes,
    open_subscriptions,
    parse_subscriptions,
    update_preferences,
)
from ..errors import InvalidInput
from ..models import AREAS, AUDIENCES, FREQUENCY_LABELS, SERVICES, Subscriber, Suppression, Topic, services_of

SUPPRESSED = "We cannot email this address at the moment. Subscribe again to confirm it."


def current_values(session: Session, subscriber: Subscriber) -> dict:
    return {
        "topics": {s.topic.slug: s.frequency for s in open_subscriptions(session, subscriber.id)},
        "name": subscriber.name or "",
        "area": subscriber.area or "",
        "audience": subscriber.audience or "",
        "services": services_of(subscriber.services or 0),
    }


def form_values(form) -> dict:
    return {
        "topics": {slug: form.get(f"frequency-{slug}") or "immediately" for slug in form.getlist("topics")},
        "name": form.get("name", ""),
        "area": form.get("area", ""),
        "audience": form.get("audience", ""),
        "services": form.getlist("services"),
    }


def form_context(session: Session, subscriber: Subscriber) -> dict:
    """What `_preferences_fields.html` needs besides values and errors."""
    return {
        "topics": list(session.scalars(select(Topic).order_by(Topic.position))),
        "suppressed": session.scalar(select(Suppression.reason).where(Suppression.email_hash == subscriber.email_hash)),
        "areas": AREAS,
        "audiences": AUDIENCES,
        "services": {slug: label for slug, (label, _) in SERVICES.items()},
        "frequencies": FREQUENCY_LABELS,
    }


@dataclass
class Outcome:
    values: dict
    errors: dict = field(default_factory=dict)
    change: Change | None = None
    left_everything: bool = False


def save_preferences(
    session: Session,
    subscriber: Subscriber,
    form,
    *,
    channel: str,
    ip_hash: str | None = None,
    admin_user_id: int | None = None,
) -> Outcome:
    """Apply the submitted form, or say what is wrong with it (then nothing changes)."""
    everything = form.get("action") == "unsubscribe-all"
    values = form_values(form)
    errors: dict[str, str] = {}
    subscriptions = []
    if not everything and values["topics"]:
        try:
            subscriptions = parse_subscriptions(session, [f"{s}:{f}" for s, f in values["topics"].items()], "topics")
        except InvalidInput as exc:
            errors.update(exc.errors)
    if everything:
        # Leaving everything keeps the other answers as they were, whatever else the form held.
        current = current_values(session, subscriber)
        current.pop("topics")
        attributes, _ = clean_attributes(**current)
    else:
        attributes, attribute_errors = clean_attributes(
            name=values["name"], area=values["area"], audience=values["audience"], services=values["services"]
        )
        errors.update(attribute_errors)
    if not errors and subscriptions:
        suppressed = session.scalar(select(Suppression.id).where(Suppression.email_hash == subscriber.email_hash))
        if suppressed is not None:
            # Bounced or reported as spam: only a fresh confirmation (the subscribe form) lifts that.
            errors["topics"] = SUPPRESSED
    if errors:
        return Outcome(values, errors)
    change = update_preferences(
        session,
        subscriber,
        subscriptions=subscriptions,
        attributes=attributes,
        channel=channel,
        ip_hash=ip_hash,
        admin_user_id=admin_user_id,
    )
    return Outcome(values, change=change, left_everything=not subscriptions)
