"""What the team reads of the feedback loop: what was heard about each recipient of an issue, and who they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from ..models import RECIPIENT_FILTERS, Delivery, FeedbackEvent, Subscriber

WHO = RECIPIENT_FILTERS  # the recipients page's filters beyond the ledger's own statuses


@dataclass(frozen=True)
class Heard:
    """The last report about one recipient's copy of an issue."""

    kind: str  # bounce | complaint
    severity: str | None
    status: str | None  # "5.1.1", "permanent-failure"
    diagnostic: str | None
    source: str
    received_at: datetime


def _about_the_row(kind: str | None = None):
    """A report naming the delivery row, or its issue and subscriber (a report without the row's id)."""
    named = or_(
        FeedbackEvent.delivery_id == Delivery.id,
        and_(FeedbackEvent.issue_id == Delivery.issue_id, FeedbackEvent.subscriber_id == Delivery.subscriber_id),
    )
    return exists().where(named, FeedbackEvent.kind == kind) if kind else exists().where(named)


def recipients_who(who: str | None):
    """The condition on a recipient row (ledger.recipients' `where`) for one of WHO: whose message bounced
    (when sending, or reported later, hard or soft), who reported it as spam, who is no longer subscribed."""
    if who == "bounced":
        return or_(Delivery.status == "bounced", _about_the_row("bounce"))
    if who == "complained":
        return _about_the_row("complaint")
    if who == "left":
        return Subscriber.status != "active"
    return None


def heard_about(session: Session, issue_id: int, delivery_ids: list[int]) -> dict[int, Heard]:
    """The last report heard about each of these delivery rows of the issue (rows nobody reported on are left out)."""
    if not delivery_ids:
        return {}
    rows = session.execute(
        select(Delivery.id, FeedbackEvent)
        .join(
            FeedbackEvent,
            or_(
                FeedbackEvent.delivery_id == Delivery.id,
                and_(FeedbackEvent.issue_id == issue_id, FeedbackEvent.subscriber_id == Delivery.subscriber_id),
            ),
        )
        .where(Delivery.id.in_(delivery_ids))
        .order_by(FeedbackEvent.id)
    ).all()
    return {
        delivery_id: Heard(e.kind, e.severity, e.status, e.diagnostic, e.source, e.received_at)
        for delivery_id, e in rows
    }
