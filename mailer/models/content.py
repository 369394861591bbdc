"""Uploaded images and progress updates: what issues and the archive are made of besides text."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, Json, UTCDateTime, utcnow
from .topics import Topic


class Media(Base):
    """An uploaded image, stored once by content hash under var/media (or a bucket)."""

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(255))  # what the uploader called it
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def stored_name(self) -> str:
        extension = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
        return f"{self.sha256}.{extension.get(self.content_type, 'bin')}"


class Update(Base):
    """A short progress update: shown in the archive, pulled into issues, collected by digests."""

    __tablename__ = "updates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")  # Markdown
    # The body as HTML, rendered once when it was published; the update's page serves it as it is.
    archive_html: Mapped[str | None] = mapped_column(Text)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    areas: Mapped[list] = mapped_column(Json, default=list)  # area slugs it concerns; empty: everywhere
    services: Mapped[int] = mapped_column(Integer, default=0)  # service bits it concerns; 0: all
    link: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft, published
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    topic: Mapped[Topic] = relationship()
