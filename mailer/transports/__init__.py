"""Ways out for a finished message. One small interface: `send(envelope_from, recipient, data)`.

A transport raises `TemporaryFailure` (try again later: 4xx, connection trouble) or `PermanentFailure`
(5xx: never retry, suppress on a hard bounce). It knows nothing of the database.
"""

from .base import PermanentFailure, TemporaryFailure, Transport
from .smtp import SmtpTransport, smtp_transport_for

__all__ = ["PermanentFailure", "SmtpTransport", "TemporaryFailure", "Transport", "smtp_transport_for"]
