"""Envelope senders that name what they carry, so a report sent back to one says which message it was about.

A bulk message to delivery row 1234 goes out with `MAIL FROM:<bounce-1234-<sig>@BOUNCE_DOMAIN>` (VERP): any
DSN, whoever writes it and however little of the original it quotes, is addressed to that, and names one
issue × subscriber. Transactional mail (confirmations, links, tests) carries `bounce-t<subscriber>-<sig>@…`: a
bounce of it is heard without touching any issue's figures. The signature (HMAC under SECRET_KEY, the old keys
still accepted) keeps a stranger from writing to bounce-<any id>@ and suppressing people at will.

Lower case only, digits and hex: some relays lower-case the local part of an address they bounce to.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from ..config import Settings

SIGNATURE_LENGTH = 10
_LOCAL = re.compile(rf"bounce-(t?)(\d{{1,18}})-([0-9a-f]{{{SIGNATURE_LENGTH}}})")


@dataclass(frozen=True)
class Named:
    """What an envelope sender we wrote names: a delivery row (bulk) or a person (transactional)."""

    delivery_id: int | None = None
    subscriber_id: int | None = None


def _signature(kind: str, number: int, key: str) -> str:
    return hmac.new(key.encode(), f"{kind}{number}".encode(), hashlib.sha256).hexdigest()[:SIGNATURE_LENGTH]


def _address(kind: str, number: int, settings: Settings) -> str:
    domain = settings.deliverability.bounce_domain
    return f"bounce-{kind}{number}-{_signature(kind, number, settings.secret_key)}@{domain}"


def envelope_for_delivery(delivery_id: int, settings: Settings, default: str) -> str:
    """The envelope sender of one bulk message: VERP on BOUNCE_DOMAIN, else RETURN_PATH, else `default` (From)."""
    d = settings.deliverability
    if d.bounce_domain:
        return _address("", delivery_id, settings)
    return d.return_path or default


def envelope_for_person(subscriber_id: int | None, settings: Settings, default: str) -> str:
    """The envelope sender of a transactional message to a subscriber (None: to a team member, a test)."""
    d = settings.deliverability
    if d.bounce_domain and subscriber_id is not None:
        return _address("t", subscriber_id, settings)
    if d.bounce_domain:
        return f"bounce-team@{d.bounce_domain}"
    return d.return_path or default


def read(address: str, settings: Settings) -> Named | None:
    """What `address` (a report's recipient) names, if we wrote it with a key we hold; None otherwise."""
    local, _, domain = (address or "").strip().strip("<>").rpartition("@")
    if settings.deliverability.bounce_domain and domain.lower() != settings.deliverability.bounce_domain:
        return None
    match = _LOCAL.fullmatch(local.lower())
    if match is None:
        return None
    kind, number, signature = match.group(1), int(match.group(2)), match.group(3)
    for key in (settings.secret_key, *settings.secret_key_fallbacks):
        if hmac.compare_digest(_signature(kind, number, key), signature):
            return Named(subscriber_id=number) if kind == "t" else Named(delivery_id=number)
    return None


_ISSUE_MESSAGE_ID = re.compile(rf"<?issue-(\d{{1,10}})\.(\d{{1,10}})\.([0-9a-f]{{{SIGNATURE_LENGTH}}})@[^>\s]+>?")


def message_id(issue_id: int, subscriber_id: int, settings: Settings) -> str:
    """The Message-ID of one recipient's copy of an issue: the same however often the row is attempted (so a copy
    sent again after a lost answer is recognised as one message), and signed, so a report quoting it (a DSN to a
    fixed RETURN_PATH, a feedback loop's ARF) names the issue and person only if we wrote it."""
    signature = _signature("m", issue_id * 10**10 + subscriber_id, settings.secret_key)
    return f"issue-{issue_id}.{subscriber_id}.{signature}@{settings.mail_domain}"


def read_message_id(value: str | None, settings: Settings) -> tuple[int, int] | None:
    """(issue id, subscriber id) from a quoted Message-ID we wrote and signed; None for any other."""
    match = _ISSUE_MESSAGE_ID.fullmatch((value or "").strip().lower())
    if match is None:
        return None
    issue_id, subscriber_id = int(match.group(1)), int(match.group(2))
    for key in (settings.secret_key, *settings.secret_key_fallbacks):
        if hmac.compare_digest(_signature("m", issue_id * 10**10 + subscriber_id, key), match.group(3)):
            return issue_id, subscriber_id
    return None
