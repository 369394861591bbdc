"""API for progress updates and digests."""

from __future__ import annotations

from flask import g, jsonify, url_for
from sqlalchemy import select

from ...audit import Actor
from ...compose.digests import DIGEST_FREQUENCIES, period_of
from ...compose.updates import UpdateInput, create_update, get_update, publish_update, update_json
from ...models import Update, utcnow
from ...tasks import enqueue, plan_issue, run_digest_task
from ..context import db_session, runtime_of_app
from . import ApiError, _string, bp, json_body, token_required

UPDATE_FIELDS = {"title", "summary", "body", "topic", "areas", "services", "link", "publish"}


def _strings(data: dict, key: str) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"'{key}' must be a list of strings", {key: "must be a list of strings"})
    return value


@bp.get("/updates")
@token_required
def updates_list():
    rows = db_session().scalars(select(Update).order_by(Update.id.desc()).limit(200))
    return jsonify([update_json(u) for u in rows])


@bp.post("/updates")
@token_required(role="publisher")
def updates_create():
    """A progress update: a draft, unless `"publish": true` (then it is published and sent now)."""
    data = json_body()
    unknown = sorted(set(data) - UPDATE_FIELDS)
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}", {k: "unknown field" for k in unknown})
    publish = data.get("publish", False)
    if not isinstance(publish, bool):
        raise ApiError(400, "'publish' must be true or false", {"publish": "must be a boolean"})
    update_input = UpdateInput(
        title=_string(data, "title", required=False),
        topic=_string(data, "topic", required=False),
        summary=_string(data, "summary", required=False),
        body=_string(data, "body", required=False),
        areas=_strings(data, "areas"),
        services=_strings(data, "services"),
        link=_string(data, "link", required=False) or None,
    )
    actor = Actor.token(g.api_token)
    with runtime_of_app().db.transaction() as session:
        update = create_update(session, update_input, actor)
        issue = publish_update(session, update.id, actor, runtime_of_app().settings) if publish else None
        body = update_json(update) | {"email_issue": issue.id if issue else None}
    if issue is not None:
        enqueue(plan_issue, issue.id)
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.updates_show", update_id=body["id"])
    return response


@bp.get("/updates/<int:update_id>")
@token_required
def updates_show(update_id: int):
    return jsonify(update_json(get_update(db_session(), update_id)))


@bp.post("/updates/<int:update_id>/publish")
@token_required(role="publisher")
def updates_publish(update_id: int):
    with runtime_of_app().db.transaction() as session:
        issue = publish_update(session, update_id, Actor.token(g.api_token), runtime_of_app().settings)
        body = update_json(get_update(session, update_id)) | {"email_issue": issue.id}
    enqueue(plan_issue, issue.id)
    return jsonify(body)


@bp.post("/digests/run")
@token_required(role="publisher")
def digests_run():
    """Run the weekly or monthly digest for the current period now: `{"frequency": "weekly"}`. Running it
    again in the same period sends nothing more."""
    data = json_body()
    if set(data) - {"frequency"} or data.get("frequency") not in DIGEST_FREQUENCIES:
        raise ApiError(400, 'Send {"frequency": "weekly" or "monthly"}', {"frequency": "weekly or monthly"})
    # Run by a worker, not in this request: a long run must not be cut short by a web timeout.
    period = period_of(data["frequency"], utcnow())
    queued = enqueue(run_digest_task, data["frequency"])
    if not queued:
        raise ApiError(503, "The queue is not answering: try again shortly")
    return jsonify({"frequency": data["frequency"], "period": period, "queued": True}), 202
