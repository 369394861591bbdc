"""DKIM (RFC 6376): every message that leaves is signed by one wrapper around the transport.

`signing(transport, settings)` gives back the transport itself when DKIM is not set up, else a `SigningTransport`
that signs the final bytes of each message (bulk, transactional, tests: whatever is handed to `send`) and puts
the `DKIM-Signature` header in front. The data handed to a transport is dot-stuffed for SMTP; the signature is
made over the message as the receiver stores it (unstuffed), and a header line never starts with ".", so
prepending it keeps the data wire-ready.

dkimpy does the header canonicalisation and hashing (`dkim.hash_headers` over `Relaxed` headers) and verifies
(`mailer dkim check`, the tests). Two costs are ours to avoid, measured in bench/dkim_bench.py: dkimpy's `sign`
parses the PEM key and runs RSA in pure Python for every message (~10 ms each), so the key is parsed once per
process into `cryptography`'s key and signed by OpenSSL; and its relaxed body canonicalisation substitutes every
single space through a regular expression (1.5–4 ms over a 34 KB issue), so `relaxed_body` does the same with
a few `bytes.replace` passes.

Nothing per issue can be signed once: the header hash covers To and Message-ID, which differ per recipient, and
the body hash each recipient's links. A SHA-256 midstate of the body before the first link (31 % of this issue)
would save ~10 µs of a ~40 µs hash: not worth a second path. The RSA operation per message is the cost that
remains (~0.5–1 ms for 2048 bits).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim import hash_headers, rfc822_parse
from dkim.canonicalization import Relaxed, correct_empty_body, strip_trailing_lines

from ..config import ConfigError, Deliverability, Settings
from .base import Transport

# Signed when present, in this order: what says who sent it, to whom, what and when, and the list headers a
# receiver acts on (RFC 8058 asks for List-Unsubscribe and List-Unsubscribe-Post to be signed).
SIGNED = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"mime-version",
    b"content-type",
)
# Signed once more than they appear ("oversigned"): nobody can add a second From, Subject or unsubscribe link
# without breaking the signature. Not Feedback-ID or Message-ID, which some relays (SES) add or rewrite.
OVERSIGNED = frozenset(
    {b"from", b"to", b"subject", b"date", b"reply-to", b"list-unsubscribe", b"list-unsubscribe-post"}
)
MINIMUM_BITS = 1024  # what receivers (and dkimpy's verifier) accept; 2048 is what to generate


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376's relaxed body canonicalisation, giving exactly what dkimpy's `Relaxed.canonicalize_body` gives.

    dkimpy's regular expressions replace every single space by a space (~1.5 ms over a 34 KB issue, whose HTML
    is indented); here each step is a C-level `bytes.replace`, done only while there is something to change: a
    tab becomes a space, runs of spaces halve until none is left, and the one space a line can then end with
    goes. Nothing else differs: tests/test_dkim.py checks it against dkimpy's on generated bodies."""
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    return correct_empty_body(strip_trailing_lines(body))


@functools.lru_cache(maxsize=8)
def load_rsa_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem`; ConfigError saying what is wrong with it otherwise. Parsed once per process
    (reading the settings checks it; the signer then takes the same object)."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise ConfigError("DKIM_PRIVATE_KEY is protected by a password: give the key without one") from exc
    except ValueError as exc:
        raise ConfigError(f"DKIM_PRIVATE_KEY is not a PEM private key that can be read: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"DKIM_PRIVATE_KEY must be an RSA key (k=rsa), not {type(key).__name__}")
    if key.key_size < MINIMUM_BITS:
        raise ConfigError(f"DKIM_PRIVATE_KEY has {key.key_size} bits: receivers want at least 1024 (make 2048)")
    return key


def public_record(key: rsa.RSAPrivateKey) -> str:
    """The TXT record's text for the key's public half: `v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>`."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def _folded(tags: list[bytes]) -> bytes:
    """Tags joined by "; ", a line break (then a space) before a tag that would pass 76 characters."""
    lines, line = [], b"DKIM-Signature:"
    for tag in tags:
        piece = tag + b";"
        if len(line) + 1 + len(piece) > 76 and line != b"DKIM-Signature:":
            lines.append(line)
            line = b""
        line += b" " + piece
    lines.append(line)
    return b"\r\n".join(lines)


@dataclass(frozen=True)
class DkimSigner:
    domain: str
    selector: str
    key: rsa.RSAPrivateKey

    def header(self, message: bytes, now: int | None = None) -> bytes:
        """The `DKIM-Signature:` header (CRLF-terminated, folded) for `message` (CRLF line ends, not stuffed)."""
        head, sep, body = message.partition(b"\r\n\r\n")
        headers, _ = rfc822_parse(head + b"\r\n\r\n")
        canonical = Relaxed.canonicalize_headers(headers)
        present = [name.lower() for name, _value in headers]
        include = [name for name in SIGNED if name in present for _ in range(present.count(name))]
        include += [name for name in SIGNED if name in OVERSIGNED and name in present]
        body_hash = hashlib.sha256(relaxed_body(body if sep else b"")).digest()
        tags = [
            b"v=1",
            b"a=rsa-sha256",
            b"c=relaxed/relaxed",
            b"d=" + self.domain.encode("ascii"),
            b"s=" + self.selector.encode("ascii"),
            b"t=%d" % (int(time.time()) if now is None else now),
            b"h=" + b":".join(include),
            b"bh=" + base64.b64encode(body_hash),
        ]
        unsigned = _folded(tags) + b"\r\n b="
        name, value = unsigned.split(b":", 1)
        hasher = hashlib.sha256()
        hash_headers(hasher, Relaxed, canonical, include, (name, value), None)
        signature = base64.b64encode(self.key.sign(hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256())))
        # b= folded in pieces: whitespace inside it is ignored by every verifier (RFC 6376 3.5).
        pieces = [signature[i : i + 72] for i in range(0, len(signature), 72)]
        return unsigned + b"\r\n  ".join(pieces) + b"\r\n"

    def sign_wire(self, data: bytes) -> bytes:
        """Wire-ready `data` (dot-stuffed, as `CompiledMessage.fill` makes it) with its signature in front."""
        return self.header(data.replace(b"\r\n..", b"\r\n.")) + data


_signers: dict[tuple, DkimSigner] = {}
_lock = threading.Lock()


def signer_for(d: Deliverability) -> DkimSigner | None:
    """The process's signer for these settings (the key parsed once); None when DKIM is not set up."""
    if not (d.dkim_domain and d.dkim_selector and d.dkim_private_key):
        return None
    cache_key = (d.dkim_domain, d.dkim_selector, d.dkim_private_key)
    signer = _signers.get(cache_key)
    if signer is None:
        with _lock:
            signer = _signers.get(cache_key)
            if signer is None:
                signer = DkimSigner(d.dkim_domain, d.dkim_selector, load_rsa_key(d.dkim_private_key))
                _signers[cache_key] = signer
    return signer


class SigningTransport:
    """A transport that signs every message before handing it to the one it wraps."""

    def __init__(self, inner: Transport, signer: DkimSigner):
        self.inner, self.signer = inner, signer

    def send(self, envelope_from: str, recipient: str, data: bytes) -> str:
        return self.inner.send(envelope_from, recipient, self.signer.sign_wire(data))

    def close(self) -> None:
        self.inner.close()


def signing(transport: Transport, settings: Settings) -> Transport:
    """`transport`, signing what it sends when DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY are set."""
    signer = signer_for(settings.deliverability)
    return transport if signer is None else SigningTransport(transport, signer)


# --- setting it up: `mailer dkim check` and `mailer dkim keygen` -----------------------------------------------


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem_of(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def zone_lines(name: str, record: str) -> str:
    """The record as a zone file line: a TXT string holds at most 255 characters, so a long one is split."""
    pieces = " ".join(f'"{record[i : i + 250]}"' for i in range(0, len(record), 250))
    return f"{name}. IN TXT ( {pieces} )"


def _aligned(dkim_domain: str, from_domain: str) -> bool:
    # DMARC's relaxed alignment asks for the same organisational domain; one being a subdomain of the other is
    # what we can tell without the public suffix list.
    return (
        from_domain == dkim_domain or from_domain.endswith("." + dkim_domain) or dkim_domain.endswith("." + from_domain)
    )


def dns_advice(settings: Settings) -> list[str]:
    """What to publish in DNS for the From domain (SPF, DMARC) and the bounce domain (MX, SPF), as lines."""
    from ..render.headers import parse_mailbox

    d = settings.deliverability
    from_domain = parse_mailbox(settings.mail_from)[1].rpartition("@")[2]
    lines = [
        f"SPF for the From domain ({from_domain}): one TXT record naming every server that sends as it, e.g.",
        f'  {from_domain}. IN TXT "v=spf1 include:<your relay\'s SPF domain> -all"',
        "  (Microsoft 365: include:spf.protection.outlook.com; Amazon SES: include:amazonses.com)",
        f"DMARC for {from_domain}: start by only collecting reports, then move to quarantine and reject:",
        f'  _dmarc.{from_domain}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{from_domain}"',
    ]
    if d.dkim_domain and not _aligned(d.dkim_domain, from_domain):
        lines.append(
            f"WARNING: DKIM_DOMAIN {d.dkim_domain} is not the From domain {from_domain} (nor a parent or subdomain "
            "of it): DMARC will not count this signature. Sign with the From domain."
        )
    if d.bounce_domain:
        lines += [
            f"Bounce domain ({d.bounce_domain}), where DSNs come back (SPF is checked against the Return-Path domain):",
            f"  {d.bounce_domain}. IN MX 10 <the host running `mailer bounces receive`>.",
            f'  {d.bounce_domain}. IN TXT "v=spf1 include:<your relay\'s SPF domain> -all"',
        ]
    return lines


@dataclass(frozen=True)
class Check:
    ok: bool
    lines: list[str]


def check(settings: Settings) -> Check:
    """Everything `mailer dkim check` says: the record to publish, the SPF/DMARC advice, and whether a sample
    message signed as the workers sign verifies with dkimpy's own verifier against that record."""
    import dkim

    from ..render.message import compile_message

    d = settings.deliverability
    signer = signer_for(d)
    if signer is None:
        return Check(
            False,
            [
                "DKIM is not set up: set DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY (or DKIM_PRIVATE_KEY_PATH).",
                "`mailer dkim keygen` makes a key and prints the record to publish.",
                *dns_advice(settings),
            ],
        )
    name = f"{signer.selector}._domainkey.{signer.domain}"
    record = public_record(signer.key)
    lines = [
        f"DKIM: signing as d={signer.domain} s={signer.selector} (RSA {signer.key.key_size} bits, rsa-sha256, "
        "relaxed/relaxed). Publish this TXT record:",
        f"  name:  {name}",
        f"  value: {record}",
        f"  zone:  {zone_lines(name, record)}",
        *dns_advice(settings),
    ]
    sample = compile_message(
        subject="DKIM check",
        mail_from=settings.mail_from,
        html="<p>A sample message signed by mailer dkim check.</p>",
        text="A sample message signed by mailer dkim check.\n",
        body_markers={},
    ).fill(
        {
            "to": "check@example.org",
            "date": "Tue, 01 Dec 2026 12:00:00 +0000",
            "message_id": "dkim-check@" + signer.domain,
            "list_unsubscribe": settings.base_url + "/manage",
        }
    )
    signed = signer.sign_wire(sample).replace(b"\r\n..", b"\r\n.")

    def answer(query, timeout=5):
        return record.encode("ascii") if query == (name + ".").encode("ascii") else None

    verified = dkim.verify(signed, dnsfunc=answer)
    lines.append(
        "Signed a sample message and verified it with dkimpy against that record: OK"
        if verified
        else "Signed a sample message, but dkimpy could NOT verify it against that record: the key or settings "
        "are broken."
    )
    return Check(verified, lines)
