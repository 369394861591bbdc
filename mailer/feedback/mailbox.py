"""Reading reports from a mailbox over IMAP, for a trust that can be given a mailbox but not a mail route.

BOUNCE_IMAP_URL = imaps://user:password@host[:port]/MAILBOX (imap:// upgrades with STARTTLS when the server
offers it). Each poll takes the unseen messages in batches of BATCH; each message is read and recorded in its
own unit of work, and only once that has committed is it flagged \\Seen and \\Deleted (expunged after the
batch). A poll that dies half-way leaves the rest unseen for the next one, and a message read twice records
nothing new (its report's key). A message that is no readable report is flagged \\Seen and left for a person.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..config import Settings
from ..db import Database
from . import reports
from .receiver import hear

log = logging.getLogger(__name__)

BATCH = 50
MAX_BATCHES = 20  # one poll reads at most this many batches; the next poll carries on


class MailboxError(RuntimeError):
    """The mailbox could not be reached or read (the message says why); nothing was flagged."""


@dataclass
class Polled:
    messages: int = 0
    reports: int = 0
    new: int = 0
    unreadable: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Mailbox:
    secure: bool
    host: str
    port: int
    user: str
    password: str
    folder: str


def _parse(url: str) -> _Mailbox:
    parts = urlsplit(url)
    secure = parts.scheme == "imaps"
    return _Mailbox(
        secure=secure,
        host=parts.hostname or "",
        port=parts.port or (993 if secure else 143),
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        folder=unquote(parts.path.lstrip("/")) or "INBOX",
    )


def connect(url: str, *, timeout: float = 30.0) -> imaplib.IMAP4:
    """A signed-in IMAP connection with the mailbox selected (MailboxError if it cannot be had)."""
    box = _parse(url)
    try:
        if box.secure:
            imap = imaplib.IMAP4_SSL(box.host, box.port, ssl_context=ssl.create_default_context(), timeout=timeout)
        else:
            imap = imaplib.IMAP4(box.host, box.port, timeout=timeout)
            if "STARTTLS" in imap.capabilities:
                imap.starttls(ssl.create_default_context())
        imap.login(box.user, box.password)
        status, detail = imap.select(_quoted(box.folder))
        if status != "OK":
            raise MailboxError(f"the mailbox {box.folder!r} cannot be opened: {_said(detail)}")
        return imap
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"the mailbox at {box.host}:{box.port} cannot be read: {exc}") from exc


def poll(db: Database, settings: Settings, *, url: str | None = None, batch: int = BATCH) -> Polled:
    """Read and record the unseen messages of BOUNCE_IMAP_URL (or `url`)."""
    url = url or settings.deliverability.bounce_imap_url
    if not url:
        raise MailboxError("BOUNCE_IMAP_URL is not set")
    imap = connect(url)
    polled = Polled()
    try:
        for _ in range(MAX_BATCHES):
            uids = _unseen(imap)[:batch]
            if not uids:
                break
            for uid in uids:
                _take(imap, uid, db, settings, polled)
            imap.expunge()
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"the mailbox stopped answering: {exc}") from exc
    finally:
        _close(imap)
    return polled


def _take(imap: imaplib.IMAP4, uid: bytes, db: Database, settings: Settings, polled: Polled) -> None:
    raw = _fetch(imap, uid)
    polled.messages += 1
    try:
        heard = hear(db, raw, settings, source="imap")
    except reports.UnreadableReport as exc:
        log.warning("message %s in the bounce mailbox is no report we can read (%s); left for a person", uid, exc)
        polled.unreadable.append(f"{uid.decode()}: {exc}")
        imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
        return
    # Committed: only now may the message go (a database error above leaves it unseen for the next poll).
    polled.reports += heard.reports
    polled.new += heard.new
    imap.uid("STORE", uid, "+FLAGS", "(\\Seen \\Deleted)")


def _unseen(imap: imaplib.IMAP4) -> list[bytes]:
    status, data = imap.uid("SEARCH", None, "UNSEEN", "UNDELETED")
    if status != "OK":
        raise MailboxError(f"the mailbox refused a search: {_said(data)}")
    return (data[0] or b"").split()


def _fetch(imap: imaplib.IMAP4, uid: bytes) -> bytes:
    status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    if status != "OK":
        raise MailboxError(f"message {uid.decode()} could not be fetched: {_said(data)}")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1]
    return b""


def _close(imap: imaplib.IMAP4) -> None:
    try:
        imap.close()
        imap.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data) -> str:
    return " ".join(d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in data or [])
