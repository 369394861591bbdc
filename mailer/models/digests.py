"""Digest runs: one per (frequency, period), and one row per subscriber in it, processed once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, Json, UTCDateTime, utcnow


class DigestRun(Base):
    __tablename__ = "digest_runs"
    __table_args__ = (UniqueConstraint("frequency", "period", name="uq_digest_runs_frequency_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frequency: Mapped[str] = mapped_column(String(16))  # weekly, monthly
    period: Mapped[str] = mapped_column(String(16))  # 2026-W48, 2026-11
    # Updates published up to this moment are in the run; the next run starts from here.
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="planning")  # planning, sending, done
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    subscribers: Mapped[int] = mapped_column(Integer, default=0)
    emails: Mapped[int] = mapped_column(Integer, default=0)
    renders: Mapped[int] = mapped_column(Integer, default=0)


class DigestRunSubscriber(Base):
    """A subscriber's place in a run: unique, so a second beat or a retry never gives them a second digest."""

    __tablename__ = "digest_run_subscribers"
    __table_args__ = (
        UniqueConstraint("run_id", "subscriber_id", name="uq_digest_run_subscribers_run_subscriber"),
        Index("ix_digest_run_subscribers_subscriber", "subscriber_id", "cutoff"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("digest_runs.id"))
    subscriber_id: Mapped[int] = mapped_column(Integer)
    # The updates they get (ids, in order); empty: nothing new, no email.
    update_ids: Mapped[list] = mapped_column(Json, default=list)
    # The topics this digest covered for them: the next digest of each starts after this run's cutoff.
    topic_ids: Mapped[list] = mapped_column(Json, default=list)
    # The email (an issue of kind digest) that carries this content; None when there was nothing new.
    issue_id: Mapped[int | None] = mapped_column(Integer)
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
