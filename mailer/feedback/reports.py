"""Reading a report that came back by mail: which recipients it is about, and what it says happened.

Standard first: a delivery status notification (RFC 3464, `multipart/report; report-type=delivery-status`)
gives each recipient's Action and Status; a feedback-loop report (ARF, RFC 5965, `report-type=feedback-report`)
is a complaint. Then the bounces servers write in their own words, which flufl.bounce recognises. Automatic
replies (out of office, challenge-response) are nobody's bounce: they are ignored, not counted.

Who a report is about, most exact first: the VERP address it was sent to (names the delivery row, or the
person for transactional mail), the Message-ID of the original it quotes (names the issue and the subscriber),
else the failed recipient's address.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import logging
import quopri
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser

from flufl.bounce import all_failures

from ..config import Settings
from . import verp
from .commands import Report

log = logging.getLogger(__name__)

DIAGNOSTIC_KEPT = 1000
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"^\s*([245])\d\d\b")
_ADDRESS = re.compile(r"[^\s<>;\"']+@[^\s<>;\"']+")
_STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")
_HEADER_PARTS = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
_ORIGINAL_PARTS = ("message/rfc822", "message/global")
# Who a report was delivered to, as the receiving server wrote it: the first one that is ours names the message.
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply|away from)", re.I
)
# Headers only automatic responders write (challenge-response systems ask a stranger to prove they are one).
_AUTO_REPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Challenge-Response", "X-Boxtrapper")
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery", re.I)


class UnreadableReport(ValueError):
    """What came is not a message we can read as a report (garbage, or a report that names nobody)."""


@dataclass
class _Failure:
    recipient: str | None
    severity: str
    status: str | None
    diagnostic: str | None


def read(raw: bytes, *, source: str, settings: Settings, envelope_to: str | None = None) -> list[Report]:
    """The reports `raw` (one message, as received) makes: one per recipient that failed, or the complaint; []
    for a warning, a success, an automatic reply or a message that is no report. UnreadableReport for
    garbage."""
    if not isinstance(raw, bytes | bytearray) or not raw.strip():
        raise UnreadableReport("the message is empty")
    try:
        message = email.message_from_bytes(bytes(raw), policy=email.policy.compat32)
        if not message.keys():
            raise UnreadableReport("this is not an email message: it has no header fields")
        return _read(message, bytes(raw), source, settings, envelope_to)
    except UnreadableReport:
        raise
    except Exception as exc:  # a report malformed in a way nobody foresaw: say so, never half-read it
        log.warning("could not read a report (%s)", exc, exc_info=True)
        raise UnreadableReport(f"the report could not be read: {exc}") from exc


def _read(message: Message, raw: bytes, source: str, settings: Settings, envelope_to: str | None) -> list[Report]:
    kind = _report_type(message)
    if kind == "feedback-report":
        return [_complaint(message, raw, source, settings, envelope_to)]
    failures = _delivery_status(message) if kind == "delivery-status" else None
    if failures is None:
        if _automatic_reply(message):
            log.debug("ignored an automatic reply")  # not its subject: an out-of-office names its writer
            return []
        failures = _nonstandard(message)
        if kind == "delivery-status" and not failures:
            raise UnreadableReport("a delivery report that names no recipient")
    quoted = _quoted_headers(message)
    named = _named(message, settings, envelope_to, (quoted.get("return-path"),))
    kept = _kept(message)
    attributed = _attribution(named, quoted, settings)
    return [_report(failure, message, raw, source, attributed, kept) for failure in failures]


def _report(failure: _Failure, message, raw, source, attributed, kept) -> Report:
    return Report(
        source=source,
        kind="bounce",
        key=_key(source, message, raw, failure.recipient),
        severity=failure.severity,
        email=failure.recipient,
        status=failure.status,
        diagnostic=failure.diagnostic,
        report=kept,
        **attributed,
    )


def _report_type(message: Message) -> str | None:
    if message.get_content_type() != "multipart/report":
        return None
    return (message.get_param("report-type") or "").strip().lower() or None


# --- delivery status notifications (RFC 3464) -----------------------------------------------------------------


def _delivery_status(message: Message) -> list[_Failure] | None:
    """The failed recipients of a DSN ([] when all were delayed, delivered, relayed or expanded); None when
    it has no status part that names a recipient (read it as a non-standard bounce instead)."""
    part = next((p for p in message.walk() if p.get_content_type() in _STATUS_PARTS), None)
    if part is None:
        return None
    recipients = [block for block in _status_blocks(part) if _field(block, "Final-Recipient", "Original-Recipient")]
    if not recipients:
        return None
    return [failure for failure in map(_failure, recipients) if failure is not None]


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The groups of fields a delivery-status part holds (per message, then one per recipient)."""
    payload = part.get_payload()
    encoded = (part.get("Content-Transfer-Encoding") or "").strip().lower() in ("base64", "quoted-printable")
    if isinstance(payload, list) and not encoded:
        return [{k.lower(): _unfold(v) for k, v in block.items()} for block in payload if isinstance(block, Message)]
    text = _decoded(part)
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.decode("utf-8", "replace"))
    parser = HeaderParser(policy=email.policy.compat32)
    return [{k.lower(): _unfold(v) for k, v in parser.parsestr(b.strip() + "\n").items()} for b in blocks if b.strip()]


def _decoded(part: Message) -> bytes:
    """A status part's text, even one a server encoded (RFC 3464 says not to; some do), which the email package
    then split into blocks of nonsense."""
    payload = part.get_payload()
    if isinstance(payload, list):
        payload = "\n".join(block.as_string() for block in payload if isinstance(block, Message))
    encoding = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else bytes(payload or b"")
    if encoding == "base64":
        return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", raw) + b"==", validate=False)
    if encoding == "quoted-printable":
        return quopri.decodestring(raw)
    return raw


def _field(block: dict[str, str], *names: str) -> str | None:
    for name in names:
        if block.get(name.lower()):
            return block[name.lower()]
    return None


def _failure(block: dict[str, str]) -> _Failure | None:
    if (_field(block, "Action") or "").strip().lower() != "failed":
        return None  # delayed, delivered, relayed, expanded: not a bounce
    diagnostic = _field(block, "Diagnostic-Code")
    if diagnostic and ";" in diagnostic:
        diagnostic = diagnostic.split(";", 1)[1].strip()
    status = _status(_field(block, "Status"), diagnostic)
    return _Failure(
        recipient=_address(_field(block, "Original-Recipient", "Final-Recipient")),
        severity="soft" if status and status.startswith("4") else "hard",
        status=status,
        diagnostic=(diagnostic or "")[:DIAGNOSTIC_KEPT] or None,
    )


def _status(field: str | None, diagnostic: str | None) -> str | None:
    """The enhanced status code (5.1.1), from the Status field or else the server's reply; a bare 4xx/5xx
    reply gives 4.0.0/5.0.0."""
    for text in (field, diagnostic):
        match = _STATUS.search(text or "")
        if match:
            return ".".join(match.groups())
    reply = _REPLY_CODE.match(diagnostic or "")
    return f"{reply.group(1)}.0.0" if reply else None


def _address(field: str | None) -> str | None:
    """`rfc822; someone@example.org` → someone@example.org (lower case: addresses are matched that way)."""
    if not field:
        return None
    value = field.split(";", 1)[1] if ";" in field else field
    match = _ADDRESS.search(value)
    return match.group(0).strip().lower()[:320] if match else None


def _unfold(value) -> str:
    return re.sub(r"\s+", " ", str(value)).strip()


# --- complaints (ARF, RFC 5965) --------------------------------------------------------------------------------


def _complaint(message: Message, raw: bytes, source: str, settings: Settings, envelope_to: str | None) -> Report:
    part = next((p for p in message.walk() if p.get_content_type() == "message/feedback-report"), None)
    if part is None:
        raise UnreadableReport("a feedback report without its message/feedback-report part")
    fields: dict[str, str] = {}
    for block in _status_blocks(part):
        fields.update(block)
    quoted = _quoted_headers(message)
    recipient = _address(_field(fields, "Original-Rcpt-To", "Removal-Recipient")) or _address(quoted.get("to"))
    # A provider writes the report to its feedback address, but the original it quotes carries our Return-Path.
    extra = (_field(fields, "Original-Mail-From"), quoted.get("return-path"))
    named = _named(message, settings, envelope_to, extra)
    feedback_type = (_field(fields, "Feedback-Type") or "abuse").lower()
    return Report(
        source=source,
        kind="complaint",
        key=_key(source, message, raw, recipient),
        email=recipient,
        diagnostic=f"feedback report: {feedback_type}"[:DIAGNOSTIC_KEPT],
        report=raw.decode("utf-8", "replace"),
        **_attribution(named, quoted, settings),
    )


# --- the rest: automatic replies, and bounces in a server's own words --------------------------------------------


def _automatic_reply(message: Message) -> bool:
    """An out-of-office or challenge-response reply (RFC 3834 and the headers and subjects such programs
    write). A bounce from a mail server says Auto-Submitted too: that alone is not enough from a daemon."""
    if any(message.get(name) for name in _AUTO_REPLY_HEADERS):
        return True
    if (message.get("Precedence") or "").strip().lower() == "auto_reply":
        return True
    if _AUTO_REPLY_SUBJECT.match(_subject(message)):
        return True
    submitted = (message.get("Auto-Submitted") or "").strip().lower()
    return submitted.startswith("auto-replied") and not _DAEMON.search(str(message.get("From") or ""))


def _nonstandard(message: Message) -> list[_Failure]:
    """The permanent failures flufl.bounce recognises (its temporary ones are warnings: nothing to act on)."""
    _temporary, permanent = all_failures(message)
    status = _status(_body_text(message), None)
    diagnostic = f"non-standard bounce: {_subject(message)}"[:DIAGNOSTIC_KEPT]
    found = sorted({a.decode("utf-8", "replace").strip().lower() for a in permanent})
    return [_Failure(address[:320], "hard", status, diagnostic) for address in found]


def _body_text(message: Message) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            texts.append((part.get_payload(decode=True) or b"").decode("utf-8", "replace"))
    return "\n".join(texts)[:100_000]


def _subject(message: Message) -> str:
    try:
        return _unfold(make_header(decode_header(message.get("Subject") or "")))[:200]
    except Exception:  # an undecodable encoded word: the raw text says enough
        return _unfold(message.get("Subject") or "")[:200]


# --- attribution and identity ----------------------------------------------------------------------------------


def _named(message: Message, settings: Settings, envelope_to: str | None, extra=()) -> verp.Named | None:
    """What the first of our envelope addresses this report was sent to (or quotes) names."""
    candidates = [envelope_to] + [v for h in _DELIVERED_TO for v in message.get_all(h) or []] + list(extra)
    for candidate in candidates:
        for address in _ADDRESS.findall(str(candidate or "")):
            named = verp.read(address, settings)
            if named is not None:
                return named
    return None


def _quoted_headers(message: Message) -> dict[str, str]:
    """The returned original's headers (lower-cased names), from its headers part or the whole message."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in _ORIGINAL_PARTS and part.is_multipart():
            original = part.get_payload(0)
            return {k.lower(): _unfold(v) for k, v in original.items()}
        if kind in _HEADER_PARTS:
            text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
            parsed = HeaderParser(policy=email.policy.compat32).parsestr(text.lstrip())
            return {k.lower(): _unfold(v) for k, v in parsed.items()}
    text = _body_text(message)
    match = re.search(r"^Message-ID:\s*(<[^>\s]+>)", text, re.I | re.M)
    return {"message-id": match.group(1)} if match else {}


def _attribution(named: verp.Named | None, quoted: dict[str, str], settings: Settings) -> dict:
    if named is not None and named.delivery_id is not None:
        return {"delivery_id": named.delivery_id}
    if named is not None:
        return {"subscriber_id": named.subscriber_id}
    ids = verp.read_message_id(quoted.get("message-id"), settings)
    return {"issue_id": ids[0], "subscriber_id": ids[1]} if ids else {}


def _key(source: str, message: Message, raw: bytes, recipient: str | None) -> str:
    report_id = _unfold(message.get("Message-ID") or "").strip("<>")[:160] or hashlib.sha256(raw).hexdigest()
    return f"{source}:{report_id}:{recipient or ''}"


def _kept(message: Message) -> str:
    """What a bounce's event keeps: its status part when it has one, else the text (commands bounds it)."""
    part = next((p for p in message.walk() if p.get_content_type() in _STATUS_PARTS), None)
    if part is not None:
        return part.as_string()
    return _body_text(message)
