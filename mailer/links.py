"""Signed links in mail and on pages: confirm, unsubscribe (one click), manage preferences.

A link is its own credential, so each kind has its own salt (a confirm token can never be replayed as an
unsubscribe token) and every kind is signed with SECRET_KEY; old keys can be listed as fallbacks to rotate
the key without breaking links already sitting in people's inboxes.
"""

from __future__ import annotations

import hashlib

from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer

CONFIRM_MAX_AGE = 7 * 24 * 3600


class BadLink(ValueError):
    """The link was tampered with, truncated, expired or made with a key we no longer hold."""


class Links:
    def __init__(self, secret_key: str, base_url: str, old_keys: tuple[str, ...] = ()):
        keys = [*old_keys, secret_key]  # itsdangerous signs with the last key, verifies with all
        opts = {"signer_kwargs": {"digest_method": hashlib.sha256}}
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = URLSafeSerializer(keys, salt="unsubscribe", **opts)
        self._confirm = URLSafeTimedSerializer(keys, salt="confirm", **opts)
        self._manage = URLSafeSerializer(keys, salt="manage", **opts)

    # Unsubscribe links never expire: an old newsletter's footer must still work years later.
    def unsubscribe_token(self, subscriber_id: int, topic_id: int | None) -> str:
        """Token for leaving one topic, or every topic when `topic_id` is None."""
        return self._unsubscribe.dumps([subscriber_id, topic_id or 0])

    def read_unsubscribe(self, token: str) -> tuple[int, int | None]:
        try:
            subscriber_id, topic_id = self._unsubscribe.loads(token)
        except (BadData, TypeError, ValueError) as exc:
            raise BadLink("unsubscribe link is not valid") from exc
        if not isinstance(subscriber_id, int) or not isinstance(topic_id, int):
            raise BadLink("unsubscribe link is not valid")
        return subscriber_id, (topic_id or None)

    def unsubscribe_url(self, subscriber_id: int, topic_id: int | None) -> str:
        return f"{self.base_url}/u/{self.unsubscribe_token(subscriber_id, topic_id)}"

    def confirm_token(self, request_id: int) -> str:
        """Token for confirming one subscribe request (a consent event); valid for seven days."""
        return self._confirm.dumps(request_id)

    def read_confirm(self, token: str, max_age: int = CONFIRM_MAX_AGE) -> int:
        try:
            request_id = self._confirm.loads(token, max_age=max_age)
        except (BadData, TypeError, ValueError) as exc:
            raise BadLink("confirmation link is not valid or has expired") from exc
        if not isinstance(request_id, int):
            raise BadLink("confirmation link is not valid")
        return request_id

    def confirm_url(self, request_id: int) -> str:
        return f"{self.base_url}/confirm/{self.confirm_token(request_id)}"

    # Manage links never expire either (they are in every footer). They carry a piece of the address's
    # hash, so a link can only ever open the preferences of the address it was sent to.
    def manage_token(self, subscriber_id: int, email_hash: str) -> str:
        return self._manage.dumps([subscriber_id, email_hash[:12]])

    def read_manage(self, token: str) -> tuple[int, str]:
        """(subscriber id, hash prefix): the caller checks the prefix against the subscriber's hash."""
        try:
            subscriber_id, hash_prefix = self._manage.loads(token)
        except (BadData, TypeError, ValueError) as exc:
            raise BadLink("manage link is not valid") from exc
        if not isinstance(subscriber_id, int) or not isinstance(hash_prefix, str) or len(hash_prefix) != 12:
            raise BadLink("manage link is not valid")
        return subscriber_id, hash_prefix

    def manage_url(self, subscriber_id: int, email_hash: str) -> str:
        return f"{self.base_url}/manage/{self.manage_token(subscriber_id, email_hash)}"
