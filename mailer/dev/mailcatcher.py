"""A development SMTP server that keeps every message it receives as a file the admin can show.

Started by `mailer run` when SMTP_URL is not set; nothing it receives leaves the machine.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller

_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{32}\.eml$")
KEEP = 2000  # the folder keeps the newest messages only


class CatcherHandler:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        data = envelope.original_content or envelope.content
        header = f"X-Mailcatcher-Rcpt: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        tmp = self.folder / f".{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(header + data)
        os.replace(tmp, self.folder / f"{stamp}-{uuid.uuid4().hex}.eml")
        self._count += 1
        if self._count % 200 == 0:
            prune(self.folder)
        return "250 Message accepted for delivery"


def prune(folder: Path, keep: int = KEEP) -> None:
    files = sorted(p for p in folder.iterdir() if _NAME.match(p.name))
    for old in files[:-keep]:
        old.unlink(missing_ok=True)


@dataclass
class CaughtMessage:
    name: str
    recipients: str
    subject: str
    sender: str
    date: str
    headers: list[tuple[str, str]] | None = None
    text: str | None = None
    html: str | None = None


def list_messages(folder: Path, limit: int = 200) -> list[CaughtMessage]:
    """Newest first; reads headers only."""
    if not folder.exists():
        return []
    files = sorted((p for p in folder.iterdir() if _NAME.match(p.name)), reverse=True)[:limit]
    out = []
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    for path in files:
        with path.open("rb") as fh:
            msg = parser.parse(fh)
        out.append(
            CaughtMessage(
                name=path.name,
                recipients=str(msg.get("X-Mailcatcher-Rcpt", "")),
                subject=str(msg.get("Subject", "")),
                sender=str(msg.get("From", "")),
                date=str(msg.get("Date", "")),
            )
        )
    return out


def read_message(folder: Path, name: str) -> CaughtMessage:
    if not _NAME.match(name):
        raise FileNotFoundError(name)
    raw = (folder / name).read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return CaughtMessage(
        name=name,
        recipients=str(msg.get("X-Mailcatcher-Rcpt", "")),
        subject=str(msg.get("Subject", "")),
        sender=str(msg.get("From", "")),
        date=str(msg.get("Date", "")),
        headers=[(k, str(v)) for k, v in msg.items() if k != "X-Mailcatcher-Rcpt"],
        text=text.get_content() if text is not None else None,
        html=html.get_content() if html is not None else None,
    )


def serve(folder: Path, host: str = "127.0.0.1", port: int = 1025) -> None:
    """Run until interrupted."""
    controller = Controller(CatcherHandler(folder), hostname=host, port=port, data_size_limit=25 * 1024 * 1024)
    controller.start()
    print(f"mail catcher: SMTP on {host}:{port}, keeping messages in {folder}", flush=True)
    try:
        asyncio.run(_forever())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


async def _forever():
    while True:
        await asyncio.sleep(3600)
