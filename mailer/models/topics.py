"""Topics people subscribe to (Trust Matters, Project Fusion updates, ...), managed by the team."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime

# The topics a new database starts with (schema.seed_topics); the team adds, renames and retires topics after.
# Stable slugs: the API, CSV imports and segments name topics by these, so they never change.
SEED_TOPICS: list[tuple[str, str, str]] = [
    (
        "trust-matters",
        "Trust Matters",
        "Our regular newsletter: news, stories and what is changing across our services.",
    ),
    (
        "project-fusion",
        "Project Fusion updates",
        "How the plan to bring community, mental health and learning disability services together is progressing.",
    ),
    (
        "get-involved",
        "Get involved and events",
        "Community conversations, engagement events and ways to have your say.",
    ),
    ("careers", "Careers", "Jobs, training and opportunities to work with us."),
    ("sustainability", "Sustainability", "Our work towards a greener NHS."),
]


# Topic ids must fit Subscriber.topic_mask, a signed 64-bit integer holding bit 1 << id; a CHECK says so. A retired
# topic keeps its id (its subscriptions are history), so this is how many topics can ever be created (README,
# "Topics and areas").
MAX_TOPIC_ID = 62


class Topic(Base):
    __tablename__ = "topics"
    __table_args__ = (CheckConstraint(f"id BETWEEN 1 AND {MAX_TOPIC_ID}", name="id_fits_topic_mask"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Retired: offered to nobody, sent to nobody, its subscriptions kept as history; restoring clears it.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def retired(self) -> bool:
        return self.retired_at is not None
