"""Forgetting people: erasure on request (UK GDPR article 17) and the anonymising that retention does.

Only a one-way hash of an erased address stays, on the suppression list, so no import can bring it back.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..delivery.ledger import skip_pending_for
from ..errors import Conflict
from ..models import ConsentEvent, Delivery, FeedbackEvent, Subscriber, Suppression, utcnow
from .lookups import open_subscriptions


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
        # Bounce and complaint reports quote it too (and a complaint the whole message): what happened stays.
        for event in session.scalars(select(FeedbackEvent).where(FeedbackEvent.subscriber_id == subscriber.id)):
            event.diagnostic = pattern.sub("(address removed)", event.diagnostic) if event.diagnostic else None
            event.report = None
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
    """Erase a person: subscriptions end, pending mail is skipped, personal data goes."""
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
