"""Team members' accounts at an OpenID provider (single sign-on): which account an ID token signs in."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .admin import AdminUser
from .base import Base, UTCDateTime, utcnow


class ExternalIdentity(Base):
    """One person at one OpenID provider, linked to the team member's account it signs in to.

    Keyed on the provider's issuer and the token's subject (Entra ID: the `oid` object id, the same in every
    application of the tenant; elsewhere `sub`), never on the email address: an address can be renamed or given
    to someone else at the provider, the issuer and subject cannot."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id"), index=True)
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[AdminUser] = relationship()
