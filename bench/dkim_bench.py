"""What DKIM signing costs per message: filling a 34 KB issue per recipient, with and without signing.

In one run, on the same compiled issue (the 40-section newsletter render_bench uses):
- `fill`: `CompiledMessage.fill` only (what a worker does per recipient without DKIM);
- `fill_sign`: fill, then sign as every transport does with DKIM set (mailer.transports.dkim, RSA-2048,
  rsa-sha256, relaxed/relaxed, the key parsed once);
- `dkimpy_sign`: fill, then dkimpy's own `dkim.sign` with the same key and headers (the peer: it parses the PEM
  and runs RSA in pure Python for every message), on fewer messages since it is slow;
and the parts of one signature (body canonicalisation ours vs dkimpy's, the RSA operation), plus how much of the
body comes before the first per-recipient value (the share a per-issue hash midstate could save).

`BENCH_RECIPIENTS` sets the count (default 2000; signed: at most 1000; the peer: a tenth, at most 100).
Prints figures, then one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed  # noqa: E402
from dkim.canonicalization import Relaxed  # noqa: E402
from render_bench import issue_content  # noqa: E402  (the same issue as every send bench)

from mailer.links import Links  # noqa: E402
from mailer.models import utcnow  # noqa: E402
from mailer.render import compile_message, render_email  # noqa: E402
from mailer.render.message import markers_for, new_marker_prefix  # noqa: E402
from mailer.transports.dkim import SIGNED, DkimSigner, new_key, pem_of, relaxed_body  # noqa: E402


def compiled():
    content = issue_content()
    markers = markers_for(new_marker_prefix(), ("unsubscribe_url", "manage_url"))
    html, text = render_email(content, markers)
    return compile_message(
        subject=content.subject,
        mail_from="Trust Matters <tm@example.nhs.uk>",
        html=html,
        text=text,
        body_markers=markers,
        list_id=("Trust Matters", "trust-matters.example.nhs.uk"),
        extra_headers={"Feedback-ID": "issue1:trust-matters:newsletter:example.nhs.uk"},
    )


def rate(work, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        work(i)
    return count / (time.perf_counter() - start)


def per_call_us(work, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        work()
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    n = int(os.environ.get("BENCH_RECIPIENTS", "2000"))
    peer_n = max(10, min(n // 10, 100))
    links = Links("bench-secret", "https://mailer.example.nhs.uk")
    message = compiled()
    date = format_datetime(utcnow())
    key = new_key(2048)
    pem = pem_of(key).encode()
    signer = DkimSigner("example.nhs.uk", "tm2026", key)

    def fill(i: int) -> bytes:
        public_id = f"{i:032x}"
        url = links.unsubscribe_url(public_id, 1)
        return message.fill(
            {
                "to": f"reader{i}@example.org",
                "date": date,
                "message_id": f"issue-1.{i}@example.nhs.uk",
                "list_unsubscribe": url,
                "unsubscribe_url": url,
                "manage_url": links.manage_url(public_id),
            }
        )

    sample = fill(0)
    unstuffed = sample.replace(b"\r\n..", b"\r\n.")
    present = [h for h in SIGNED if b"\r\n" + h in b"\r\n" + unstuffed.split(b"\r\n\r\n")[0].lower()]

    def peer(i: int) -> bytes:
        data = fill(i).replace(b"\r\n..", b"\r\n.")
        return dkim.sign(
            data, b"tm2026", b"example.nhs.uk", pem, canonicalize=(b"relaxed", b"relaxed"), include_headers=present
        )

    rate(fill, min(n, 200))  # warm up
    fill_rate = rate(fill, n)
    signed_n = min(n, 1000)  # enough for a steady rate; CI's small run stays at seconds
    sign_rate = rate(lambda i: signer.sign_wire(fill(i)), signed_n)
    peer_rate = rate(peer, peer_n)

    body = unstuffed.split(b"\r\n\r\n", 1)[1]
    digest = hashlib.sha256(b"x").digest()
    parts = {
        "body_canon_ours_us": per_call_us(lambda: relaxed_body(body), 500),
        "body_canon_dkimpy_us": per_call_us(lambda: Relaxed.canonicalize_body(body), 100),
        "body_sha256_us": per_call_us(lambda: hashlib.sha256(body).digest(), 500),
        "rsa2048_openssl_us": per_call_us(
            lambda: key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())), 200
        ),
        "whole_signature_us": per_call_us(lambda: signer.header(unstuffed), 200),
    }
    # Where two recipients' bodies first differ: what a hash midstate kept per issue could skip.
    other = fill(1).replace(b"\r\n..", b"\r\n.").split(b"\r\n\r\n", 1)[1]
    static_prefix = next((i for i, (a, b) in enumerate(zip(body, other, strict=False)) if a != b), len(body))
    figures = {
        "message_bytes": len(sample),
        "recipients": n,
        "signed_messages": signed_n,
        "fill_msgs_per_s": round(fill_rate),
        "fill_sign_msgs_per_s": round(sign_rate),
        "ratio_sign_over_fill": round(sign_rate / fill_rate, 4),
        "dkimpy_sign_msgs_per_s": round(peer_rate, 1),
        "peer_messages": peer_n,
        "ratio_ours_over_dkimpy": round(sign_rate / peer_rate, 1),
        "sign_us_per_message": round(1e6 / sign_rate - 1e6 / fill_rate),
        **{k: round(v, 1) for k, v in parts.items()},
        "static_body_prefix_share": round(static_prefix / len(body), 3),
        "ed25519": "not used (dkimpy verifies it only with PyNaCl; receivers still need RSA)",
    }
    print(f"34 KB issue ({len(sample)} bytes), {n} recipients, one core:")
    print(f"  fill only:          {fill_rate:10,.0f} msg/s")
    print(f"  fill + DKIM (ours): {sign_rate:10,.0f} msg/s  ({sign_rate / fill_rate:.3f} of fill only)")
    print(f"  fill + dkim.sign:   {peer_rate:10,.1f} msg/s  (dkimpy as it comes, {peer_n} messages)")
    for name, value in parts.items():
        print(f"  {name}: {value:,.1f} µs")
    print(f"  body before the first per-recipient value: {figures['static_body_prefix_share']:.1%}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
