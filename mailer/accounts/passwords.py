"""Passwords: changing one's own, and resetting a forgotten one by email.

A reset is asked for on a form that answers the same, with the same work, whether or not the address has an
account: the web request records the request and queues one task (`mailer.send_password_reset`); the
transactional worker looks the address up and mails a link only to an active account (`reset_mail`). The link's
token is 256 random bits of which only the SHA-256 is kept: it cannot be guessed or forged, so it needs no
signature of its own; it works once, for RESET_VALID (30 minutes), and only while it is the account's newest.
Using it (`reset_password`) sets the new password, ends every sign-in and lifts a lockout, and signs nobody in:
the person signs in with the new password, and their second factor, as always.

An account that signs in through single sign-on has no local password (an empty hash): changing needs a
current password so is refused, and a reset by email sets one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime
from typing import Annotated

from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import AfterValidator, Field, ValidationInfo, field_validator
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import audit
from ..audit import Actor
from ..config import Settings
from ..db import after_commit
from ..errors import InvalidInput, NotFound
from ..feedback import verp
from ..inputs import Input, parse
from ..models import AdminSession, AdminUser, ExternalIdentity, PasswordReset, email_key, utcnow
from ..render import team_message
from . import _address, _hasher, _long_enough, lockout

RESET_VALID = timedelta(minutes=30)
# Reset mails one account gets in an hour at most, however often the form is sent (each form is also limited
# per client address): enough for a person, too few to fill an inbox.
RESETS_PER_HOUR = 3
NewPassword = Annotated[str, Field(max_length=1024), AfterValidator(_long_enough)]


def _same_again(confirm: str, info: ValidationInfo) -> str:
    if "new_password" in info.data and confirm != info.data["new_password"]:
        raise ValueError("The two new passwords are not the same")
    return confirm


class PasswordChange(Input):
    """A signed-in member's new password, with their current one and the new one typed twice."""

    current_password: Annotated[str, Field(max_length=1024)] = ""
    new_password: NewPassword
    confirm_password: Annotated[str, Field(max_length=1024)] = ""

    @field_validator("confirm_password")
    @classmethod
    def _typed_twice(cls, confirm: str, info: ValidationInfo) -> str:
        return _same_again(confirm, info)


class ResetRequest(Input):
    """The "Forgotten your password?" form: an address."""

    email: Annotated[str, AfterValidator(_address)]


class NewPasswordInput(Input):
    """The password set with a reset link, typed twice."""

    new_password: NewPassword
    confirm_password: Annotated[str, Field(max_length=1024)] = ""

    @field_validator("confirm_password")
    @classmethod
    def _typed_twice(cls, confirm: str, info: ValidationInfo) -> str:
        return _same_again(confirm, info)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def end_sign_ins(session: Session, user_id: int, reason: str, *, keep: int | None = None) -> int:
    """End every live sign-in of an account (but `keep`, the one asking); how many ended."""
    query = update(AdminSession).where(AdminSession.user_id == user_id, AdminSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(AdminSession.id != keep)
    return session.execute(query.values(ended_at=utcnow(), ended_reason=reason)).rowcount


# --- changing it -----------------------------------------------------------------------------------------


def change_password(
    session: Session, user: AdminUser, data: Mapping | PasswordChange, *, current_sign_in: int | None, actor: Actor
) -> int:
    """Set a signed-in member's new password, once their current one is right (InvalidInput on
    `current_password` otherwise; the MIN_PASSWORD rule on `new_password`). Their other sign-ins end; this one
    goes on. Returns how many ended. Audited as `user.password_change`."""
    change = parse(PasswordChange, data)
    if not user.has_password:
        raise InvalidInput(
            {
                "current_password": "Your account has no password here (you sign in with your NHS account): "
                "use 'Forgotten your password?' on the sign-in page to set one"
            }
        )
    try:
        _hasher.verify(user.password_hash, change.current_password)
    except (VerificationError, InvalidHashError):
        raise InvalidInput({"current_password": "Your current password is not right"}) from None
    if change.new_password == change.current_password:
        raise InvalidInput({"new_password": "Choose a password different from your current one"})
    user.password_hash = _hasher.hash(change.new_password)
    ended = end_sign_ins(session, user.id, "password_change", keep=current_sign_in)
    audit.record(session, actor, "user.password_change", user, sign_ins_ended=ended)
    session.flush()
    return ended


# --- resetting it by email -------------------------------------------------------------------------------


def request_reset(session: Session, data: Mapping | ResetRequest, *, actor: Actor) -> None:
    """ "Email me a reset link": the same record and the same task whatever the address (InvalidInput only for
    something that is no address); the task looks it up. Audited as `user.password_reset_request`."""
    wanted = parse(ResetRequest, data)
    audit.record(session, actor, "user.password_reset_request", None, email=wanted.email)
    from ..tasks import enqueue, send_password_reset  # the task module imports the rooms, not the other way

    after_commit(session, enqueue, send_password_reset, wanted.email)


@dataclass
class ResetMail:
    """One reset link's message, ready for the wire."""

    envelope_from: str
    recipient: str
    data: bytes


def reset_mail(session: Session, address: str, settings: Settings) -> ResetMail | None:
    """The task's part: for an active account with this address, a new reset link (earlier unused ones stop
    working) and its message; None for an address with no active account, or one sent RESETS_PER_HOUR this
    hour. Audited as `user.password_reset_sent`."""
    user = session.scalar(select(AdminUser).where(AdminUser.email == email_key(address)))
    if user is None or not user.active or _signs_in_through_the_provider(session, user):
        return None
    now = utcnow()
    recent = session.scalar(
        select(func.count())
        .select_from(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.created_at > now - timedelta(hours=1))
    )
    if recent >= RESETS_PER_HOUR:
        return None
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)  # superseded: only the newest link works
    )
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordReset(user_id=user.id, token_hash=_token_hash(token), created_at=now, expires_at=now + RESET_VALID)
    )
    audit.record(session, audit.SYSTEM, "user.password_reset_sent", user, email=user.email)
    session.flush()
    return _message(user, f"{settings.base_url}/admin/reset/{token}", settings)


def _signs_in_through_the_provider(session: Session, user: AdminUser) -> bool:
    """An account linked to the OpenID provider gets no password by mail: one would outlive the account being
    switched off in Entra ID, where the trust ends people's access."""
    return session.scalar(select(ExternalIdentity.id).where(ExternalIdentity.user_id == user.id).limit(1)) is not None


def _message(user: AdminUser, reset_url: str, settings: Settings) -> ResetMail:
    subject = "Reset your Trust Matters mailer password"
    # Its own envelope sender below, so a bounce of it never counts against a subscriber or an issue.
    message = team_message(
        settings,
        template="password_reset",
        subject=subject,
        preheader="Someone asked to reset your password. If it was you, use the link within 30 minutes.",
        extra={"reset_url": reset_url, "minutes": int(RESET_VALID.total_seconds() // 60), "email": user.email},
    )
    stamp = utcnow()
    data = message.fill(
        {
            "to": user.email,
            "date": format_datetime(stamp),
            "message_id": f"reset-{user.id}-{int(stamp.timestamp())}-{secrets.token_hex(4)}@{settings.mail_domain}",
        }
    )
    return ResetMail(verp.envelope_for_person(None, settings, message.envelope_from), user.email, data)


def reset_for(session: Session, token: str) -> PasswordReset:
    """The live reset this link's token names (unused, not expired, its account active); NotFound otherwise.
    Reading it changes nothing (mail scanners open links)."""
    row = session.scalar(select(PasswordReset).where(PasswordReset.token_hash == _token_hash(token or "")))
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        raise NotFound("This link to reset your password has expired or has been used.")
    user = session.get(AdminUser, row.user_id)
    if user is None or not user.active:
        raise NotFound("This link to reset your password has expired or has been used.")
    return row


def reset_password(session: Session, token: str, data: Mapping | NewPasswordInput) -> AdminUser:
    """Use a reset link: set the new password, end every sign-in, lift a lockout. Once only (NotFound after,
    as for an expired link); InvalidInput for a password that breaks the rules (the link still works). Signs
    nobody in. Audited as `user.password_reset`."""
    wanted = parse(NewPasswordInput, data)
    row = reset_for(session, token)
    taken = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == row.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # used by a second browser a moment ago
        raise NotFound("This link to reset your password has expired or has been used.")
    user = session.get(AdminUser, row.user_id)
    user.password_hash = _hasher.hash(wanted.new_password)
    ended = end_sign_ins(session, user.id, "password_reset")
    lockout.clear(session, user.email)
    audit.record(
        session, Actor("public", None, "a password reset link"), "user.password_reset", user, sign_ins_ended=ended
    )
    session.flush()
    return user
