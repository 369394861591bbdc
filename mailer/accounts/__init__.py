"""The comms team's accounts (argon2 passwords), their sign-ins and API tokens (both stored as SHA-256 only),
each token acting for one team member.

Commands, one per use case, which the team page and the `mailer` command call: `add_member`, `change_member`,
`issue_token` and `revoke_token`. Each checks its input with its model (`NewMember`, `MemberChange`, `NewToken`,
`TokenRevocation`), writes, and records its audit row as the actor given, so whichever adapter asked, the change
is in the audit log. Under them, `create_admin`, `create_token` and `change_account` write the rows with no audit
row: the commands use them, and so do tests setting up accounts. Sign-in and sign-out record their own rows.

The rest of the room, one module a concern: `signin` (a password, then a code; `open_sign_in`, the one step
that makes someone signed in, whatever proved who they are), `factors` (TOTP and recovery codes), `passwords`
(change, and reset by email) and `lockout` (failed sign-ins per address).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from argon2 import PasswordHasher
from pydantic import AfterValidator, Field, model_validator
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from .. import audit
from ..audience.emails import normalise_email
from ..audit import Actor
from ..errors import Conflict, InvalidInput, NotFound
from ..inputs import Input, parse
from ..models import MAX_ID, ROLES, AdminSession, AdminUser, ApiToken, utcnow

_hasher = PasswordHasher()
# Verifying against this when the email is unknown keeps login time the same either way.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MIN_PASSWORD = 12
ROLE_RANK = {"editor": 1, "publisher": 2, "admin": 3}
# A sign-in ends this long after it began, however busy; SESSION_IDLE_MINUTES ends it sooner when unused.
SESSION_MAX_AGE = timedelta(hours=8)
# How stale last_seen_at may get before a request writes it again: one write a minute per sign-in, not per request.
SESSION_TOUCH_EVERY = timedelta(minutes=1)
# Ended sign-ins are kept this long (who was signed in when), then deleted when that person next signs in.
SESSION_KEEP = timedelta(days=90)


def has_role(role: str | None, needed: str) -> bool:
    """Roles are ordered: an admin can do what a publisher can, a publisher what an editor can."""
    return ROLE_RANK.get(role or "", 0) >= ROLE_RANK[needed]


# --- what the commands take ------------------------------------------------------------------------------


def _known_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"Role must be one of {', '.join(ROLES)}")
    return role


def _address(email: str) -> str:
    try:
        return normalise_email(email).lower()
    except InvalidInput as exc:
        raise ValueError(exc.sentences) from None


def _long_enough(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"Password must be at least {MIN_PASSWORD} characters")
    return password


def _named(name: str) -> str:
    if not name.strip():
        raise ValueError("Give the token a name")
    return name.strip()


def _someone(owner: int | str | None) -> int | str:
    if owner is None:
        raise ValueError("Choose the team member the token is for")
    return owner


Role = Annotated[str, AfterValidator(_known_role)]


class NewMember(Input):
    """A team member to add: their address (their sign-in), first password, role and, if given, name."""

    email: Annotated[str, AfterValidator(_address)]
    password: Annotated[str, AfterValidator(_long_enough)]
    role: Role
    name: Annotated[str, Field(max_length=200)] = ""


class MemberChange(Input):
    """A new role, or the account switched off (`active` false) or on again; either or both."""

    role: Role | None = None
    active: bool | None = None


class TokenFields(Input):
    """A token's name (what uses it) and role (None: its owner's)."""

    name: Annotated[str, Field(max_length=120), AfterValidator(_named)]
    role: Role | None = None


class NewToken(TokenFields):
    """A token for a team member, named by their account's id (the team page) or address (the CLI)."""

    owner: Annotated[int | str | None, Field(validate_default=True), AfterValidator(_someone)] = None


class TokenRevocation(Input):
    """The token to revoke: by its id (the team page) or by the prefix `mailer token list` shows (the CLI)."""

    id: int | None = None
    prefix: str | None = None

    @model_validator(mode="after")
    def _one_of_them(self):
        if (self.id is None) == (self.prefix is None):
            raise ValueError("Name the token by its id or by its prefix")
        return self


# --- the commands ----------------------------------------------------------------------------------------


def add_member(session: Session, data: Mapping | NewMember, *, actor: Actor) -> AdminUser:
    """A new team member who can sign in at /admin; InvalidInput names what is wrong, Conflict if the address
    has an account already. Audited as `user.create`."""
    member = parse(NewMember, data)
    user = _new_account(session, member)
    audit.record(session, actor, "user.create", user, email=user.email, role=user.role)
    return user


def change_member(session: Session, user_id: int, data: Mapping | MemberChange, *, actor: Actor) -> AdminUser:
    """Change someone's role, or switch their account off or on; NotFound when there is no such account.
    The last active admin stays an admin (Conflict). Audited as `user.change`."""
    change = parse(MemberChange, data)
    user = _changed_account(session, user_id, change)
    audit.record(session, actor, "user.change", user, role=change.role, active=change.active)
    return user


def issue_token(session: Session, data: Mapping | NewToken, *, actor: Actor) -> tuple[ApiToken, str]:
    """A new API token for a team member: the row and the token itself, which is never stored or shown again.
    Its role defaults to the owner's and may not be above it. Audited as `token.create`."""
    wanted = parse(NewToken, data)
    if isinstance(wanted.owner, str):
        owner = account_for(session, wanted.owner)
    else:
        owner = session.get(AdminUser, wanted.owner) if 0 < wanted.owner <= MAX_ID else None
        if owner is None:
            raise InvalidInput({"owner": "Choose the team member the token is for"})
    row, token = _new_token(session, wanted, owner)
    audit.record(session, actor, "token.create", row, name=row.name, role=row.role, owner=owner.email)
    return row, token


def revoke_token(session: Session, data: Mapping | TokenRevocation, *, actor: Actor) -> ApiToken | None:
    """Revoke a live token, named by id or by the prefix it is shown with (e.g. tm_AbCdE); it stops working
    now. By id: NotFound when there is none, and None when it was revoked already (nothing changes). By prefix:
    InvalidInput when no live token has it, Conflict when more than one does. Audited as `token.revoke`."""
    which = parse(TokenRevocation, data)
    if which.id is not None:
        row = session.get(ApiToken, which.id) if 0 < which.id <= MAX_ID else None
        if row is None:
            raise NotFound(f"There is no token {which.id}.")
        if row.revoked_at is not None:
            return None
    else:
        rows = [r for r in session.scalars(select(ApiToken).where(ApiToken.prefix == which.prefix)) if not r.revoked_at]
        if not rows:
            raise InvalidInput({"prefix": f"No live token starts with {which.prefix!r}"})
        if len(rows) > 1:
            raise Conflict(f"More than one token starts with {which.prefix!r}; revoke by id in the database")
        [row] = rows
    row.revoked_at = utcnow()
    audit.record(session, actor, "token.revoke", row, name=row.name)
    return row


# --- the rows under them ---------------------------------------------------------------------------------


def create_admin(session: Session, email: str, password: str, role: str = "admin", name: str = "") -> AdminUser:
    """A new team member, with no audit row (add_member is the command); InvalidInput for a bad address, short
    password or unknown role."""
    return _new_account(session, parse(NewMember, {"email": email, "password": password, "role": role, "name": name}))


def _new_account(session: Session, member: NewMember) -> AdminUser:
    if session.scalar(select(AdminUser.id).where(AdminUser.email == member.email)):
        raise Conflict(f"An account for {member.email} already exists")
    user = AdminUser(
        email=member.email, password_hash=_hasher.hash(member.password), role=member.role, name=member.name
    )
    session.add(user)
    session.flush()
    return user


def member(session: Session, user_id: int) -> AdminUser | None:
    """The team member with this id, if any."""
    return session.get(AdminUser, user_id)


def list_members(session: Session) -> list[AdminUser]:
    """The team's accounts, by address."""
    return list(session.scalars(select(AdminUser).order_by(AdminUser.email)))


def authenticate(session: Session, email: str, password: str) -> AdminUser | None:
    """The active account with this address and password, or None (the same time taken either way; an account
    with no password, single sign-on only, is None for every password). Checks the password only: signing in
    is accounts.signin, which adds the lockout and the second factor."""
    from .signin import _password_matches

    user = session.scalar(select(AdminUser).where(AdminUser.email == (email or "").strip().lower()))
    return user if _password_matches(user, password) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, name: str, role: str | None = None, owner: AdminUser | None = None
) -> tuple[ApiToken, str]:
    """A new API token acting for `owner`, with no audit row (issue_token is the command); returns the row and
    the token itself. Its role defaults to the owner's and may not be above it; the owner must be an active
    account. InvalidInput names what is wrong.

    Without an owner the token acts for nobody, like those made before tokens had owners: it is refused while
    APPROVAL_BY_ANOTHER is on (see token_access). The CLI and the team page always give one."""
    return _new_token(session, parse(TokenFields, {"name": name, "role": role}), owner)


def _new_token(session: Session, wanted: TokenFields, owner: AdminUser | None) -> tuple[ApiToken, str]:
    errors = {}
    if owner is not None and not owner.active:
        errors["owner"] = f"{owner.email}'s account is switched off: switch it on, or make the token for someone else"
    role = wanted.role or (owner.role if owner is not None else "admin")
    if owner is not None and not has_role(owner.role, role):
        errors["role"] = f"A token cannot do more than the person it is for: {owner.email}'s role is {owner.role}"
    if errors:
        raise InvalidInput(errors)
    token = "tm_" + secrets.token_urlsafe(32)
    row = ApiToken(name=wanted.name, token_hash=_token_hash(token), prefix=token[:8], role=role, owner=owner)
    session.add(row)
    session.flush()
    return row, token


def account_for(session: Session, email: str, field: str = "owner") -> AdminUser:
    """The team member with this address; InvalidInput (on `field`) when there is none."""
    user = session.scalar(select(AdminUser).where(AdminUser.email == (email or "").strip().lower()))
    if user is None:
        raise InvalidInput({field: f"No team member has the address {email!r}: add them first (mailer admin create)"})
    return user


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def token_for(session: Session, token: str) -> ApiToken | None:
    """The live (not revoked) token row for a bearer token, or None. Says nothing about whether it may be used:
    that is token_access."""
    if not token:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row


class TokenRefused(Exception):
    """A bearer token that may not be used; the message says why and what to do."""


@dataclass(frozen=True)
class TokenAccess:
    """What a request made with a token may do, and for whom."""

    id: int
    name: str
    role: str  # the lower of the token's role and its owner's: a demoted owner's tokens are demoted with them
    owner_id: int | None
    owner_email: str | None


def token_access(session: Session, token: str, *, owner_required: bool = False) -> TokenAccess:
    """Check a bearer token and note its use; TokenRefused when it is unknown or revoked, when its owner's
    account is switched off, or when it has no owner and `owner_required` (APPROVAL_BY_ANOTHER is on: who wrote,
    submitted and approved an issue must be known, and a token that acts for nobody would hide it)."""
    row = token_for(session, token)
    if row is None:
        raise TokenRefused("That API token is not valid or has been revoked")
    owner = row.owner
    if owner is None and owner_required:
        raise TokenRefused(
            "This API token belongs to nobody, and this site requires issues to be approved by someone other than "
            "their writer: ask an admin for a token of your own (mailer token create --for <your email>)"
        )
    if owner is not None and not owner.active:
        raise TokenRefused(f"This API token acts for {owner.email}, whose account is switched off")
    row.last_used_at = utcnow()
    return TokenAccess(
        row.id, row.name, effective_role(row), owner.id if owner else None, owner.email if owner else None
    )


def effective_role(row: ApiToken) -> str:
    """The lower of a token's role and its owner's: a demoted owner's tokens are demoted with them."""
    owner = row.owner
    return row.role if owner is None or has_role(owner.role, row.role) else owner.role


def change_account(session: Session, user_id: int, *, role: str | None = None, active: bool | None = None) -> AdminUser:
    """change_member with no audit row: change someone's role or switch their account off (or on)."""
    return _changed_account(session, user_id, parse(MemberChange, {"role": role, "active": active}))


def _changed_account(session: Session, user_id: int, change: MemberChange) -> AdminUser:
    user = session.get(AdminUser, user_id) if 0 < user_id <= MAX_ID else None
    if user is None:
        raise NotFound(f"There is no account {user_id}.")
    role, active = change.role, change.active
    losing_admin = user.role == "admin" and user.active and (role not in (None, "admin") or active is False)
    if losing_admin:
        admins = session.scalar(
            select(func.count()).select_from(AdminUser).where(AdminUser.role == "admin", AdminUser.active.is_(True))
        )
        if admins <= 1:
            raise Conflict("This is the last active admin: make someone else an admin first")
    if role is not None:
        user.role = role
    if active is not None:
        user.active = active
    session.flush()
    return user


def start_session(session: Session, user: AdminUser) -> str:
    """A new sign-in for `user`. Returns the secret for the browser's cookie; only its SHA-256 is stored."""
    now = utcnow()
    session.execute(
        delete(AdminSession).where(AdminSession.user_id == user.id, AdminSession.created_at < now - SESSION_KEEP)
    )
    secret = secrets.token_urlsafe(32)
    session.add(AdminSession(token_hash=_token_hash(secret), user_id=user.id, created_at=now, last_seen_at=now))
    session.flush()
    return secret


def session_state(row: AdminSession | None, idle: timedelta, now: datetime | None = None) -> str:
    """`live`, or why the sign-in no longer counts: `unknown`, `signed_out`, `idle` or `expired`."""
    now = now or utcnow()
    if row is None:
        return "unknown"
    if row.ended_at is not None:
        return row.ended_reason or "signed_out"
    if now - row.created_at >= SESSION_MAX_AGE:
        return "expired"
    if now - row.last_seen_at >= idle:
        return "idle"
    return "live"


def find_session(session: Session, secret: str) -> AdminSession | None:
    """The sign-in this cookie secret belongs to (live or not), or None."""
    if not secret:
        return None
    return session.scalar(select(AdminSession).where(AdminSession.token_hash == _token_hash(secret)))


def touch_session(session: Session, session_id: int) -> None:
    """Record activity on a live sign-in (pushes its idle timeout back)."""
    session.execute(
        update(AdminSession)
        .where(AdminSession.id == session_id, AdminSession.ended_at.is_(None))
        .values(last_seen_at=utcnow())
    )


def end_session(session: Session, session_id: int, reason: str = "signed_out") -> bool:
    """End a sign-in for good; False if it had already ended. Its cookie never works again."""
    result = session.execute(
        update(AdminSession)
        .where(AdminSession.id == session_id, AdminSession.ended_at.is_(None))
        .values(ended_at=utcnow(), ended_reason=reason)
    )
    return result.rowcount == 1


def sign_out(session: Session, secret: str, user: AdminUser) -> None:
    """End the sign-in this cookie secret names, recorded in the audit log (whoever's cookie it was)."""
    row = find_session(session, secret)
    if row is not None and row.user_id == user.id and end_session(session, row.id, "signed_out"):
        audit.record(session, audit.Actor.user(user), "user.logout", user)
