"""Requests from the public's forms (sign up, "email me my link"), waiting for a worker to act on them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Json, UTCDateTime, utcnow

REQUEST_KINDS = ("subscribe", "manage_link")


class PublicRequest(Base):
    """One form post, kept only until a worker has acted on it (then deleted).

    The web request writes this row and nothing else, the same for every address, so neither the answer nor
    its timing can say whether we know the address; the worker does the lookups. A row whose task was lost
    (the broker was down) is picked up by the sweeper, so no sign-up is lost.
    """

    __tablename__ = "public_requests"
    # Ids travel in task messages: never hand a deleted row's id to a new one (SQLite would).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # What the form said, validated: address, and for a sign-up topics, name, area, audience, services,
    # frequency, channel and the hashed client address.
    payload: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
