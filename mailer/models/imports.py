"""Imports: one row per CSV import, with its counts, so the team can see who imported what and when.

The uploaded file is kept in the database (`ImportChunk`, in pieces) until the import ends, so whichever
worker runs it, on whatever host, can read it; a worker records its progress with each batch it commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Json, UTCDateTime, utcnow

IMPORT_STATUSES = ("queued", "running", "finished", "failed")


class Import(Base):
    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str | None] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))  # admin, api
    admin_user_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued, running, finished, failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # rows, imported, updated, unchanged, skipped, error_count, truncated: what is committed so far
    counts: Mapped[dict] = mapped_column(Json, default=dict)
    # The first rows that were reported (errors and skips), for the report page.
    report: Mapped[list] = mapped_column(Json, default=list)
    # What the upload said for rows without a consent_source of their own.
    consent_source: Mapped[str | None] = mapped_column(String(500))
    encoding: Mapped[str] = mapped_column(String(16), default="utf-8-sig", server_default="utf-8-sig")
    size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # bytes uploaded
    # Progress, committed with each batch: the spreadsheet row the import has reached (the header is row 1)
    # and about how much of the file that is.
    last_row: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The worker running it (a random token) and when it last moved; how many times a worker took it up.
    claim: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failure: Mapped[str | None] = mapped_column(Text)  # why a failed import stopped


class ImportChunk(Base):
    """A piece of an uploaded file, in order; deleted when its import ends."""

    __tablename__ = "import_chunks"

    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
