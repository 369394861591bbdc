"""What the world told us after a message left: bounces (DSNs, provider receipts, RCPT refusals) and complaints.

One row per report × recipient, keyed so the same report read twice (an SMTP retry, an IMAP poll that saw it
before, a webhook replayed) is one event. Attributed to a delivery row when the report names one (the VERP
Return-Path, the Message-ID, a provider's message id), else to a subscriber by address, else kept unattributed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, UTCDateTime, utcnow

# bounce: the mailbox or the message was refused after the relay accepted it (or at RCPT time: source "rcpt");
# complaint: the person reported it as spam (an ARF report, a provider's complaint notice).
FEEDBACK_KINDS = ("bounce", "complaint")
SEVERITIES = ("hard", "soft")
# Where a report came in: rcpt (refused while we sent), smtp (our bounce receiver), imap (the polled mailbox),
# ses (Amazon SNS notification), notify (GOV.UK Notify callback), admin (a person added it).
FEEDBACK_SOURCES = ("rcpt", "smtp", "imap", "ses", "notify", "admin")
# Recipients of an issue the team can pick out: whose message bounced, who reported it as spam, who has left.
RECIPIENT_FILTERS = ("bounced", "complained", "left")


class FeedbackEvent(Base):
    __tablename__ = "feedback_events"
    __table_args__ = (
        Index("ix_feedback_events_subscriber_received", "subscriber_id", "received_at"),
        Index("ix_feedback_events_issue_kind", "issue_id", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What makes a report the same report: the source and its own id (a DSN's Message-ID and the recipient,
    # an SNS MessageId, a Notify notification id and status). Unique: a replay records nothing new.
    key: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str | None] = mapped_column(String(8))
    issue_id: Mapped[int | None] = mapped_column(Integer)
    delivery_id: Mapped[int | None] = mapped_column(BigId)
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
    # The RFC 3463 status ("5.1.1") or the provider's status ("permanent-failure"), and the server's words.
    status: Mapped[str | None] = mapped_column(String(32))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    # The report as it came (complaints always; bounces up to REPORT_KEPT bytes), for whoever has to answer it.
    report: Mapped[str | None] = mapped_column(Text)
    # What we did about it: "suppressed", "counted" (a soft bounce below the limit), "unattributed", "ignored".
    outcome: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
