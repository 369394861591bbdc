"""GOV.UK Notify, for TRANSPORT=notify: one email template carries our rendered content.

Notify sends only what a template says, so the service keeps one template whose subject is `((subject))` and whose
body is `((body))`; each message's Subject and text/plain part fill them in (Notify writes its own HTML from that
text). The reference is our Message-ID, so Notify's delivery receipts (POST /api/v1/hooks/notify) name the issue
and the person. A bulk message's one-click unsubscribe link goes along, for Notify's List-Unsubscribe headers.
"""

from __future__ import annotations

import re

from notifications_python_client.errors import APIError
from notifications_python_client.notifications import NotificationsAPIClient

from .base import PermanentFailure, TemporaryFailure
from .parsed import parse, text_part

# Notify takes 3,000 messages a minute from a service (its rate limit): 50 a second.
NOTIFY_MAX_RATE = 50.0
_LINK = re.compile(r"<(https?://[^>\s]+)>")


class NotifyTransport:
    def __init__(self, api_key: str, template_id: str, base_url: str, timeout: float = 30.0):
        self.client = NotificationsAPIClient(api_key, base_url=base_url, timeout=timeout)
        self.template_id = template_id

    def send(self, envelope_from: str, recipient: str, data: bytes) -> str:
        """Send one wire-ready message's content (CRLF, dot-stuffed) through the template; Notify's id back."""
        from ..render import CompiledMessage

        message = parse(CompiledMessage.unstuff(data))
        subject = str(message.get("Subject", ""))
        try:
            body = text_part(message)
        except ValueError as exc:
            raise PermanentFailure(f"cannot send through GOV.UK Notify: {exc}", stage="data") from exc
        reference = str(message.get("Message-ID", "")).strip().strip("<>") or None
        unsubscribe = None
        if message.get("List-Unsubscribe-Post"):
            found = _LINK.search(str(message.get("List-Unsubscribe", "")))
            unsubscribe = found.group(1) if found else None
        try:
            answer = self.client.send_email_notification(
                email_address=recipient,
                template_id=self.template_id,
                personalisation={"subject": subject, "body": body},
                reference=reference,
                one_click_unsubscribe_url=unsubscribe,
            )
        except APIError as exc:
            raise _failure(exc) from exc
        return f"201 Notify {answer.get('id', '') if isinstance(answer, dict) else ''}".strip()

    def close(self) -> None:
        self.client.request_session.close()


def _failure(exc: APIError) -> TemporaryFailure | PermanentFailure:
    if exc.response is None:  # no answer at all: Notify could not be reached
        return TemporaryFailure(f"cannot reach GOV.UK Notify: {exc.__cause__ or exc}", stage="connect")
    status = exc.status_code
    text = f"GOV.UK Notify answered {status}: {_said(exc)}"
    if status in (401, 403):  # our API key: a setting to fix, nothing about the recipient
        return TemporaryFailure(text, status, stage="connect")
    if status == 429:  # over the rate limit or the day's limit: stop and come back later
        return TemporaryFailure(text, status, stage="connect")
    if status >= 500:
        return TemporaryFailure(text, status, stage="data")
    # 400: the address is not valid, the template is wrong, the personalisation too long. Never retried.
    return PermanentFailure(text, stage="rcpt" if "email_address" in text else "data")


def _said(exc: APIError) -> str:
    message = exc.message
    if isinstance(message, list):
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in message)[:500]
    return str(message)[:500]
