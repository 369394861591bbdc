"""Single sign-on: a verified ID token from the trust's OpenID provider (Microsoft Entra ID) → a team member.

The web adapter (mailer/web/sso.py) runs the protocol with Authlib — the redirect with state, nonce and PKCE,
the code exchange, the ID token's signature, issuer, audience, expiry and nonce — and hands the verified claims
to `sign_in_with_claims`, which decides who they are and what they may do:

- the account is the one linked to the token's issuer and subject (Entra's `oid`, else `sub`), never found by
  address: an address can be renamed or reused at the provider, issuer and subject cannot;
- on the first sign-in the account is created (address from `email`, else Entra's `preferred_username`);
- the role is the highest one OIDC_ROLE_MAP gives the values in the token's roles claim (OIDC_ROLES_CLAIM), and
  a later sign-in with another role changes the account's; a token with no mapped role is refused;
- when a second factor is required (MFA_REQUIRED), the token's `amr` must say "mfa", unless OIDC_TRUST_IDP_MFA
  says the provider's own policy already demands one of everybody (Entra ID's v2.0 ID tokens carry no `amr`, so
  there a Conditional Access policy and OIDC_TRUST_IDP_MFA=true are the way). The mailer's own TOTP step is for
  local (password) accounts; an SSO account's second factor is the provider's.

Every sign-in, account created, role changed and refusal (with its reason) is in the audit log. A refusal is
`Refused`; its row is recorded by `record_refusal` in a transaction of its own, since the sign-in's rolls back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .accounts import ROLE_RANK, change_account
from .accounts.signin import open_sign_in
from .audience.emails import normalise_email
from .audit import Actor
from .config import SingleSignOn
from .errors import Conflict, InvalidInput
from .models import AdminUser, ExternalIdentity, utcnow

# An SSO account has no password: this is no argon2 hash, so a password never matches it (accounts.authenticate).
NO_PASSWORD = "!sso"
# Who changed an account because the provider's token said so.
PROVIDER = Actor("system", None, "single sign-on")


class Refused(Exception):
    """A sign-in the mailer will not let through: `reason` is a short code for the audit log, the message says
    what happened and what to do, for the person."""

    def __init__(self, reason: str, message: str, *, user: AdminUser | None = None, **details):
        super().__init__(message)
        self.reason = reason
        self.user_id = user.id if user is not None else None
        self.details = details


@dataclass(frozen=True)
class Person:
    """Who a verified ID token says signed in."""

    issuer: str
    subject: str
    email: str | None
    name: str
    values: tuple[str, ...]  # the roles claim's values
    amr: tuple[str, ...]


def person_of(claims: Mapping, roles_claim: str = "roles") -> Person:
    """Read the claims that matter from a verified ID token."""
    values = token_values(claims, roles_claim)
    amr = claims.get("amr") or ()
    return Person(
        issuer=str(claims["iss"]),
        subject=str(claims.get("oid") or claims["sub"]),
        email=_address_of(claims),
        name=str(claims.get("name") or "")[:200],
        values=tuple(str(v) for v in values),
        amr=tuple(str(v) for v in (amr if isinstance(amr, list | tuple) else [amr])),
    )


def _address_of(claims: Mapping) -> str | None:
    for name in ("email", "preferred_username"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            try:
                return normalise_email(value).lower()
            except InvalidInput:
                continue
    return None


def role_for(values, role_map: tuple[tuple[str, str], ...]) -> str | None:
    """The highest mailer role OIDC_ROLE_MAP gives any of `values`, or None when it gives none."""
    mapped = [role for value, role in role_map if value in set(values)]
    return max(mapped, key=ROLE_RANK.__getitem__, default=None)


def token_values(claims: Mapping, claim: str) -> list[str]:
    """The values of the roles claim, whether the provider sent a list or one string."""
    raw = claims.get(claim)
    if raw is None:
        return []
    return [str(v) for v in raw] if isinstance(raw, list | tuple) else [str(raw)]


def sign_in_with_claims(
    session: Session, sso: SingleSignOn, claims: Mapping, *, mfa_required: bool
) -> tuple[AdminUser, str]:
    """Sign in the person a verified ID token names: (account, cookie secret for sessions.begin). With
    `mfa_required` (Settings.mfa_required, MFA_REQUIRED) the token must show a second factor. Creates the
    account on their first sign-in and brings its role in line with the token on every one; Refused (nothing
    written) when the token gives no mailer role, lacks a required second factor, names a switched-off account or
    an address another account has."""
    person = person_of(claims, sso.roles_claim)
    role = role_for(person.values, sso.role_map)
    if role is None:
        raise Refused(
            "no_role",
            "Your NHS account has not been given a role in the mailer. Ask your IT team to assign you one of the "
            "mailer's roles (editor, publisher or admin) in Entra ID, then sign in again.",
            email=person.email,
            values=list(person.values)[:20],
        )
    if mfa_required and not sso.trust_idp_mfa:
        _check_second_factor(person)
    identity = session.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.issuer == person.issuer, ExternalIdentity.subject == person.subject
        )
    )
    user = _linked_account(session, identity, person, role) if identity else _new_account(session, person, role)
    identity = identity or _link(session, user, person)
    now = utcnow()
    identity.last_login_at = now
    # The one step every way in shares: the sign-in row, its user.login audit row, failed sign-ins forgotten.
    return user, open_sign_in(session, user, method="sso")


def _check_second_factor(person: Person) -> None:
    """Refused unless the token's `amr` says a second factor was used. Entra ID's v2.0 ID tokens carry no `amr`
    at all: there the provider's own policy has to require one (OIDC_TRUST_IDP_MFA, README)."""
    if not person.amr:
        raise Refused(
            "mfa_unknown",
            "Your NHS account's sign-in did not say whether a second factor was used, and this site requires one. "
            "Ask your IT team: they can require a second factor for the mailer in Entra ID (Conditional Access) "
            "and then set OIDC_TRUST_IDP_MFA=true.",
            email=person.email,
        )
    if "mfa" not in person.amr:
        raise Refused(
            "no_second_factor",
            "Your sign-in did not use a second factor (such as the Microsoft Authenticator app), which this site "
            "requires. Sign in again with your second factor, or ask your IT team to require one for the mailer.",
            email=person.email,
            amr=list(person.amr),
        )


def _new_account(session: Session, person: Person, role: str) -> AdminUser:
    if person.email is None:
        raise Refused(
            "no_email",
            "Your NHS account's token carries no email address, so no account can be made for you. Ask your IT "
            "team to add the email claim to the mailer's app registration.",
        )
    taken = session.scalar(select(AdminUser).where(AdminUser.email == person.email))
    if taken is not None:
        raise Refused(
            "address_taken",
            f"The mailer already has an account for {person.email} that signs in with a password. Sign in with "
            "that password, or ask an admin to change that account's address so your NHS account can have its own.",
            user=taken,
            email=person.email,
        )
    user = AdminUser(email=person.email, password_hash=NO_PASSWORD, role=role, name=person.name)
    session.add(user)
    session.flush()
    audit.record(session, PROVIDER, "user.create", user, email=user.email, role=role, method="sso")
    return user


def _link(session: Session, user: AdminUser, person: Person) -> ExternalIdentity:
    identity = ExternalIdentity(user_id=user.id, issuer=person.issuer, subject=person.subject)
    session.add(identity)
    session.flush()
    return identity


def _linked_account(session: Session, identity: ExternalIdentity, person: Person, role: str) -> AdminUser:
    user = identity.user
    if not user.active:
        raise Refused(
            "account_off",
            "Your mailer account is switched off. Ask an admin of the mailer to switch it on.",
            user=user,
            email=user.email,
        )
    if user.role != role:
        previous = user.role
        try:
            change_account(session, user.id, role=role)
        except Conflict as exc:
            raise Refused(
                "last_admin", f"{exc}: your NHS account no longer gives you the admin role.", user=user
            ) from exc
        audit.record(session, PROVIDER, "user.change", user, role=role, previous_role=previous, method="sso")
    return user


def record_refusal(session: Session, refusal: Refused) -> None:
    """The audit row for a refused sign-in: why, and whose account it was when that is known."""
    target = session.get(AdminUser, refusal.user_id) if refusal.user_id else None
    audit.record(session, PROVIDER, "sso.refused", target, reason=refusal.reason, **refusal.details)
