"""Amazon SES's bounces and complaints, as SNS posts them to POST /api/v1/hooks/ses.

SNS signs every message it posts: the signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) is over a
canonical string of the message's fields, made with the private key of the certificate at SigningCertURL. That URL
must be https, on a host SNS_CERTIFICATE_HOSTS matches in full (AWS's sns.<region>.amazonaws.com), and end in .pem:
otherwise anyone could sign a message with a certificate of their own. Certificates are fetched once per process.
A message from a topic not in SNS_TOPIC_ARNS (when set) is refused the same way.

A SubscriptionConfirmation is confirmed by fetching its SubscribeURL (same host rule). A Notification carries one
SES event (identity notifications say `notificationType`, configuration-set event publishing `eventType`):
a Bounce (Permanent: hard; Transient, Undetermined: soft) or a Complaint becomes one `Report` per recipient named;
Delivery and the rest are heard and ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from ..config import Settings
from ..inputs import invalid
from .attribution import delivery_named
from .commands import Recorded, Report, record

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # SNS messages are at most 256 KB
MAX_CERTIFICATE = 64 * 1024
FETCH_SECONDS = 10

# The fields each kind of message is signed over, in this order ("Subject" only when the message has one).
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


class Unreadable(ValueError):
    """Not an SNS message (400)."""


class Refused(Exception):
    """An SNS message we must not believe: bad signature, certificate from the wrong place, unknown topic (403)."""


@dataclass
class Heard:
    kind: str  # confirmed | notification | ignored
    recorded: list[Recorded]
    said: str


class SnsMessage(BaseModel):
    """An SNS message: a Notification (its Message is the SES event, as JSON text) or a SubscriptionConfirmation"""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, hide_input_in_errors=True)

    Type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
    MessageId: str
    TopicArn: str
    Message: str = Field(description="A Notification's: the SES event, as JSON text")
    Timestamp: str
    SignatureVersion: str = Field(description="1 (SHA1withRSA) or 2 (SHA256withRSA)")
    Signature: str = Field(description="Base64, over the message's signed fields")
    SigningCertURL: str = Field(description="https, on an SNS host, a .pem")
    Subject: str | None = None
    SubscribeURL: str | None = None
    Token: str | None = None


def read(body: bytes) -> dict[str, str]:
    """The SNS message in a request body (SNS posts JSON as text/plain), or Unreadable saying why."""
    if len(body) > MAX_BODY:
        raise Unreadable(f"An SNS message is at most {MAX_BODY // 1024} KB")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Unreadable("The body is not an SNS message: not JSON") from None
    if not isinstance(data, dict):
        raise Unreadable("The body is not an SNS message: not a JSON object")
    try:
        message = SnsMessage.model_validate(data)
    except ValidationError as exc:
        raise Unreadable(f"The body is not an SNS message: {invalid(exc, data)}") from None
    fields = {name: value for name, value in message.model_dump().items() if value is not None}
    missing = [name for name in SIGNED[message.Type] if name not in fields and name != "Subject"]
    if missing:
        raise Unreadable(f"The SNS message lacks {', '.join(missing)}")
    return fields


def canonical(message: dict[str, str]) -> bytes:
    """The string SNS signs: each signed field's name and value, a line each."""
    lines = []
    for name in SIGNED[message["Type"]]:
        if name in message:
            lines += [name, message[name]]
    return ("\n".join(lines) + "\n").encode("utf-8")


def verify(message: dict[str, str], settings: Settings) -> None:
    """Refused unless SNS signed `message` and its topic is one we take."""
    arns = settings.deliverability.sns_topic_arns
    if arns and message["TopicArn"] not in arns:
        raise Refused("This SNS topic is not one of SNS_TOPIC_ARNS")
    digest = HASHES.get(message["SignatureVersion"])
    if digest is None:
        raise Refused("Unknown SignatureVersion: SNS signs with version 1 or 2")
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise Refused("The signature is not base64") from None
    key = certificate_key(message["SigningCertURL"], settings)
    try:
        key.verify(signature, canonical(message), padding.PKCS1v15(), digest())
    except InvalidSignature:
        raise Refused("The SNS signature does not match the message") from None


def check_url(url: str, settings: Settings, what: str) -> str:
    """`url` if it is https on an SNS host (SNS_CERTIFICATE_HOSTS, in full); Refused otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or not re.fullmatch(settings.deliverability.sns_certificate_hosts, host):
        raise Refused(f"The {what} is not an https address on an SNS host")
    return url


_keys: dict[str, rsa.RSAPublicKey] = {}
_keys_lock = threading.Lock()


def certificate_key(url: str, settings: Settings) -> rsa.RSAPublicKey:
    """The public key of the signing certificate at `url` (checked, fetched once per process)."""
    check_url(url, settings, "SigningCertURL")
    if not urlsplit(url).path.endswith(".pem"):
        raise Refused("The SigningCertURL is not a .pem certificate")
    with _keys_lock:
        key = _keys.get(url)
    if key is not None:
        return key
    pem = fetch(url, settings, MAX_CERTIFICATE)
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise Refused("The SigningCertURL does not hold a PEM certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("The signing certificate's key is not RSA")
    with _keys_lock:
        _keys[url] = key
    return key


def _tls(settings: Settings) -> ssl.SSLContext:
    # The system's trust store; SNS_CA_BUNDLE (tests: their own certificate authority) instead when set.
    return ssl.create_default_context(cafile=settings.deliverability.sns_ca_bundle or None)


def fetch(url: str, settings: Settings, limit: int) -> bytes:
    """GET an https URL on an SNS host (redirects not followed), at most `limit` bytes; Refused if it fails."""
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=_tls(settings)))
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=FETCH_SECONDS) as answer:
            data = answer.read(limit + 1)
    except (OSError, ValueError) as exc:  # URLError, HTTPError, TLS failures, timeouts are OSErrors
        raise Refused(f"Could not fetch {urlsplit(url).hostname}: {exc}") from None
    if len(data) > limit:
        raise Refused(f"{urlsplit(url).hostname} answered with more than {limit // 1024} KB")
    return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect could lead off the SNS host: it is an error instead


def confirm(message: dict[str, str], settings: Settings) -> None:
    """Confirm a subscription (SNS_TOPIC_ARNS already checked): fetch its SubscribeURL."""
    fetch(check_url(message["SubscribeURL"], settings, "SubscribeURL"), settings, MAX_BODY)
    log.info("confirmed the SNS subscription of %s", message["TopicArn"])


def receive(session: Session, body: bytes, settings: Settings) -> Heard:
    """Read, verify and act on one SNS post: Unreadable (400) or Refused (403) with nothing changed."""
    message = read(body)
    verify(message, settings)
    if message["Type"] == "SubscriptionConfirmation":
        confirm(message, settings)
        return Heard("confirmed", [], f"Subscribed to {message['TopicArn']}")
    if message["Type"] == "UnsubscribeConfirmation":
        return Heard("ignored", [], "Unsubscribed: nothing to do")
    reports = ses_reports(session, message, settings)
    recorded = [record(session, report, settings) for report in reports]
    return Heard("notification", recorded, f"{len(reports)} report(s) heard")


def ses_reports(session: Session, message: dict[str, str], settings: Settings) -> list[Report]:
    """The reports in an SNS Notification carrying an SES event (none for Delivery, Send, Open and the rest)."""
    try:
        event = json.loads(message["Message"])
    except (ValueError, RecursionError):
        raise Unreadable("The SNS Message is not an SES event: not JSON") from None
    if not isinstance(event, dict):
        raise Unreadable("The SNS Message is not an SES event")
    kind = event.get("notificationType") or event.get("eventType")
    if kind not in ("Bounce", "Complaint"):
        return []
    message_id = _text(_object(_object(event, "mail"), "commonHeaders").get("messageId"))
    if kind == "Bounce":
        bounce = _object(event, "bounce")
        severity = "hard" if bounce.get("bounceType") == "Permanent" else "soft"
        people = _recipients(bounce, "bouncedRecipients")
        extra = {"severity": severity, "report": json.dumps(bounce)[:20_000]}
    else:
        complaint = _object(event, "complaint")
        people = _recipients(complaint, "complainedRecipients")
        extra = {"report": message["Message"]}
    reports = []
    for person in people:
        email = person["emailAddress"]
        reports.append(
            Report(
                source="ses",
                kind=kind.lower(),
                key=f"ses:{message['MessageId']}:{email.lower()}",
                delivery_id=delivery_named(session, message_id, email, settings),
                email=email,
                status=_text(person.get("status")),
                diagnostic=_text(person.get("diagnosticCode")) or _summary(event, kind),
                **extra,
            )
        )
    return reports


def _summary(event: dict, kind: str) -> str | None:
    """SES's own words when a recipient has no diagnostic: the bounce's type, the complaint's feedback type."""
    part = event.get(kind.lower(), {})
    if kind == "Bounce":
        return _text(f"{part.get('bounceType') or ''} {part.get('bounceSubType') or ''}".strip())
    return _text(part.get("complaintFeedbackType"))


def _object(parent: dict, name: str) -> dict:
    value = parent.get(name, {})
    if not isinstance(value, dict):
        raise Unreadable(f"The SES event's {name} is not an object")
    return value


def _recipients(part: dict, name: str) -> list[dict]:
    people = part.get(name)
    if not isinstance(people, list) or not people:
        raise Unreadable(f"The SES event names no {name}")
    for person in people:
        if not isinstance(person, dict) or not isinstance(person.get("emailAddress"), str):
            raise Unreadable(f"Each of {name} needs an emailAddress")
    return people


def _text(value) -> str | None:
    return value[:2000] if isinstance(value, str) and value else None
