"""JSON API under /api/v1, authenticated by bearer tokens (`mailer token create`)."""

from __future__ import annotations

import dataclasses
import hashlib
from functools import wraps

from flask import Blueprint, g, jsonify, request, url_for
from flask_limiter.util import get_remote_address
from sqlalchemy import select

from ... import audit
from ...accounts import TokenRefused, has_role, token_access
from ...audit import Actor
from ...compose.issues import (
    IssueInput,
    approve_issue,
    cancel_issue,
    create_issue,
    get_issue,
    issue_progress,
    parse_send_at,
    pause_issue,
    request_send,
    resume_issue,
    schedule_issue,
    submit_issue,
    unschedule_issue,
)
from ...errors import Conflict, InvalidInput, NotFound
from ...models import Topic
from ...tasks import enqueue, plan_issue
from ..context import db_session, runtime_of_app
from ..limits import API_ADDRESS_LIMIT, API_TOKEN_LIMIT, TEST_SEND_LIMIT, limiter
from .spec import ApiError, Output, json_body, openapi_document, operation

bp = Blueprint("api", __name__)


def _token_key() -> str:
    """Rate-limit key for the bearer token a request carries (a digest, never the token); the address without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return "address:" + get_remote_address()


# Every API call counts against both; a route with its own limit (test sends) counts against all three.
limiter.shared_limit(API_TOKEN_LIMIT, "api-token", key_func=_token_key)(bp)
limiter.shared_limit(API_ADDRESS_LIMIT, "api-address")(bp)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    body = {"error": exc.message}
    if exc.fields:
        body["fields"] = exc.fields
    return jsonify(body), exc.status


@bp.errorhandler(InvalidInput)
def _invalid(exc: InvalidInput):
    return jsonify(error=str(exc), fields=exc.errors), 400


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound):
    return jsonify(error=str(exc)), 404


@bp.errorhandler(Conflict)
def _conflict(exc: Conflict):
    return jsonify(error=str(exc)), 409


def token_required(view=None, *, role: str = "editor"):
    """Bearer token with at least `role` (editor < publisher < admin); 401 without a usable one (see
    accounts.token_access), 403 if too weak. g.api_token: the token's id, name, role, owner_id, owner_email."""
    if view is None:
        return lambda v: token_required(v, role=role)

    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorised("Send an API token as 'Authorization: Bearer <token>'")
        owner_required = runtime_of_app().settings.approval_by_another
        try:
            with runtime_of_app().db.transaction() as session:
                access = token_access(session, token.strip(), owner_required=owner_required)
        except TokenRefused as exc:
            return _unauthorised(str(exc))
        g.api_token = dataclasses.asdict(access)
        if not has_role(g.api_token["role"], role):
            raise ApiError(403, f"This token's role ({g.api_token['role']}) cannot do that: it needs {role}")
        return view(*args, **kwargs)

    wrapper.__token_role__ = role  # for the description: which role the operation needs
    return wrapper


def _unauthorised(message: str):
    response = jsonify(error=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _string(data: dict, key: str, required: bool = True) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise ApiError(400, f"'{key}' is required", {key: "required"})
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string", {key: "must be a string"})
    return value


def _segment_field(data: dict) -> int | None:
    value = data.get("segment")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "'segment' must be a segment id (a whole number)", {"segment": "must be an integer"})
    return value


class OpenAPIOut(Output):
    """The OpenAPI 3.1 description of this API, generated from the models that check each call"""

    model_config = {"extra": "allow"}
    openapi: str


@bp.get("/openapi.json")
@operation(responses={200: OpenAPIOut}, public=True)
def openapi():
    """This description"""
    return jsonify(openapi_document())


class TopicOut(Output):
    """A topic people can subscribe to"""

    slug: str
    name: str
    description: str


@bp.get("/topics")
@token_required
@operation(responses={200: list[TopicOut]})
def topics():
    """List topics people can subscribe to"""
    rows = db_session().scalars(select(Topic).order_by(Topic.position))
    return jsonify([TopicOut(slug=t.slug, name=t.name, description=t.description).dump() for t in rows])


@bp.post("/issues")
@token_required
def create():
    data = json_body()
    unknown = sorted(set(data) - {"subject", "body", "topic", "preheader", "segment", "blocks"})
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}")
    issue_input = IssueInput(
        subject=_string(data, "subject"),
        body=_string(data, "body", required="blocks" not in data),
        topic=_string(data, "topic"),
        preheader=_string(data, "preheader", required=False),
        segment=_segment_field(data),
        blocks=data.get("blocks") if "blocks" in data else None,
    )
    with runtime_of_app().db.transaction() as session:
        issue = create_issue(session, issue_input, actor=_actor())
        body = issue_progress(session, issue)
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.show", issue_id=body["id"])
    return response


@bp.get("/issues/<int:issue_id>")
@token_required
def show(issue_id: int):
    session = db_session()
    return jsonify(issue_progress(session, get_issue(session, issue_id)))


def _actor() -> Actor:
    return Actor.token(g.api_token)


@bp.post("/issues/<int:issue_id>/send")
@token_required(role="publisher")
def send(issue_id: int):
    with runtime_of_app().db.transaction() as session:
        issue = request_send(session, issue_id, _actor(), settings=runtime_of_app().settings)
        body = issue_progress(session, issue)
    enqueue(plan_issue, issue_id)
    return jsonify(body), 202


@bp.post("/issues/<int:issue_id>/test")
@limiter.limit(TEST_SEND_LIMIT, override_defaults=False)  # as well as the API's own limits
@token_required
def test(issue_id: int):
    """Send the issue to up to ten addresses, marked [TEST]: `{"to": ["a@example.org"]}`."""
    from ...audience.emails import normalise_email
    from ...tasks import send_test

    data = json_body()
    to = data.get("to")
    if set(data) - {"to"} or not isinstance(to, list) or not 1 <= len(to) <= 10:
        raise ApiError(400, 'Send {"to": [1 to 10 email addresses]}', {"to": "a list of 1 to 10 addresses"})
    addresses = []
    for i, value in enumerate(to):
        try:
            addresses.append(normalise_email(value if isinstance(value, str) else "", f"to[{i}]"))
        except InvalidInput as exc:
            raise ApiError(400, f"to[{i}] is not an email address", exc.errors) from exc
    with runtime_of_app().db.transaction() as session:
        issue = get_issue(session, issue_id)
        audit.record(session, _actor(), "issue.test", issue, to=addresses)
    enqueue(send_test, issue_id, addresses)
    return jsonify({"id": issue_id, "to": addresses}), 202


@bp.post("/issues/<int:issue_id>/submit")
@token_required
def submit(issue_id: int):
    with runtime_of_app().db.transaction() as session:
        body = issue_progress(session, submit_issue(session, issue_id, _actor()))
    return jsonify(body)


@bp.post("/issues/<int:issue_id>/approve")
@token_required(role="publisher")
def approve(issue_id: int):
    by_another = runtime_of_app().settings.approval_by_another
    with runtime_of_app().db.transaction() as session:
        body = issue_progress(session, approve_issue(session, issue_id, _actor(), by_another=by_another))
    return jsonify(body)


@bp.post("/issues/<int:issue_id>/schedule")
@token_required(role="publisher")
def schedule(issue_id: int):
    data = json_body()
    unknown = sorted(set(data) - {"send_at"})
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}")
    send_at = parse_send_at(data.get("send_at"))
    with runtime_of_app().db.transaction() as session:
        body = issue_progress(session, schedule_issue(session, issue_id, send_at, _actor()))
    return jsonify(body)


@bp.post("/issues/<int:issue_id>/unschedule")
@token_required(role="publisher")
def unschedule(issue_id: int):
    with runtime_of_app().db.transaction() as session:
        body = issue_progress(session, unschedule_issue(session, issue_id, _actor()))
    return jsonify(body)


@bp.get("/issues/<int:issue_id>/deliveries")
@token_required(role="publisher")  # addresses: people's personal data
def deliveries(issue_id: int):
    """Who got the issue and how it went: `?status=failed&after=<id>&limit=<1..1000>`."""
    from ...delivery import ledger
    from ...models import DELIVERY_STATUSES

    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiError(400, f"Unknown status {status!r}: use one of {', '.join(DELIVERY_STATUSES)}")
    try:
        after = int(request.args.get("after", 0))
        limit = int(request.args.get("limit", 100))
    except ValueError as exc:
        raise ApiError(400, "'after' and 'limit' must be whole numbers") from exc
    if not 1 <= limit <= 1000 or not 0 <= after < 2**63:
        raise ApiError(400, "'limit' must be 1 to 1000 and 'after' a row id")
    session = db_session()
    issue = get_issue(session, issue_id)
    rows = ledger.recipients(session, issue.id, status, after, limit)
    return jsonify(
        {
            "deliveries": [
                {
                    "id": r.delivery_id,
                    "email": r.email,
                    "status": r.status,
                    "attempts": r.attempts,
                    "reason": r.last_error,
                    "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                }
                for r in rows
            ],
            "next_after": rows[-1].delivery_id if len(rows) == limit else None,
        }
    )


_CONTROLS = {"pause": pause_issue, "resume": resume_issue, "cancel": cancel_issue}


@bp.post("/issues/<int:issue_id>/<any(pause, resume, cancel):action>")
@token_required(role="publisher")
def control(issue_id: int, action: str):
    with runtime_of_app().db.transaction() as session:
        issue = _CONTROLS[action](session, issue_id, _actor())
        body = issue_progress(session, issue)
    if action == "resume":
        enqueue(plan_issue, issue_id)
    return jsonify(body)


from . import audience, content  # noqa: E402,F401,I001  (register their routes on bp)
