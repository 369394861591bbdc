"""A stand-in of GOV.UK Notify's HTTP API on 127.0.0.1, for the Notify transport's tests.

It answers POST /v2/notifications/email as Notify does: it checks the bearer JWT the way Notify does (HS256, `iss`
the service id, signed with the API key's secret, `iat` within 30 seconds), the template id and the body, answers
201 with a notification, and keeps what it was sent. Chosen addresses get a 400 (not a valid address) or a 429
(rate limit), as Notify's own answers are written. One server per test, on a free port, in a thread; it stops at
the end of the `with` block, or by itself after `lifetime` seconds if that never comes (support.standin).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

import jwt

from support.standin import HttpStandIn, QuietHandler

SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"
API_KEY = f"test_key-{SERVICE_ID}-{SECRET}"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"


@dataclass
class Sent:
    token_claims: dict
    body: dict


@dataclass
class NotifyStandIn(HttpStandIn):
    lifetime: float = 120.0
    sent: list[Sent] = field(default_factory=list)
    refused: list[tuple[int, dict]] = field(default_factory=list)  # (status, body) of each refusal
    invalid: set[str] = field(default_factory=set)  # addresses answered 400
    throttled: set[str] = field(default_factory=set)  # addresses answered 429

    def handler(self):
        standin = self

        class Handler(QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                status, answer = standin._answer(
                    self.path, self.headers.get("Authorization", ""), self.rfile.read(length)
                )
                self.answer(status, "application/json", json.dumps(answer).encode())

        return Handler

    def _answer(self, path: str, authorization: str, raw: bytes) -> tuple[int, dict]:
        status, answer = self._checked(path, authorization, raw)
        if status >= 400:
            self.refused.append((status, answer))
        return status, answer

    def _checked(self, path: str, authorization: str, raw: bytes) -> tuple[int, dict]:
        if path != "/v2/notifications/email":
            return _error(404, "BadRequestError", "Resource not found")
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer":
            return _error(401, "AuthError", "Unauthorized: authentication token must be provided")
        try:
            claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_iat": True})
        except jwt.InvalidTokenError as exc:
            return _error(403, "AuthError", f"Invalid token: {exc}")
        if claims.get("iss") != SERVICE_ID or abs(time.time() - int(claims.get("iat", 0))) > 30:
            return _error(403, "AuthError", "Invalid token: service not found or token expired")
        body = json.loads(raw)
        if body.get("template_id") != TEMPLATE_ID:
            return _error(400, "BadRequestError", "Template not found")
        address = body.get("email_address", "")
        if address in self.invalid or "@" not in address:
            return _error(400, "ValidationError", "email_address Not a valid email address")
        if address in self.throttled:
            return _error(
                429, "RateLimitError", "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds"
            )
        self.sent.append(Sent(claims, body))
        notification = str(uuid.uuid4())
        personalisation = body.get("personalisation", {})
        return 201, {
            "id": notification,
            "reference": body.get("reference"),
            "content": {
                "subject": personalisation.get("subject", ""),
                "body": personalisation.get("body", ""),
                "from_email": "trust.matters@notifications.service.gov.uk",
                "one_click_unsubscribe_url": body.get("one_click_unsubscribe_url"),
            },
            "uri": f"{self.base_url}/v2/notifications/{notification}",
            "template": {"id": TEMPLATE_ID, "version": 1, "uri": f"{self.base_url}/v2/template/{TEMPLATE_ID}"},
        }


def _error(status: int, error: str, message: str) -> tuple[int, dict]:
    return status, {"status_code": status, "errors": [{"error": error, "message": message}]}
