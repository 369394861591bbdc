"""Which delivery a provider's report is about, from the Message-ID it quotes and the address it names.

SES quotes our Message-ID (mail.commonHeaders.messageId) and Notify carries it as the reference: it names an issue
and a subscriber (`verp.read_message_id`). It is believed only when that issue has a delivery row for that person
and the person's address is the one the report names; otherwise the report is attributed by address alone (a
message we cannot place, or a person whose address changed, is never pinned on someone else).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..models import Delivery, Subscriber, email_key
from . import verp


def delivery_named(session: Session, message_id: str | None, email: str, settings: Settings) -> int | None:
    """The id of the delivery row `message_id` names, if it is one we signed and went to `email`."""
    named = verp.read_message_id(message_id, settings)
    if named is None or not email:
        return None
    issue_id, subscriber_id = named
    return session.scalar(
        select(Delivery.id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.subscriber_id == subscriber_id,
            Subscriber.email_key == email_key(email),
        )
    )
