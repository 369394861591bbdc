"""Amazon SNS's side of POST /api/v1/hooks/ses, for tests: a signing certificate served over https, and messages
signed with its key as SNS signs them.

The certificate host is an https server on 127.0.0.1 whose TLS certificate comes from a certificate authority
made for the test with trustme; the app trusts that authority through SNS_CA_BUNDLE (a setting production leaves
unset: the system's trust store) and takes 127.0.0.1 as an SNS host through SNS_CERTIFICATE_HOSTS. The server
serves the signing certificate at /SimpleNotificationService-test.pem, answers subscription confirmations at
/confirm, and keeps every path it was asked for. It stops at the end of the `with` block, or by itself after
`lifetime` seconds if that never comes.
"""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mailer.feedback.sns import canonical
from support.standin import HttpStandIn, QuietHandler, local_tls

TOPIC = "arn:aws:sns:eu-west-2:123456789012:ses-feedback"
CERTIFICATE_PATH = "/SimpleNotificationService-test.pem"


def signing_pair(name: str = "sns.test") -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate (PEM) for it, as SNS's signing certificate is."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class SnsStandIn(HttpStandIn):
    directory: Path
    lifetime: float = 120.0
    asked: list[str] = field(default_factory=list)  # paths GET asked for, in order

    def __enter__(self) -> SnsStandIn:
        self.key, self.certificate = signing_pair()
        self._tls, self.ca_bundle = local_tls(self.directory, "sns-test")
        self.serve()
        return self

    def tls(self) -> ssl.SSLContext:
        return self._tls

    def handler(self):
        standin = self

        class Handler(QuietHandler):
            def do_GET(self):
                standin.asked.append(self.path)
                if self.path == CERTIFICATE_PATH:
                    self.answer(200, "application/x-pem-file", standin.certificate)
                elif self.path.startswith("/confirm?"):
                    self.answer(200, "text/xml", b"<ConfirmSubscriptionResponse/>")
                else:
                    self.answer(404, "text/plain", b"not here")

        return Handler

    @property
    def base(self) -> str:
        return self.base_url

    @property
    def certificate_url(self) -> str:
        return self.base + CERTIFICATE_PATH

    def notification(self, event: dict, *, version: str = "2", key=None, **fields) -> dict:
        """An SNS Notification carrying `event` (an SES event), signed (with `key`, else the served one's)."""
        message = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": json.dumps(event),
            "Timestamp": "2026-12-01T16:00:00.000Z",
            "SignatureVersion": version,
            "SigningCertURL": self.certificate_url,
            **fields,
        }
        return self.sign(message, key=key)

    def subscription_confirmation(self, **fields) -> dict:
        token = uuid.uuid4().hex
        message = {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
            "SubscribeURL": f"{self.base}/confirm?Action=ConfirmSubscription&Token={token}",
            "Timestamp": "2026-12-01T16:00:00.000Z",
            "SignatureVersion": "1",
            "SigningCertURL": self.certificate_url,
            **fields,
        }
        return self.sign(message)

    def sign(self, message: dict, *, key=None) -> dict:
        digest = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
        signature = (key or self.key).sign(canonical(message), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}


def bounce_event(recipients: list[str], message_id: str, *, kind: str = "Permanent", diagnostic: str = "") -> dict:
    """An SES bounce notification as SES writes it (identity notifications: notificationType)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": kind,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": r,
                    "action": "failed",
                    "status": "5.1.1" if kind == "Permanent" else "4.2.2",
                    "diagnosticCode": diagnostic or "smtp; 550 5.1.1 user unknown",
                }
                for r in recipients
            ],
            "timestamp": "2026-12-01T16:00:00.000Z",
            "feedbackId": "0102017f-bounce",
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-2.amazonses.com",
        },
        "mail": _mail(recipients, message_id),
    }


def complaint_event(recipient: str, message_id: str) -> dict:
    """An SES complaint as configuration-set event publishing writes it (eventType)."""
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": "2026-12-01T16:00:00.000Z",
            "feedbackId": "0102017f-complaint",
            "complaintFeedbackType": "abuse",
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
        },
        "mail": _mail([recipient], message_id),
    }


def delivery_event(recipient: str, message_id: str) -> dict:
    return {
        "notificationType": "Delivery",
        "delivery": {"timestamp": "2026-12-01T16:00:00.000Z", "recipients": [recipient], "smtpResponse": "250 ok"},
        "mail": _mail([recipient], message_id),
    }


def _mail(recipients: list[str], message_id: str) -> dict:
    return {
        "timestamp": "2026-12-01T15:59:58.000Z",
        "messageId": "0102017f-ses-own-id",
        "source": "trust-matters@mailer.test",
        "destination": recipients,
        "commonHeaders": {
            "from": ["Trust Matters <trust-matters@mailer.test>"],
            "to": recipients,
            "messageId": message_id,
            "subject": "Progress update",
        },
    }
