from __future__ import annotations

import re
from typing import Protocol

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

# Where in the conversation it went wrong: "connect" (never reached the recipient: nothing about this
# message or address is known), "mail" (sender refused), "rcpt" (this address refused), "data" (content).
STAGES = ("connect", "mail", "rcpt", "data")


class DeliveryError(Exception):
    """A message was not accepted. `code` is the SMTP reply code when there was one."""

    def __init__(self, message: str, code: int | None = None, stage: str = "data"):
        super().__init__(message)
        self.code = code
        self.stage = stage

    @property
    def enhanced_status(self) -> str | None:
        """The RFC 3463 status (e.g. "5.1.1") in the server's reply, if it gave one."""
        match = _ENHANCED.search(str(self))
        return ".".join(match.groups()) if match else None


class TemporaryFailure(DeliveryError):
    """Worth another try later (4xx reply, connection lost or refused, timeout)."""


class PermanentFailure(DeliveryError):
    """Never worth retrying (5xx reply): the address or the message was refused."""

    @property
    def hard_bounce(self) -> bool:
        """The mailbox itself does not exist or never will accept mail: only then is the address suppressed.

        A refusal of the sender or the content (spam filter, relaying denied, policy) says nothing
        about the address, so it fails the message without touching the subscriber.
        """
        if self.stage != "rcpt":
            return False
        status = self.enhanced_status
        if status is not None:
            return status.startswith("5.1.")
        return self.code in (550, 551, 553)


class Transport(Protocol):
    def send(self, envelope_from: str, recipient: str, data: bytes) -> str: ...

    def close(self) -> None: ...
