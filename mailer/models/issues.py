"""Newsletter issues: what the comms team writes and sends to a topic."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, Json, UTCDateTime, utcnow
from .content import Update
from .segments import Segment
from .topics import Topic

# draft → in_review (an editor submits) → approved (a publisher) → scheduled or sending → sent; a send can
# be paused (and resumed) or cancelled on the way. Editing an issue in review or approved makes it a draft again.
ISSUE_STATUSES = ("draft", "in_review", "approved", "scheduled", "sending", "paused", "sent", "cancelled")
EDITABLE = ("draft", "in_review", "approved")


class Issue(Base):
    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # newsletter (written in the composer), update (a published progress update, as it happens), digest
    kind: Mapped[str] = mapped_column(String(16), default="newsletter", server_default="newsletter")
    update_id: Mapped[int | None] = mapped_column(ForeignKey("updates.id"))
    digest_run_id: Mapped[int | None] = mapped_column(ForeignKey("digest_runs.id"))
    # Which updates a digest carries (a hash of their ids): one email per distinct content in a run.
    digest_key: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    preheader: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)  # Markdown (an issue written as one text block, or through the API)
    # The composer's blocks: [{"type": "heading"|"text"|"image"|"button"|"updates"|"divider", ...}]
    blocks: Mapped[list | None] = mapped_column(Json)
    # Its address in the public archive once sent: /news/<slug>
    slug: Mapped[str | None] = mapped_column(String(120), unique=True)
    # Its content as the archive page ("view in browser") shows it, rendered once when the send started:
    # what was sent, served as it is to every visitor instead of rendering the Markdown per view.
    archive_html: Mapped[str | None] = mapped_column(Text)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    # Optional: only the topic's subscribers who also match this segment's rules.
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))
    # The segment's rules when the send started, so the record says who it was for even if they change.
    audience_rules: Mapped[dict | None] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    send_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Last time a batch made progress; the sweeper re-enqueues work for a send that has gone quiet.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recipient_count: Mapped[int | None] = mapped_column(Integer)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why the send paused itself (the bounce or complaint figures that crossed a limit), shown on its page.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # Whether the send still pauses itself on bad figures: a publisher who resumes an auto-paused send has
    # looked at them and decided, so it does not pause again for the same reason.
    auto_pause: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    # When a scheduled issue is due; beat starts it (a polled row, not a Celery ETA, so it survives restarts).
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    topic: Mapped[Topic] = relationship()
    segment: Mapped[Segment | None] = relationship()
    progress_update: Mapped[Update | None] = relationship()
    # Set once the send starts: what every recipient gets (see FrozenContent).
    frozen: Mapped[FrozenContent | None] = relationship(uselist=False, lazy="select")


class FrozenContent(Base):
    """What an issue said and how it looked when its send started, kept for the whole send.

    Every batch, a resume after a pause, anyone added to the send later, the admin preview and the web version
    use this, never the issue's blocks, the updates or the templates as they are now: one issue is the same mail
    for everyone who gets it, whatever is published, edited or deployed meanwhile. Written once, never changed.
    """

    __tablename__ = "frozen_contents"

    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id"), primary_key=True)
    frozen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    subject: Mapped[str] = mapped_column(String(200))
    # The blocks with what they pulled in when the send started: each "latest updates" block's updates (ids,
    # titles, summaries and addresses as sent), a digest's updates by topic, each image's stored file and size.
    blocks: Mapped[list] = mapped_column(Json)
    # The email as MJML rendered it, with markers where each recipient's links go (`markers`: field → marker);
    # empty until rendered, which is at the start of the send or, for a send begun without the settings that
    # rendering needs, by the first worker to send it (in a transaction, so every worker uses the same).
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    markers: Mapped[dict | None] = mapped_column(Json)
    # The List-Id header's label and id as sent.
    list_label: Mapped[str | None] = mapped_column(String(200))
    list_id: Mapped[str | None] = mapped_column(String(255))
    rendered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
