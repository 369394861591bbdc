"""Where people live or work, as the team lists it: the one answer the sign-up form requires."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime

# The areas a new database starts with (migration 0017 writes them). Subscriber.area holds the slug, which never
# changes once created: segments, updates and exports name areas by it.
SEED_AREAS: list[tuple[str, str]] = [
    ("isle-of-wight", "Isle of Wight"),
    ("hampshire", "Hampshire"),
    ("southampton", "Southampton"),
    ("portsmouth", "Portsmouth"),
    ("elsewhere", "Somewhere else"),
]


class Area(Base):
    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Retired: no longer offered; people who chose it keep it (and segments and updates can still name it).
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def retired(self) -> bool:
        return self.retired_at is not None
