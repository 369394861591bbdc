"""The preferences form, shared by the public preference centre and the admin's "change on their behalf":
what it shows and how a post becomes the `Preferences` input the command takes."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..audience.inputs import Preferences
from ..audience.lookups import areas, offered_topics, open_subscriptions, parse_in, suppression_reason
from ..models import AUDIENCES, FREQUENCY_LABELS, SERVICES, Subscriber, services_of


def current_values(session: Session, subscriber: Subscriber) -> dict:
    return {
        "topics": {s.topic.slug: s.frequency for s in open_subscriptions(session, subscriber.id)},
        "name": subscriber.name or "",
        "area": subscriber.area or "",
        "audience": subscriber.audience or "",
        "services": services_of(subscriber.services or 0),
    }


def form_values(form) -> dict:
    """What was posted, to show again."""
    return {
        "topics": {slug: form.get(f"frequency-{slug}") or "immediately" for slug in form.getlist("topics")},
        "name": form.get("name", ""),
        "area": form.get("area", ""),
        "audience": form.get("audience", ""),
        "services": form.getlist("services"),
    }


def parse_form(session: Session, form) -> Preferences:
    """The posted form as the command's input (InvalidInput naming each wrong field)."""
    if form.get("action") == "unsubscribe-all":
        # Leaving everything keeps the other answers as they were, whatever else the form held.
        return parse_in(session, Preferences, {"everything": True})
    values = form_values(form)
    data = {key: values[key] for key in ("name", "area", "audience", "services")}
    return parse_in(session, Preferences, data | {"topics": [f"{s}:{f}" for s, f in values["topics"].items()]})


def form_context(session: Session, subscriber: Subscriber) -> dict:
    """What `_preferences_fields.html` needs besides values and errors."""
    return {
        "topics": offered_topics(session),
        "suppressed": suppression_reason(session, subscriber),
        # The areas offered, and theirs if it was retired since they chose it: they keep it unless they change it.
        "areas": {
            area.slug: area.name for area in areas(session) if area.retired_at is None or area.slug == subscriber.area
        },
        "audiences": AUDIENCES,
        "services": {slug: label for slug, (label, _) in SERVICES.items()},
        "frequencies": FREQUENCY_LABELS,
    }
