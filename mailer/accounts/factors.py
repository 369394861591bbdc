"""The second factor: TOTP codes from an authenticator app (pyotp, RFC 6238), and ten one-time recovery codes.

Enrolling: `begin_enrolment` makes a secret (or shows again the one not yet confirmed) with its otpauth:// URI
as a QR code (segno, SVG) and as text for those who cannot scan; `confirm_enrolment` switches the factor on only
when a code from the app is typed back, and gives ten recovery codes, shown on that one answer. `check_code` is
the sign-in's second step. `reset_factor` is an admin's, for someone who lost their phone and their codes.

How the secret is kept: encrypted (Fernet, from `cryptography`) with a key derived from SECRET_KEY by HKDF, and
never shown again once the factor is on. Decryption also tries SECRET_KEY_FALLBACKS, and a secret read with a
retired key is encrypted again with the current one when it is next used, so rotating SECRET_KEY as the README
says keeps everyone's factor. A copy of the database alone gives nobody's codes. Recovery codes carry 80 random
bits each, so their SHA-256 is as safe to keep as an API token's.

No code works twice: the time step of the last code accepted is kept, and a code is taken only for a later step,
with a compare-and-set, so the same code typed in two browsers at once lets in one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import AfterValidator, Field
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from .. import audit
from ..audit import Actor
from ..config import Settings
from ..errors import Conflict, InvalidInput, NotFound
from ..inputs import Input, parse
from ..models import MAX_ID, AdminSession, AdminUser, RecoveryCode, utcnow

ISSUER = "Trust Matters mailer"
RECOVERY_CODES = 10
# Codes a step either side of now are taken too: a phone's clock a little off, a code typed as it changed.
VALID_WINDOW = 1
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32: no 0/1/8/9 to mistake for O, I, l or B


class FactorUnreadable(Exception):
    """The secret was encrypted with a key no longer configured (SECRET_KEY changed without a fallback)."""


# --- what they take -------------------------------------------------------------------------------------


def _totp_code(code: str) -> str:
    code = re.sub(r"\s", "", code)
    if not re.fullmatch(r"[0-9]{6}", code):
        raise ValueError("Enter the 6-digit code your authenticator app shows")
    return code


def _any_code(code: str) -> str:
    code = re.sub(r"[\s-]", "", code).lower()
    if not code:
        raise ValueError("Enter the 6-digit code from your authenticator app, or one of your recovery codes")
    return code


class EnrolmentCode(Input):
    """The code the authenticator app shows, typed back to switch the factor on."""

    code: Annotated[str, Field(max_length=64), AfterValidator(_totp_code)]


class SecondStepCode(Input):
    """Sign-in's second step: a code from the app, or one of the recovery codes."""

    code: Annotated[str, Field(max_length=64), AfterValidator(_any_code)]


# --- keeping the secret ----------------------------------------------------------------------------------


def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"trust-matters totp secret").derive(
        key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _encrypt(settings: Settings, secret: str) -> str:
    return _fernet(settings.secret_key).encrypt(secret.encode()).decode()


def _decrypt(settings: Settings, stored: str) -> tuple[str, bool]:
    """The secret, and whether it was read with a retired key (so should be encrypted again)."""
    try:
        return _fernet(settings.secret_key).decrypt(stored.encode()).decode(), False
    except InvalidToken:
        pass
    if settings.secret_key_fallbacks:
        try:
            older = MultiFernet([_fernet(k) for k in settings.secret_key_fallbacks])
            return older.decrypt(stored.encode()).decode(), True
        except InvalidToken:
            pass
    raise FactorUnreadable("the second factor's secret was encrypted with a key that is not configured")


# --- enrolling -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret as text, the otpauth:// URI and that URI as a QR code."""

    secret: str
    uri: str
    qr_svg: str  # a data: URI of the QR code's SVG, for an <img>

    @property
    def secret_in_groups(self) -> str:
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


def begin_enrolment(session: Session, user: AdminUser, settings: Settings) -> Enrolment:
    """The secret to enrol (the same until it is confirmed, so reloading the page shows the same QR code);
    Conflict when the account has a second factor already (an admin resets it first)."""
    if user.has_second_factor:
        raise Conflict("Your account has a second factor already. To use a new phone, ask an admin to reset it.")
    secret = None
    if user.totp_secret:
        try:
            secret, _old_key = _decrypt(settings, user.totp_secret)
        except FactorUnreadable:
            secret = None
    if secret is None:
        secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
        user.totp_secret = _encrypt(settings, secret)
        session.flush()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    qr = segno.make(uri, error="m")
    return Enrolment(secret=secret, uri=uri, qr_svg=qr.svg_data_uri(scale=5, border=2))


def confirm_enrolment(
    session: Session, user: AdminUser, data: dict | EnrolmentCode, settings: Settings, *, actor: Actor
) -> list[str]:
    """Switch the factor on once a code from it is typed back; returns the ten recovery codes (shown once, only
    their hashes kept). InvalidInput (on `code`) for a wrong code. Audited as `user.factor_enrol`."""
    typed = parse(EnrolmentCode, data)
    if user.has_second_factor:
        raise Conflict("Your account has a second factor already.")
    if not user.totp_secret:
        raise Conflict("Start again: the enrolment page shows a new code to scan.")
    try:
        secret, _old_key = _decrypt(settings, user.totp_secret)
    except FactorUnreadable as exc:
        raise Conflict("Start again: the enrolment page shows a new code to scan.") from exc
    now = utcnow()
    step = _matching_step(secret, typed.code, now)
    if step is None:
        raise InvalidInput({"code": "That code is not right: type the code your app shows now for this account"})
    user.totp_enabled_at, user.totp_last_step = now, step
    codes = _new_recovery_codes(session, user)
    audit.record(session, actor, "user.factor_enrol", user, factor="totp", recovery_codes=len(codes))
    return codes


def _new_recovery_codes(session: Session, user: AdminUser) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [
        "-".join("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(4)) for _ in range(4))
        for _ in range(RECOVERY_CODES)
    ]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hash(c)) for c in codes)
    session.flush()
    return codes


def _code_hash(code: str) -> str:
    return hashlib.sha256(re.sub(r"[\s-]", "", code).lower().encode()).hexdigest()


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is, within VALID_WINDOW of now, or None."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


# --- signing in with it ----------------------------------------------------------------------------------


def check_code(session: Session, user: AdminUser, code: str, settings: Settings, now: datetime | None = None) -> str:
    """Which second factor `code` passed, "totp" or "recovery_code", or "" when it is wrong, already used (a
    TOTP code of a step not after the last accepted, a recovery code used before) or unreadable. A TOTP secret
    read with a retired SECRET_KEY is encrypted again with the current one."""
    now = now or utcnow()
    code = re.sub(r"[\s-]", "", code or "").lower()
    if not user.has_second_factor or not code:
        return ""
    if re.fullmatch(r"[0-9]{6}", code):
        return "totp" if _take_totp(session, user, code, settings, now) else ""
    taken = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _code_hash(code), RecoveryCode.used_at.is_(None)
        )
        .values(used_at=now)
    )
    return "recovery_code" if taken.rowcount == 1 else ""


def _take_totp(session: Session, user: AdminUser, code: str, settings: Settings, now: datetime) -> bool:
    try:
        secret, old_key = _decrypt(settings, user.totp_secret or "")
    except FactorUnreadable:
        return False
    step = _matching_step(secret, code, now)
    if step is None:
        return False
    taken = session.execute(
        update(AdminUser)
        .where(
            AdminUser.id == user.id,
            AdminUser.totp_enabled_at.is_not(None),
            or_(AdminUser.totp_last_step.is_(None), AdminUser.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        return False
    session.refresh(user)
    if old_key:
        user.totp_secret = _encrypt(settings, secret)
    return True


def recovery_codes_left(session: Session, user_id: int) -> int:
    """How many of the account's recovery codes have not been used."""
    return session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )


# --- an admin's reset ------------------------------------------------------------------------------------


def reset_factor(session: Session, user_id: int, *, actor: Actor) -> AdminUser:
    """Take away someone's second factor and recovery codes (a lost phone): their sign-ins end, and they enrol
    again at their next sign-in (at once when MFA_REQUIRED). NotFound when there is no such account, Conflict
    when it has no factor. Audited as `user.factor_reset`."""
    user = session.get(AdminUser, user_id) if 0 < user_id <= MAX_ID else None
    if user is None:
        raise NotFound(f"There is no account {user_id}.")
    if not user.has_second_factor:
        raise Conflict(f"{user.email} has no second factor to reset.")
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    ended = session.execute(
        update(AdminSession)
        .where(AdminSession.user_id == user.id, AdminSession.ended_at.is_(None))
        .values(ended_at=utcnow(), ended_reason="factor_reset")
    ).rowcount
    audit.record(session, actor, "user.factor_reset", user, email=user.email, sign_ins_ended=ended)
    session.flush()
    return user
