"""GOV.UK Notify's delivery receipts, as Notify posts them to POST /api/v1/hooks/notify.

Notify calls the service's callback URL with `Authorization: Bearer <NOTIFY_CALLBACK_TOKEN>` and a JSON body
(id, reference, to, status, …) once a message's fate is known. The reference is our Message-ID (see
transports.notify), which names the issue and the person. permanent-failure: the address does not exist (a hard
bounce); temporary-failure: the inbox was full or the server down for days (a soft bounce); technical-failure:
Notify's own trouble, never counted against the person; delivered: nothing to do.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from ..config import Settings
from .attribution import delivery_named
from .commands import Recorded, Report, record

log = logging.getLogger(__name__)

STATUSES = ("delivered", "permanent-failure", "temporary-failure", "technical-failure")
SEVERITY = {"permanent-failure": "hard", "temporary-failure": "soft"}


class Receipt(BaseModel):
    """A GOV.UK Notify delivery receipt (the fields we read; Notify sends more, which are kept out)"""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, hide_input_in_errors=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(description="Notify's notification id")
    reference: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        None, description="Our reference: the message's Message-ID"
    )
    to: Annotated[str, StringConstraints(min_length=1, max_length=320)] = Field(description="The recipient")
    status: Literal[STATUSES] = Field(description="What became of the message")
    notification_type: Annotated[str, StringConstraints(max_length=20)] | None = None


def token_accepted(header: str, settings: Settings) -> bool | None:
    """Whether `Authorization: Bearer …` carries NOTIFY_CALLBACK_TOKEN (compared in constant time); None when no
    token is set, so callbacks are not taken at all."""
    expected = settings.deliverability.notify_callback_token
    if not expected:
        return None
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@dataclass
class Heard:
    recorded: Recorded | None
    said: str


def receive(session: Session, receipt: Receipt, settings: Settings) -> Heard:
    """Act on one receipt: a bounce recorded (hard or soft) for a failure that is the address's, nothing else."""
    if receipt.status == "delivered":
        return Heard(None, "Delivered: nothing to do")
    if receipt.status == "technical-failure":
        log.warning("GOV.UK Notify could not send %s (reference %s): technical failure", receipt.id, receipt.reference)
        return Heard(None, "Technical failure: Notify's, not counted against the person")
    report = Report(
        source="notify",
        kind="bounce",
        key=f"notify:{receipt.id}:{receipt.status}",
        severity=SEVERITY[receipt.status],
        delivery_id=delivery_named(session, receipt.reference, receipt.to, settings),
        email=receipt.to,
        status=receipt.status,
        diagnostic=f"GOV.UK Notify: {receipt.status}",
        report=receipt.model_dump_json(),
    )
    recorded = record(session, report, settings)
    return Heard(recorded, f"{receipt.status}: {recorded.outcome}" if recorded.new else "Heard before: nothing new")
