"""The ways out side by side, and the SES webhook's signature check against a bare RSA verify.

Sends BENCH_MESSAGES copies (default 300) of one real issue's message, filled per recipient as delivery fills it,
through each transport in this process, one after another, each against a server on localhost in the same run:
SMTP into an aiosmtpd server (the peer: what the project did before), Amazon SES's API into moto's server (boto3
over HTTP), GOV.UK Notify's API into the tests' stand-in (JWT per call, the text part parsed out). `ratio` is each
rate over SMTP's. No rate limit is applied: this is the cost of each transport, not the provider's allowance.

Then the SNS check: BENCH_VERIFICATIONS (default 2000) signed notifications verified by `feedback.sns.verify`
(certificate cached) against the bare cryptography verify of the same signature (the floor). Prints the figures,
then one JSON line last.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the stand-ins of Notify and of SNS's certificate host
sys.path.insert(0, str(ROOT / "bench"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rate(send, datas, recipients) -> float:
    started = time.perf_counter()
    for data, recipient in zip(datas, recipients, strict=True):
        send(recipient, data)
    return len(datas) / (time.perf_counter() - started)


def main() -> None:
    count = int(os.environ.get("BENCH_MESSAGES", "300"))
    checks = int(os.environ.get("BENCH_VERIFICATIONS", "2000"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    datas, recipients = sample(count)
    figures: dict = {"messages": count, "message_bytes": len(datas[0])}

    from aiosmtpd.controller import Controller

    from mailer.transports import SmtpTransport

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    smtp = SmtpTransport(f"smtp://127.0.0.1:{controller.port}")
    figures["smtp_msgs_per_s"] = rate(lambda r, d: smtp.send("bounces@mailer.test", r, d), datas, recipients)
    smtp.close()
    controller.stop()

    import boto3
    from moto.server import ThreadedMotoServer

    from mailer.transports.ses import SesTransport

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto.get_host_and_port()[1]}"
    boto3.client("sesv2", region_name="eu-west-2", endpoint_url=endpoint).create_email_identity(
        EmailIdentity="mailer.test"
    )
    ses = SesTransport("eu-west-2", endpoint)
    figures["ses_msgs_per_s"] = rate(lambda r, d: ses.send("bounces@mailer.test", r, d), datas, recipients)
    moto.stop()

    from mailer.transports.notify import NotifyTransport
    from support import notify_standin

    with notify_standin.NotifyStandIn(lifetime=600) as standin:
        notify = NotifyTransport(notify_standin.API_KEY, notify_standin.TEMPLATE_ID, standin.base_url)
        figures["notify_msgs_per_s"] = rate(lambda r, d: notify.send("x@mailer.test", r, d), datas, recipients)
        assert len(standin.sent) == count, "the stand-in did not get every message"
    for name in ("ses", "notify"):
        figures[f"{name}_ratio"] = round(figures[f"{name}_msgs_per_s"] / figures["smtp_msgs_per_s"], 3)

    figures |= verification(checks)
    for key, value in figures.items():
        print(f"{key:>28}: {round(value, 3) if isinstance(value, float) else value}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


def sample(count: int) -> tuple[list[bytes], list[str]]:
    """render_bench's issue (40 sections), compiled once and filled for `count` recipients as delivery fills it."""
    from email.utils import format_datetime

    from render_bench import issue_content

    from mailer.models import utcnow
    from mailer.render import compile_message, render_email
    from mailer.render.message import markers_for, new_marker_prefix

    content = issue_content()
    markers = markers_for(new_marker_prefix(), ("unsubscribe_url", "manage_url"))
    html, text = render_email(content, markers)
    message = compile_message(
        subject=content.subject,
        mail_from="Trust Matters <trust-matters@mailer.test>",
        html=html,
        text=text,
        body_markers=markers,
        list_id=("Trust Matters", "trust-matters.mailer.test"),
    )
    date = format_datetime(utcnow())
    recipients = [f"reader{i}@example.org" for i in range(count)]
    datas = []
    for i, recipient in enumerate(recipients):
        url = f"https://mailer.example.nhs.uk/u/{i:032x}"
        datas.append(
            message.fill(
                {
                    "to": recipient,
                    "date": date,
                    "message_id": f"issue-1.{i}@mailer.test",
                    "list_unsubscribe": url,
                    "unsubscribe_url": url,
                    "manage_url": url,
                }
            )
        )
    return datas, recipients


def verification(count: int) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from mailer.config import load_settings
    from mailer.feedback import sns
    from support.providers import with_deliverability
    from support.sns import SnsStandIn, bounce_event

    with tempfile.TemporaryDirectory() as directory, SnsStandIn(Path(directory), lifetime=600) as host:
        settings = with_deliverability(
            load_settings({"SECRET_KEY": "bench", "VAR_DIR": directory, "EMAIL_HASH_KEY": "b" * 40}),
            sns_certificate_hosts=r"127\.0\.0\.1",
            sns_ca_bundle=str(host.ca_bundle),
        )
        messages = [
            host.notification(bounce_event([f"p{i}@example.org"], f"<issue-1.{i}@mailer.test>")) for i in range(count)
        ]
        sns.verify(messages[0], settings)  # the certificate is fetched once, here
        started = time.perf_counter()
        for message in messages:
            sns.verify(sns.read(json.dumps(message).encode()), settings)
        ours = count / (time.perf_counter() - started)
        key = host.key.public_key()
        import base64

        started = time.perf_counter()
        for message in messages:
            key.verify(
                base64.b64decode(message["Signature"]), sns.canonical(message), padding.PKCS1v15(), hashes.SHA256()
            )
        floor = count / (time.perf_counter() - started)
    return {
        "sns_verifications": count,
        "sns_verify_per_s": ours,
        "rsa_verify_per_s": floor,
        "sns_verify_ratio": round(ours / floor, 3),
    }


if __name__ == "__main__":
    main()
