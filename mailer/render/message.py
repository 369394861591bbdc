"""A MIME message built once, then filled in per recipient by joining byte segments.

Building an `EmailMessage` per recipient costs more than sending it. Instead the whole message — headers,
multipart structure, quoted-printable bodies — is encoded once with markers where recipient values go, and
split into static byte segments. Filling in a recipient is one `b"".join`, plus quoted-printable encoding of
just the few values (in C, through binascii). Each value stands between soft line breaks (`=\\r\\n`), which a
decoder removes, so a value never lands in the middle of an encoded line or escape sequence.
"""

from __future__ import annotations

import binascii
import html as html_lib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import headers
from .headers import UnsafeHeader

# Headers filled in per recipient (values must be plain ASCII: addresses, ids, URLs).
HEADER_FIELDS = ("to", "message_id", "date", "list_unsubscribe")


def new_marker_prefix() -> str:
    return "tm" + secrets.token_hex(6)


def markers_for(prefix: str, names) -> dict[str, str]:
    """Marker text for each body field; random per message so no content can collide with one."""
    return {name: f"{prefix}{name.replace('_', '')}x" for name in names}


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data, quotetabs=False, istext=False, header=False).replace(b"\n", b"\r\n")


def _qp_text(text: str) -> bytes:
    # Normalise line ends to \n, encode, then turn the hard breaks into CRLF for the wire.
    data = text.replace("\r\n", "\n").encode("utf-8")
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


_SOFT = b"=\r\n"


@dataclass
class CompiledMessage:
    """Segments alternate static bytes and (field name, encoder) pairs; `fill` joins them.

    What `fill` returns is ready for the wire: CRLF line ends and SMTP dot-stuffing already applied.
    Parse it as a message only after undoing the stuffing (`unstuff`), as an SMTP server does.
    """

    segments: list
    envelope_from: str

    def fill(self, values: Mapping[str, str]) -> bytes:
        out = []
        for seg in self.segments:
            if seg.__class__ is bytes:
                out.append(seg)
            else:
                name, encode = seg
                out.append(encode(values.get(name, "")))
        return b"".join(out)

    @staticmethod
    def unstuff(data: bytes) -> bytes:
        """The message as a receiving server stores it (for previews and tests)."""
        return data.replace(b"\r\n..", b"\r\n.")

    @property
    def fields(self) -> set[str]:
        return {seg[0] for seg in self.segments if seg.__class__ is not bytes}


def _split_part(text: str, markers: dict[str, str], encode_value: Callable[[str], bytes]):
    """Quoted-printable encode `text`, leaving each marker as a field segment between soft breaks."""
    by_marker = {marker: name for name, marker in markers.items()}
    segments: list = []
    rest = text
    while True:
        hits = [(rest.find(m), m) for m in by_marker if m in rest]
        if not hits:
            break
        pos, marker = min(hits)
        segments.append(_qp_text(rest[:pos]) + _SOFT)
        segments.append((by_marker[marker], encode_value))
        segments.append(_SOFT)
        rest = rest[pos + len(marker) :]
    segments.append(_qp_text(rest))
    return segments


def _body_value(encoded: bytes) -> bytes:
    # A value starts a line (it follows a soft break): a leading "." is written as its QP escape, so
    # SMTP's dot-stuffing never has to look at per-recipient bytes.
    encoded = encoded.replace(b"\r\n.", b"\r\n=2E")
    return b"=2E" + encoded[1:] if encoded[:1] == b"." else encoded


def _html_value(value: str) -> bytes:
    return _body_value(_qp(html_lib.escape(value, quote=True).encode("utf-8")))


def _text_value(value: str) -> bytes:
    return _body_value(_qp(value.encode("utf-8")))


def _header_value(value: str) -> bytes:
    # Our own values (ids, URLs, a date) are ASCII by construction: refuse a line break all the same.
    if "\r" in value or "\n" in value:
        raise UnsafeHeader("line break in a header value")
    return value.encode("ascii")


def _address_value(value: str) -> bytes:
    # The one value that came from a person (checked when it was typed): as the last line of defence, only
    # printable ASCII and no encoded-word, so nothing can start a header or be decoded into one. Two C-level
    # checks on a short string: the per-recipient path must stay as cheap as it is.
    if not value.isprintable() or "=?" in value:
        raise UnsafeHeader("an address that is not one line of plain text")
    return value.encode("ascii")


def compile_message(
    *,
    subject: str,
    mail_from: str,
    html: str,
    text: str,
    body_markers: dict[str, str],
    reply_to: str | None = None,
    list_id: tuple[str, str] | None = None,
    extra_headers: Mapping[str, str] | None = None,
    one_click: bool = True,
    unsubscribe_post: bool = True,
) -> CompiledMessage:
    """Encode the message once. Per-recipient header fields: to, message_id, date, list_unsubscribe.

    `one_click` writes List-Unsubscribe; `unsubscribe_post` adds List-Unsubscribe-Post, which RFC 8058 allows
    only where one POST to that link unsubscribes (not for a test send, whose link cannot).

    `mail_from` and `reply_to` are `Name <address>` or `address`; `list_id` is (label, list id). Headers are
    encoded by `headers`, never by the email package (see there why): the subject is one line whatever it
    holds, and decodes back to exactly its text."""
    from_name, envelope_from = headers.parse_mailbox(mail_from)
    static = [headers.mailbox("From", from_name, envelope_from), headers.unstructured("Subject", subject)]
    if reply_to:
        static.append(headers.mailbox("Reply-To", *headers.parse_mailbox(reply_to)))
    if list_id:
        static.append(headers.list_id(*list_id))
    for name, value in (extra_headers or {}).items():
        static.append(headers.unstructured(name, value))
    static_headers = b"".join(static)

    boundary = "=_tm_" + secrets.token_hex(12)
    segments: list = [
        static_headers,
        b"To: ",
        ("to", _address_value),
        b"\r\n",
        b"Date: ",
        ("date", _header_value),
        b"\r\n",
        b"Message-ID: <",
        ("message_id", _header_value),
        b">\r\n",
    ]
    if one_click:
        segments += [
            b"List-Unsubscribe: <",
            ("list_unsubscribe", _header_value),
            b">\r\n",
        ]
        if unsubscribe_post:
            segments.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    segments.append(
        (
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
            "\r\n"
            "This is a multi-part message in MIME format.\r\n"
            f"--{boundary}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n"
            "\r\n"
        ).encode()
    )
    segments += _split_part(text, body_markers, _text_value)
    segments.append(
        (
            f"\r\n--{boundary}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n"
            "\r\n"
        ).encode()
    )
    segments += _split_part(html, body_markers, _html_value)
    segments.append(f"\r\n--{boundary}--\r\n".encode())

    # Merge neighbouring static segments so fill() joins as few pieces as possible, then dot-stuff them
    # once for SMTP (RFC 5321 4.5.2): a static segment never starts a line (the message starts with a
    # header, and every other static segment follows a value mid-line), so doubling each "\r\n." is all.
    merged: list = []
    for seg in segments:
        if seg.__class__ is bytes and merged and merged[-1].__class__ is bytes:
            merged[-1] += seg
        else:
            merged.append(seg)
    stuffed = [seg.replace(b"\r\n.", b"\r\n..") if seg.__class__ is bytes else seg for seg in merged]
    return CompiledMessage(segments=stuffed, envelope_from=envelope_from)
