"""SMTP with one connection reused for many messages, reopened when the server drops it.

`SMTP_URL` forms: smtp://host:port, smtp://user:pass@host:port?starttls=1, smtps://host:465.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from urllib.parse import parse_qs, unquote, urlsplit

from .base import PermanentFailure, TemporaryFailure

_TRUE = {"1", "true", "yes", "on"}


class SmtpTransport:
    def __init__(self, url: str, timeout: float = 30.0, local_hostname: str | None = None):
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"}:
            raise ValueError(f"not an smtp:// or smtps:// URL: {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.host = parts.hostname or "localhost"
        self.ssl = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.ssl else 25)
        self.starttls = query.get("starttls", "").lower() in _TRUE
        self.verify = query.get("verify", "1").lower() in _TRUE
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.ssl:
                conn = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    local_hostname=self.local_hostname,
                    context=self._tls_context(),
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname)
            # Commands are written whole and answered before the next: Nagle's algorithm only adds delay.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            # A configuration problem, not the recipient's: rows wait (uncounted) until it is fixed.
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise TemporaryFailure(f"SMTP login refused: {exc.smtp_code} {reply}", stage="connect") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"cannot connect to SMTP server {self.host}:{self.port}: {exc}", stage="connect"
            ) from exc
        return conn

    def send(self, envelope_from: str, recipient: str, data: bytes) -> str:
        """Send one wire-ready message (CRLF line ends, dot-stuffed: what `CompiledMessage.fill` makes).

        A connection the server dropped (idle pooled connections are) is reopened once.
        """
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                return self._transaction(envelope_from, recipient, data)
            except _Refused as exc:
                self._reset()
                raise _failure(exc.code, exc.reply, exc.stage) from None
            except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
                self.close()
                if attempt == 2:
                    # Lost twice while sending this message: it counts as a try for this recipient, so a
                    # message that always breaks the connection cannot hold its batch up for ever.
                    raise TemporaryFailure(f"SMTP connection lost while sending: {exc}", stage="data") from exc
        raise AssertionError("unreachable")

    def _transaction(self, envelope_from: str, recipient: str, data: bytes) -> str:
        """MAIL, RCPT, DATA and the message. With PIPELINING (RFC 2920) the three commands go in one write
        and their replies are read together: one round trip per message instead of four. The data is
        sent as it is, without smtplib's per-message dot-stuffing pass (it was done once, at compile)."""
        conn = self._conn
        mail = f"MAIL FROM:{smtplib.quoteaddr(envelope_from)}"
        if conn.does_esmtp and conn.has_extn("8bitmime"):
            mail += " BODY=8BITMIME"
        rcpt = f"RCPT TO:{smtplib.quoteaddr(recipient)}"
        if conn.does_esmtp and conn.has_extn("pipelining"):
            conn.send(f"{mail}\r\n{rcpt}\r\nDATA\r\n".encode("ascii"))
            replies = [conn.getreply(), conn.getreply(), conn.getreply()]
        else:
            replies = [conn.docmd(mail)]
            if replies[0][0] == 250:
                replies.append(conn.docmd(rcpt))
                if replies[1][0] in (250, 251):
                    replies.append(conn.docmd("DATA"))
        for (code, reply), stage, ok in zip(
            replies, ("mail", "rcpt", "data"), ((250,), (250, 251), (354,)), strict=False
        ):
            if code not in ok:
                raise _Refused(code, reply, stage)
        # One write for the message and its terminator: two small writes in a row wait on delayed ACKs.
        conn.send(data + b".\r\n" if data.endswith(b"\r\n") else data + b"\r\n.\r\n")
        code, reply = conn.getreply()
        if code != 250:
            raise _Refused(code, reply, "data")
        return f"{code} {reply.decode('utf-8', 'replace')}"

    def _reset(self) -> None:
        """After a refused transaction the connection is still good; RSET it so the next one starts clean."""
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()


class _Refused(Exception):
    def __init__(self, code: int, reply: bytes, stage: str):
        self.code, self.reply, self.stage = code, reply, stage


def _failure(code: int, reply, stage: str) -> TemporaryFailure | PermanentFailure:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    message = f"{code} {text}".strip()
    if 400 <= code < 500 or code < 200:
        return TemporaryFailure(message, code, stage)
    return PermanentFailure(message, code, stage)


# One open connection per (process, thread, URL): Celery's prefork children each get their own.
_local = threading.local()


def reused(key, make):
    """The transport kept under `key` for this process and thread, made by `make()` the first time."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    transport = pool.get(key)
    if transport is None:
        transport = pool[key] = make()
    return transport


def smtp_transport_for(url: str) -> SmtpTransport:
    """The reused transport for this process and thread."""
    return reused(url, lambda: SmtpTransport(url))
