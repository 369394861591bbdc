"""An SMTP server for tests (aiosmtpd) that records what it receives and can refuse chosen recipients."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self):
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def to(self) -> str:
        return self.rcpt_tos[0]

    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


class _Handler:
    def __init__(self, server: SmtpTestServer):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.server.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        for rcpt in envelope.rcpt_tos:
            reply = self.server.data_replies.get(rcpt.lower())
            if reply:
                return reply
        with self.server.lock:
            self.server.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content)
            )
        return "250 Message accepted"


class SmtpTestServer:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.received: list[Received] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}
        self.lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname=host, port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.rcpt_replies.clear()
            self.data_replies.clear()

    def refuse(self, address: str, reply: str) -> None:
        """Answer RCPT TO for `address` with `reply`, e.g. '550 5.1.1 No such user'."""
        self.rcpt_replies[address.lower()] = reply

    def refuse_content(self, address: str, reply: str) -> None:
        """Accept RCPT TO for `address` but answer its DATA with `reply`, e.g. '550 5.7.1 Spam'."""
        self.data_replies[address.lower()] = reply

    def messages_to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.received if address.lower() in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_to(address)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} message(s) to {address}, got {len(found)} after {timeout}s")
            time.sleep(0.05)
