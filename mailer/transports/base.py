from __future__ import annotations

from typing import Protocol


class DeliveryError(Exception):
    """A message was not accepted. `code` is the SMTP reply code when there was one."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class TemporaryFailure(DeliveryError):
    """Worth another try later (4xx reply, connection lost or refused, timeout)."""


class PermanentFailure(DeliveryError):
    """Never worth retrying (5xx reply): the address or the message was refused."""


class Transport(Protocol):
    def send(self, envelope_from: str, recipient: str, data: bytes) -> str: ...

    def close(self) -> None: ...
