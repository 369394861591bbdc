"""Signing in to the admin: a password, then a code when the account has a second factor.

Between the two steps a person is only half signed in: the browser holds a `Pending` (in Flask's signed
cookie) naming the account, when the password was right and a stamp of the account's credentials. No sign-in
row exists yet, and the admin's pages accept only a live sign-in row (web/sessions.py), so a half-signed-in
browser reaches no admin page: only the code page, or, when MFA_REQUIRED and the account has no factor, the
enrolment page. It lasts PENDING_FOR, and a password change, reset or factor change in the meantime voids it.

`open_sign_in` is the one step that makes someone signed in (a sign-in row, its audit row, the lockout count
forgotten): every way in ends there, a password alone, password and code, an enrolment just finished, and any
other way of proving who someone is (single sign-on calls it too, naming its `method`).

Each failure, wrong password or wrong code, counts against the address (lockout.py) and is in the audit log,
as is every refusal while locked and each lockout itself.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..audit import Actor
from ..config import Settings
from ..models import AdminUser, email_key, utcnow
from . import _DUMMY_HASH, _hasher, factors, lockout, start_session

# How long the second step (or a forced enrolment) may take after the password.
PENDING_FOR = timedelta(minutes=10)
SIGN_IN_PAGE = Actor("public", None, "the sign-in page")


@dataclass(frozen=True)
class Pending:
    """Half signed in: whose password was right, when, and what they must do next ("code" or "enrol")."""

    user_id: int
    stage: str
    since: float  # a POSIX time
    stamp: str

    def to_cookie(self) -> dict:
        return {"user": self.user_id, "stage": self.stage, "since": self.since, "stamp": self.stamp}

    @classmethod
    def from_cookie(cls, raw) -> Pending | None:
        try:
            return cls(int(raw["user"]), str(raw["stage"]), float(raw["since"]), str(raw["stamp"]))
        except (TypeError, KeyError, ValueError):
            return None


@dataclass(frozen=True)
class Attempt:
    """What one step of signing in came to.

    `outcome`: "signed_in" (`secret` is the new sign-in's cookie secret), "pending" (`pending` for the browser
    to keep), "refused" (wrong; nothing says whether the account exists), "locked" (until `locked_until`),
    "expired" (the half sign-in is too old or void: start again)."""

    outcome: str
    user: AdminUser | None = None
    secret: str | None = None
    pending: Pending | None = None
    locked_until: datetime | None = None


def _stamp(user: AdminUser) -> str:
    """Changes whenever the password or the second factor does, so a half sign-in from before is void."""
    material = f"{user.id}|{user.password_hash}|{user.totp_enabled_at}"
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def _password_matches(user: AdminUser | None, password: str) -> bool:
    # Verified against a dummy hash when there is no account or no password (single sign-on only), so the
    # answer takes the same time either way.
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password or "")
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and bool(user.password_hash) and user.active


def sign_in_with_password(
    session: Session, email: str, password: str, *, mfa_required: bool, now: datetime | None = None
) -> Attempt:
    """The first step. Signed in at once when the account has no second factor and none is required; pending
    ("code", or "enrol" when MFA_REQUIRED and it has none) otherwise. A wrong password, an unknown address, a
    switched-off account and an account without a password are all the same "refused"."""
    now = now or utcnow()
    address = email_key(email or "")[:320]
    user = session.scalar(select(AdminUser).where(AdminUser.email == address)) if address else None
    until = lockout.locked_until(session, address, now)
    if until is not None:
        audit.record(session, SIGN_IN_PAGE, "user.login_failed", user, email=address, step="password", reason="locked")
        return Attempt("locked", locked_until=until)
    if not _password_matches(user, password):
        return _failed(session, address, user, "password", now)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    if user.has_second_factor:
        return Attempt("pending", user, pending=Pending(user.id, "code", now.timestamp(), _stamp(user)))
    if mfa_required:
        return Attempt("pending", user, pending=Pending(user.id, "enrol", now.timestamp(), _stamp(user)))
    return Attempt("signed_in", user, secret=open_sign_in(session, user, method="password"))


def pending_user(
    session: Session, pending: Pending | None, stage: str, now: datetime | None = None
) -> AdminUser | None:
    """The account a half sign-in names, while it is at `stage`, recent, and its credentials unchanged."""
    now = now or utcnow()
    if (
        pending is None
        or pending.stage != stage
        or not 0 <= now.timestamp() - pending.since < PENDING_FOR.total_seconds()
    ):
        return None
    user = session.get(AdminUser, pending.user_id)
    if user is None or not user.active or not secrets.compare_digest(_stamp(user), pending.stamp):
        return None
    return user


def sign_in_with_code(
    session: Session, pending: Pending | None, code: str, settings: Settings, now: datetime | None = None
) -> Attempt:
    """The second step: a TOTP code (not one used before) or an unused recovery code. A wrong one counts
    against the account like a wrong password."""
    now = now or utcnow()
    user = pending_user(session, pending, "code", now)
    if user is None:
        return Attempt("expired")
    until = lockout.locked_until(session, user.email, now)
    if until is not None:
        audit.record(session, SIGN_IN_PAGE, "user.login_failed", user, email=user.email, step="code", reason="locked")
        return Attempt("locked", locked_until=until)
    factor = factors.check_code(session, user, code, settings, now)
    if not factor:
        return _failed(session, user.email, user, "code", now)
    if factor == "recovery_code":
        left = factors.recovery_codes_left(session, user.id)
        audit.record(session, Actor.user(user), "user.recovery_code_used", user, left=left)
    return Attempt("signed_in", user, secret=open_sign_in(session, user, method="password", second_factor=factor))


def enrol_and_sign_in(
    session: Session, pending: Pending | None, data: dict, settings: Settings
) -> tuple[Attempt, list[str]]:
    """A forced enrolment's last step (MFA_REQUIRED): the code from the new factor switches it on and signs the
    person in. Returns the attempt ("expired" when the half sign-in is void) and the ten recovery codes.
    InvalidInput for a wrong code."""
    user = pending_user(session, pending, "enrol")
    if user is None:
        return Attempt("expired"), []
    codes = factors.confirm_enrolment(session, user, data, settings, actor=Actor.user(user))
    return Attempt(
        "signed_in", user, secret=open_sign_in(session, user, method="password", second_factor="totp")
    ), codes


def open_sign_in(session: Session, user: AdminUser, *, method: str, second_factor: str | None = None) -> str:
    """Sign `user` in, their identity proven by `method` ("password", or another way in such as single sign-on)
    and `second_factor` ("totp", "recovery_code" or None): a new sign-in row, its `user.login` audit row, the
    account's failed sign-ins forgotten. Returns the secret for the browser's cookie (web.sessions.begin)."""
    secret = start_session(session, user)
    user.last_login_at = utcnow()
    lockout.clear(session, user.email)
    audit.record(session, Actor.user(user), "user.login", user, method=method, second_factor=second_factor)
    return secret


def _failed(session: Session, address: str, user: AdminUser | None, step: str, now: datetime) -> Attempt:
    until = lockout.record_failure(session, address, now)
    audit.record(session, SIGN_IN_PAGE, "user.login_failed", user, email=address, step=step)
    if until is None:
        return Attempt("refused")
    audit.record(session, SIGN_IN_PAGE, "user.lockout", user, email=address, until=until.isoformat(timespec="seconds"))
    return Attempt("locked", locked_until=until)
