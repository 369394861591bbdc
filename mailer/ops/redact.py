"""What never reaches a log line or an error report: email addresses (replaced by a short keyed hash, the first
characters of the one the database keeps, so support can still tell two lines about one person apart), the
team's API tokens, signed link tokens and passwords in URLs.

One function, `redact`, used by the log formatters (logs.py) on each finished line and by Sentry's before_send
(sentry.py) on every string of an event, so the two can never disagree about what is personal.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..models import email_hash

# An address as it turns up in text: SMTP replies, exception messages, reprs of task arguments. Wider than what
# the sign-up form accepts (so nothing slips through) and without ':' in the local part, so `user:pass@host` in a
# URL is not taken for one (PASSWORD_IN_URL below takes it).
# Letters are any script's (\w), so an address the form refused (jö@example.org) is caught as well. The last label
# starts with a letter, so `:***@127.0.0.1` (a masked password before an IP address) is not taken for one.
EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[\w-]+\.)+[^\W\d_][\w-]*\w")
# Our API tokens (accounts.issue_token: "tm_" and 43 URL-safe characters).
API_TOKEN = re.compile(r"\btm_[A-Za-z0-9_-]{16,}")
# itsdangerous tokens in links (confirm, unsubscribe, manage): payload[.timestamp].signature, the signature being
# 27 URL-safe characters (HMAC-SHA1) or more. A host name never has a label that long.
SIGNED_TOKEN = re.compile(r"\.?[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]{4,})?\.[A-Za-z0-9_-]{27,}")
# scheme://user:password@host: the password goes, the user stays (it says which account).
PASSWORD_IN_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@\s/]+@")
# "Authorization: Bearer …" or "bearer …" in text that quotes a request.
BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def address_marker(address: str, key: str | None) -> str:
    """`[email:1a2b3c4d5e6f]`: the first 12 hex digits of the address's keyed hash (models.email_hash), or
    `[email]` without a key (an unkeyed hash of an address can be reversed by trying addresses)."""
    if not key:
        return "[email]"
    return f"[email:{email_hash(address, key)[:12]}]"


def redactor(key: str | None) -> Callable[[str], str]:
    """`redact(text)` with EMAIL_HASH_KEY `key`."""

    def redact(text: str) -> str:
        if not text:
            return text
        if "://" in text:
            text = PASSWORD_IN_URL.sub(lambda m: f"{m['head']}:***@", text)
        if "@" in text:
            text = EMAIL.sub(lambda m: address_marker(m.group(0), key), text)
        if "tm_" in text:
            text = API_TOKEN.sub("tm_[token]", text)
        text = BEARER.sub(r"\1[token]", text)
        return SIGNED_TOKEN.sub("[token]", text)

    return redact
