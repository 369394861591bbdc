"""The bounce domain's mail server: relays deliver their DSNs and feedback-loop reports here (MX or a transport
route for BOUNCE_DOMAIN), and each is read and recorded as it arrives.

- RCPT: only addresses on BOUNCE_DOMAIN (or, without one, the VERP addresses we wrote and RETURN_PATH);
  anything else is refused 550 5.1.1, so this is never an open door for other mail.
- A message over MAX_SIZE is refused 552 (aiosmtpd's SIZE limit).
- DATA: `reports.read`, then `commands.record` for each report, all in one unit of work. A database that does
  not answer gives 451: the relay keeps the report and tries again, and the report's key makes the retry
  harmless. Garbage gives 554: no retry can make it readable.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiosmtpd.controller import Controller
from sqlalchemy.exc import SQLAlchemyError

from ..config import Settings
from ..db import Database
from . import commands, reports, verp

log = logging.getLogger(__name__)

MAX_SIZE = 10 * 1024 * 1024


@dataclass
class Heard:
    """What one message to the receiver came to."""

    reports: int
    new: int


def accepts(address: str, settings: Settings) -> bool:
    """Whether the receiver takes mail for `address`."""
    d = settings.deliverability
    local, _, domain = (address or "").strip().strip("<>").rpartition("@")
    if not local:
        return False
    if d.bounce_domain:
        return domain.lower() == d.bounce_domain
    if d.return_path and address.strip("<>").lower() == d.return_path.lower():
        return True
    return verp.read(address, settings) is not None


def hear(db: Database, raw: bytes, settings: Settings, *, source: str, envelope_to: str | None = None) -> Heard:
    """Read one message and record every report it makes, in one unit of work (UnreadableReport, or the
    database's error, leave nothing written)."""
    found = reports.read(raw, source=source, settings=settings, envelope_to=envelope_to)
    new = 0
    with db.transaction() as session:
        for report in found:
            new += commands.record(session, report, settings).new
    return Heard(len(found), new)


class _Handler:
    def __init__(self, db: Database, settings: Settings):
        self.db, self.settings = db, settings

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if not accepts(address, self.settings):
            return "550 5.1.1 No such mailbox here: this server takes reports for the bounce domain only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()
        try:
            heard = await loop.run_in_executor(None, self._hear, raw, envelope.rcpt_tos[0])
        except reports.UnreadableReport as exc:
            log.warning("refused a report from %s: %s", _sender_domain(envelope.mail_from), exc)
            return f"554 5.6.0 Not a report this server can read: {str(exc)[:200]}"
        except SQLAlchemyError:
            log.exception(
                "database error recording a report from %s; the sender will retry", _sender_domain(envelope.mail_from)
            )
            return "451 4.3.0 Could not record the report just now; please try again later"
        log.info("report from %s: %d read, %d new", _sender_domain(envelope.mail_from), heard.reports, heard.new)
        return "250 Report received"

    def _hear(self, raw: bytes, envelope_to: str) -> Heard:
        return hear(self.db, raw, self.settings, source="smtp", envelope_to=envelope_to)


def receiver(db: Database, settings: Settings, *, host: str | None = None, port: int | None = None) -> Controller:
    """The receiver, not yet started (`.start()` runs it in a thread; `.stop()`)."""
    d = settings.deliverability
    return Controller(
        _Handler(db, settings),
        hostname=host or d.bounce_smtp_host,
        port=port or d.bounce_smtp_port,
        server_hostname=d.bounce_domain or "bounces",
        data_size_limit=MAX_SIZE,
    )


def _sender_domain(mail_from: str | None) -> str:
    """Who sent a report, for the log: the envelope sender's domain only (a reply can come from a person)."""
    if not mail_from or mail_from == "<>":
        return "the null sender"
    return "@" + mail_from.rpartition("@")[2].strip("<>")
