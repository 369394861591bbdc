"""Parsing and normalising email addresses typed by people or found in files."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from ..db import EMAIL_HASH_KEY
from ..errors import InvalidInput
from ..models import email_hash
from ..render.content import has_control_characters
from ..render.headers import has_encoded_word


def normalise_email(raw: str | None, field: str = "email") -> str:
    """A deliverable-looking address in normal form (domain lower-cased, IDN in ASCII), or InvalidInput."""
    raw = (raw or "").strip()
    if not raw:
        raise InvalidInput({field: "Enter your email address"})
    # An encoded-word (=?utf-8?q?…?=) is valid in an address's local part, but mail programs decode it into
    # something else, line breaks included: an address goes into the To header, so it is refused.
    if has_control_characters(raw) or has_encoded_word(raw):
        raise InvalidInput({field: "Enter an email address in the correct format, like name@example.com"})
    if len(raw) > 254:
        raise InvalidInput({field: "Email address must be 254 characters or fewer"})
    try:
        result = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput({field: "Enter an email address in the correct format, like name@example.com"}) from exc
    return result.ascii_email or result.normalized


def hash_address(session: Session, address: str) -> str:
    """The keyed hash of `address` as this session's database stores it (Subscriber/Suppression.email_hash)."""
    key = session.info.get(EMAIL_HASH_KEY)
    if not key:
        raise RuntimeError("this database was opened without EMAIL_HASH_KEY: Database(url, email_hash_key=...)")
    return email_hash(address, key)
