"""Amazon SES through its API (sesv2 SendEmail with the raw message), for TRANSPORT=ses.

The message goes as it is (our headers, our MIME, our DKIM signature when set): SES only adds its own. SES chooses
the envelope sender itself (its own bounce domain, or the account's custom MAIL FROM domain), so bounces and
complaints come back by SNS (POST /api/v1/hooks/ses), not by DSN to our VERP address. Credentials come from
the usual AWS sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role).
"""

from __future__ import annotations

import logging
import re

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ConnectTimeoutError

from .base import PermanentFailure, TemporaryFailure
from .parsed import header_address

log = logging.getLogger(__name__)

# Nothing about the message or the address: sending cannot go on now (rows go back without using a try).
_STOP = {
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "LimitExceededException",  # the day's quota is used up
    "SendingPausedException",
    "AccountSendingPausedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",  # the configuration set does not exist: a setting to fix
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
}
# The address itself is refused (malformed, or not allowed from this account).
_ADDRESS = {"BadRequestException", "InvalidParameterValue"}
_NO_MAILBOX = re.compile(r"does not exist|no such (user|mailbox)|unknown (user|mailbox)", re.IGNORECASE)


class SesTransport:
    def __init__(self, region: str | None, endpoint_url: str | None = None, configuration_set: str | None = None):
        config = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
        session = boto3.session.Session()
        self.client = session.client("sesv2", region_name=region, endpoint_url=endpoint_url, config=config)
        self._v1 = lambda: session.client("ses", region_name=region, endpoint_url=endpoint_url, config=config)
        self.configuration_set = configuration_set

    def send(self, envelope_from: str, recipient: str, data: bytes) -> str:
        """Send one wire-ready message (CRLF, dot-stuffed); the From header is the sending identity."""
        from ..render import CompiledMessage

        raw = CompiledMessage.unstuff(data)
        request = {
            "FromEmailAddress": header_address(raw, b"from") or envelope_from,
            "Destination": {"ToAddresses": [recipient]},
            "Content": {"Raw": {"Data": raw}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            answer = self.client.send_email(**request)
        except ClientError as exc:
            raise _failure(exc) from exc
        except (ConnectionError, ConnectTimeoutError) as exc:  # never reached SES
            raise TemporaryFailure(f"cannot reach Amazon SES: {exc}", stage="connect") from exc
        except BotoCoreError as exc:  # lost on the way back: SES may have the message; counts as a try
            raise TemporaryFailure(f"Amazon SES did not answer: {exc}", stage="data") from exc
        return f"250 SES {answer.get('MessageId', '')}".strip()

    def max_send_rate(self) -> float | None:
        """The account's SendQuota.MaxSendRate (messages a second), from GetAccount, or SES's older GetSendQuota
        where GetAccount is not allowed or not offered; None when neither answers."""
        try:
            return float(self.client.get_account()["SendQuota"]["MaxSendRate"])
        except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
            log.info("SES GetAccount did not give a send rate (%s); asking GetSendQuota", exc)
        try:
            return float(self._v1().get_send_quota()["MaxSendRate"])
        except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
            log.warning("SES's send rate is unknown (%s): sending at SEND_RATE alone", exc)
            return None

    def close(self) -> None:
        self.client.close()


def _failure(exc: ClientError) -> TemporaryFailure | PermanentFailure:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    text = f"Amazon SES refused: {code} {error.get('Message', '')}".strip()
    if code in _STOP or status in (401, 403, 429):
        return TemporaryFailure(text, stage="connect")
    if status >= 500:
        return TemporaryFailure(text, stage="data")
    if code in _ADDRESS:
        if _NO_MAILBOX.search(text):
            return PermanentFailure(f"{text} (5.1.1)", 550, stage="rcpt")
        return PermanentFailure(text, stage="rcpt")
    # MessageRejected (content, an unverified sender in the sandbox) and the rest: never retried, nobody suppressed.
    return PermanentFailure(text, stage="data")
