"""Imports: one row per CSV import, with its counts, so the team can see who imported what and when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Json, UTCDateTime, utcnow


class Import(Base):
    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str | None] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))  # admin, api
    admin_user_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, finished, failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # imported, updated, unchanged, skipped, errors, rows
    counts: Mapped[dict] = mapped_column(Json, default=dict)
    # The first rows that were reported (errors and skips), for the report page.
    report: Mapped[list] = mapped_column(Json, default=list)
