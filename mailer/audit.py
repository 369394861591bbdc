"""Who did what, and when: every state change by a person, a token or the system is recorded here."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEvent


@dataclass(frozen=True)
class Actor:
    type: str  # user, token, system, public
    id: int | None = None
    label: str = ""

    @classmethod
    def user(cls, user) -> Actor:
        return cls("user", user.id, user.email)

    @classmethod
    def token(cls, token: dict) -> Actor:
        return cls("token", token["id"], f"token {token['name']}")


SYSTEM = Actor("system", None, "system")


def record(session: Session, actor: Actor | None, action: str, target=None, **details) -> None:
    """Add one audit row in the caller's transaction: it is kept exactly when the change is."""
    actor = actor or SYSTEM
    session.add(
        AuditEvent(
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label,
            action=action,
            target_type=target.__tablename__.rstrip("s") if target is not None else None,
            target_id=getattr(target, "id", None),
            details={k: v for k, v in details.items() if v is not None},
        )
    )


def recent(session: Session, *, action: str | None = None, before: int | None = None, limit: int = 100):
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action.like(f"{action}%"))
    if before:
        query = query.where(AuditEvent.id < before)
    return list(session.scalars(query))
