"""Reading back the few things an API transport needs from a finished message (its From, Subject, text part).

Only reading: every header we send is written by render.headers. The email package parses here because an API
(Notify's) takes the content apart from the message.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def header_address(raw: bytes, name: bytes) -> str | None:
    """The address in one header of the message's head (From), without parsing the body."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    message = email.message_from_bytes(head + b"\r\n\r\n", policy=policy.default)
    value = message.get(name.decode())
    address = parseaddr(str(value))[1] if value else ""
    return address or None


def text_part(message: EmailMessage) -> str:
    """The text/plain part (the whole message when it is one), as text."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        raise ValueError("the message has no text/plain part")
    return part.get_content()
