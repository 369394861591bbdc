"""Who did what, and when: every state change by a person, a token or the system is recorded here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEvent


@dataclass(frozen=True)
class Actor:
    type: str  # user, token, system, public
    id: int | None = None  # the account's or the token's id
    label: str = ""
    # The team member behind the action: the signed-in account, or the person a token acts for. What is recorded
    # as written, submitted or approved by someone is this; None for the system, the public and ownerless tokens.
    person_id: int | None = None

    def __post_init__(self) -> None:
        if self.type == "user" and self.person_id is None:
            object.__setattr__(self, "person_id", self.id)  # a signed-in account is its own person

    @classmethod
    def user(cls, user) -> Actor:
        return cls("user", user.id, user.email)

    @classmethod
    def token(cls, token) -> Actor:
        """From an ApiToken row, or a mapping with its id and name and, when it has an owner, owner_id and
        owner_email."""
        if not isinstance(token, Mapping):
            owner = token.owner
            token = {
                "id": token.id,
                "name": token.name,
                "owner_id": owner and owner.id,
                "owner_email": owner and owner.email,
            }
        owner = token.get("owner_email")
        label = f"token {token['name']}" + (f" for {owner}" if owner else "")
        return cls("token", token["id"], label[:320], token.get("owner_id"))


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
