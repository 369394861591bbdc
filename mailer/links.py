"""Signed links in mail and on pages: confirm, unsubscribe (one click), manage preferences.

A link is its own credential, so each kind has its own salt (a confirm token can never be replayed as an
unsubscribe token) and every kind is signed with SECRET_KEY; old keys can be listed as fallbacks to rotate
the key without breaking links already sitting in people's inboxes.

A link names a person by their `public_id`, a random value never given to anyone else, never by a row id
(SQLite reused the ids of deleted rows, and an old link then reached the next person given the id). Links
made before public ids named row ids; they are still read, as `legacy` links, and
mailer/audience/signed_links.py decides where they may still be honoured.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer

CONFIRM_MAX_AGE = 7 * 24 * 3600


class BadLink(ValueError):
    """The link was tampered with, truncated, expired or made with a key we no longer hold."""


@dataclass(frozen=True)
class UnsubscribeLink:
    person: str | int  # a public id; an int is the row id a link made before public ids carries
    topic_id: int | None  # None: every topic

    @property
    def legacy(self) -> bool:
        return isinstance(self.person, int)


@dataclass(frozen=True)
class ManageLink:
    person: str | int
    hash_prefix: str | None = None  # legacy links: the first 12 hex digits of sha256(address)

    @property
    def legacy(self) -> bool:
        return isinstance(self.person, int)


@dataclass(frozen=True)
class ConfirmLink:
    person: str | None  # None for a legacy link, which named the request alone
    request_id: int
    signed_at: datetime

    @property
    def legacy(self) -> bool:
        return self.person is None


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _is_public_id(value) -> bool:
    return isinstance(value, str) and 16 <= len(value) <= 64 and value.isascii() and value.isalnum()


class Links:
    def __init__(self, secret_key: str, base_url: str, old_keys: tuple[str, ...] = ()):
        keys = [*old_keys, secret_key]  # itsdangerous signs with the last key, verifies with all
        opts = {"signer_kwargs": {"digest_method": hashlib.sha256}}
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = URLSafeSerializer(keys, salt="unsubscribe", **opts)
        self._confirm = URLSafeTimedSerializer(keys, salt="confirm", **opts)
        self._manage = URLSafeSerializer(keys, salt="manage", **opts)

    # Unsubscribe links never expire: an old newsletter's footer must still work years later.
    def unsubscribe_token(self, public_id: str, topic_id: int | None) -> str:
        """Token for leaving one topic, or every topic when `topic_id` is None."""
        return self._unsubscribe.dumps([public_id, topic_id or 0])

    def read_unsubscribe(self, token: str) -> UnsubscribeLink:
        try:
            person, topic_id = self._unsubscribe.loads(token)
        except (BadData, TypeError, ValueError) as exc:
            raise BadLink("unsubscribe link is not valid") from exc
        if not (_is_public_id(person) or _is_id(person)) or not (topic_id == 0 or _is_id(topic_id)):
            raise BadLink("unsubscribe link is not valid")
        return UnsubscribeLink(person, topic_id or None)

    def unsubscribe_url(self, public_id: str, topic_id: int | None) -> str:
        return f"{self.base_url}/u/{self.unsubscribe_token(public_id, topic_id)}"

    def confirm_token(self, public_id: str, request_id: int) -> str:
        """Token for confirming one subscribe request (a consent event) of one person; valid for seven days."""
        return self._confirm.dumps([public_id, request_id])

    def read_confirm(self, token: str, max_age: int = CONFIRM_MAX_AGE) -> ConfirmLink:
        try:
            payload, signed_at = self._confirm.loads(token, max_age=max_age, return_timestamp=True)
        except (BadData, TypeError, ValueError) as exc:
            raise BadLink("confirmation link is not valid or has expired") from exc
        if _is_id(payload):  # made before public ids: the request's id alone
            return ConfirmLink(None, payload, signed_at)
        if isinstance(payload, list) and len(payload) == 2 and _is_public_id(payload[0]) and _is_id(payload[1]):
            return ConfirmLink(payload[0], payload[1], signed_at)
        raise BadLink("confirmation link is not valid")

    def confirm_url(self, public_id: str, request_id: int) -> str:
        return f"{self.base_url}/confirm/{self.confirm_token(public_id, request_id)}"

    # Manage links never expire either (they are in every footer).
    def manage_token(self, public_id: str) -> str:
        return self._manage.dumps(public_id)

    def read_manage(self, token: str) -> ManageLink:
        try:
            payload = self._manage.loads(token)
        except (BadData, TypeError, ValueError) as exc:
            raise BadLink("manage link is not valid") from exc
        if _is_public_id(payload):
            return ManageLink(payload)
        # Made before public ids: [row id, the first 12 hex digits of the address's SHA-256].
        if isinstance(payload, list) and len(payload) == 2 and _is_id(payload[0]) and isinstance(payload[1], str):
            if len(payload[1]) == 12:
                return ManageLink(payload[0], payload[1])
        raise BadLink("manage link is not valid")

    def manage_url(self, public_id: str) -> str:
        return f"{self.base_url}/manage/{self.manage_token(public_id)}"
