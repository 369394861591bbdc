"""Webhooks of the providers that send for us: public (no token, no session), each checking its own proof.

- POST /api/v1/hooks/ses: Amazon SES's bounces and complaints through an SNS topic (the message signature and its
  certificate's host are checked: feedback.sns).
- POST /api/v1/hooks/notify: GOV.UK Notify's delivery receipts (its bearer token: feedback.receipts).

Each parses, records what it heard in one transaction through the feedback room, and answers. A bad signature or
token is a 403 with nothing changed; the same message twice is a 200 that records nothing new.
"""

from __future__ import annotations

from flask import jsonify, request

from ...feedback import receipts, sns
from ...inputs import parse
from ..context import runtime_of_app
from ..limits import HOOK_LIMIT, limiter
from . import bp
from .spec import ApiError, Output, json_body, operation


class HookAnswer(Output):
    """What the hook did with the message"""

    said: str
    recorded: int  # reports recorded for the first time (0 for a replay, a delivery, a confirmation)


@bp.post("/hooks/ses")
@limiter.limit(HOOK_LIMIT)
@operation(body=sns.SnsMessage, read_body=False, responses={200: HookAnswer}, errors=(400, 403, 413, 429), public=True)
def hooks_ses():
    """Amazon SES bounces and complaints, posted by SNS

    Subscribe this URL (https) to the SNS topic that SES publishes bounce and complaint notifications to. The
    message's signature is checked with the certificate at SigningCertURL, which must be on an SNS host; a topic
    not in SNS_TOPIC_ARNS (when set) is refused. A SubscriptionConfirmation is confirmed by fetching its
    SubscribeURL. A Bounce (Permanent: hard; otherwise soft) or Complaint is recorded once per recipient. SNS posts
    the JSON as text/plain: the body is read whatever its content type."""
    body = request.stream.read(sns.MAX_BODY + 1)  # never more than one byte past the limit
    if len(body) > sns.MAX_BODY:
        raise ApiError(413, f"An SNS message is at most {sns.MAX_BODY // 1024} KB")
    rt = runtime_of_app()
    try:
        with rt.db.transaction() as session:
            heard = sns.receive(session, body, rt.settings)
    except sns.Unreadable as exc:
        raise ApiError(400, str(exc)) from None
    except sns.Refused as exc:
        raise ApiError(403, str(exc)) from None
    return jsonify(HookAnswer(said=heard.said, recorded=sum(r.new for r in heard.recorded)).dump())


@bp.post("/hooks/notify")
@limiter.limit(HOOK_LIMIT)
@operation(
    body=receipts.Receipt,
    read_body=False,
    responses={200: HookAnswer},
    errors=(400, 403, 404, 413, 415, 429),
    public=True,
)
def hooks_notify():
    """GOV.UK Notify delivery receipts

    Set this URL (https) as the service's delivery receipts callback in Notify, with NOTIFY_CALLBACK_TOKEN as its
    bearer token. permanent-failure is a hard bounce, temporary-failure a soft one; technical-failure and delivered
    are heard and not counted against anyone. 404 while NOTIFY_CALLBACK_TOKEN is unset."""
    rt = runtime_of_app()
    accepted = receipts.token_accepted(request.headers.get("Authorization", ""), rt.settings)
    if accepted is None:
        raise ApiError(404, "Notify callbacks are not taken here: NOTIFY_CALLBACK_TOKEN is not set")
    if not accepted:
        raise ApiError(403, "Send the callback token as 'Authorization: Bearer <NOTIFY_CALLBACK_TOKEN>'")
    return _receipt()


def _receipt():
    receipt = parse(receipts.Receipt, json_body())
    rt = runtime_of_app()
    with rt.db.transaction() as session:
        heard = receipts.receive(session, receipt, rt.settings)
    new = int(heard.recorded is not None and heard.recorded.new)
    return jsonify(HookAnswer(said=heard.said, recorded=new).dump())
