"""API for the audience: segments, subscribers (add, look up, subject access, erase), import and export."""

from __future__ import annotations

from flask import g, jsonify, request, url_for
from sqlalchemy import select

from ... import audit
from ...audience.export import export_audience, export_csv
from ...audience.import_file import ImportFileError
from ...audience.importer import import_status, receive_import
from ...audience.people import (
    add_subscriber,
    clean_attributes,
    erase,
    find_subscriber,
    parse_consent_date,
    parse_subscriptions,
    profile,
    subject_access,
)
from ...audience.segments import (
    count,
    delete_segment,
    get_segment,
    save_segment,
    segment_audience,
    segment_rules,
    segment_summary,
)
from ...audit import Actor
from ...errors import InvalidInput, NotFound
from ...models import Import, Segment, Topic
from ...tasks import enqueue, run_import_task, send_confirmation
from ..context import db_session, runtime_of_app
from ..downloads import csv_download
from . import ApiError, bp, json_body, token_required

# Imports stream, so they may be much larger than a form post.
IMPORT_MAX_BYTES = 512 * 1024 * 1024


def _only(data: dict, allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(prefix + k for k in set(data) - allowed)
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}", {k: "unknown field" for k in unknown})


# --- segments ------------------------------------------------------------------------------------------


@bp.get("/segments")
@token_required
def segments_list():
    session = db_session()
    return jsonify([segment_summary(session, s) for s in session.scalars(select(Segment).order_by(Segment.name))])


@bp.post("/segments")
@token_required
def segments_create():
    data = json_body()
    _only(data, {"name", "rules", "description"})
    if "rules" not in data:
        raise ApiError(400, "'rules' is required", {"rules": "required"})
    with runtime_of_app().db.transaction() as session:
        segment = save_segment(
            session, name=data.get("name"), rules=data["rules"], description=data.get("description") or ""
        )
        audit.record(session, Actor.token(g.api_token), "segment.save", segment, name=segment.name)
        body = segment_summary(session, segment) | {"count": count(session, segment_audience(segment.rules))}
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.segments_show", segment_id=body["id"])
    return response


@bp.get("/segments/<int:segment_id>")
@token_required
def segments_show(segment_id: int):
    session = db_session()
    return jsonify(segment_summary(session, get_segment(session, segment_id)))


@bp.put("/segments/<int:segment_id>")
@token_required
def segments_update(segment_id: int):
    data = json_body()
    _only(data, {"name", "rules", "description"})
    with runtime_of_app().db.transaction() as session:
        segment = get_segment(session, segment_id)
        segment = save_segment(
            session,
            name=data.get("name", segment.name),
            rules=data.get("rules", segment.rules),
            description=data.get("description", segment.description),
            segment=segment,
        )
        audit.record(session, Actor.token(g.api_token), "segment.save", segment, name=segment.name)
        body = segment_summary(session, segment)
    return jsonify(body)


@bp.delete("/segments/<int:segment_id>")
@token_required
def segments_delete(segment_id: int):
    with runtime_of_app().db.transaction() as session:
        delete_segment(session, segment_id)
        audit.record(session, Actor.token(g.api_token), "segment.delete", None, segment=segment_id)
    return "", 204


@bp.get("/segments/<int:segment_id>/count")
@token_required
def segments_count(segment_id: int):
    session = db_session()
    segment = get_segment(session, segment_id)
    return jsonify({"id": segment.id, "count": count(session, segment_audience(segment_rules(session, segment)))})


@bp.post("/segments/count")
@token_required
def segments_preview_count():
    """Count for rules not yet saved: `{"rules": ...}` → `{"count"}` (the admin's live count uses this too)."""
    from ...audience.segments import check_rules

    data = json_body()
    _only(data, {"rules"})
    session = db_session()
    rules = check_rules(session, data.get("rules"))
    return jsonify({"count": count(session, segment_audience(rules))})


@bp.get("/segments/<int:segment_id>/export")
@token_required(role="publisher")
def segments_export(segment_id: int):
    session = db_session()
    segment = get_segment(session, segment_id)
    rules = segment_rules(session, segment)
    return csv_download(export_csv(runtime_of_app().db, export_audience(rules=rules)), f"segment-{segment.id}.csv")


@bp.get("/topics/<slug>/export")
@token_required(role="publisher")
def topics_export(slug: str):
    topic = db_session().scalar(select(Topic).where(Topic.slug == slug))
    if topic is None:
        raise NotFound(f"No topic {slug!r}")
    return csv_download(export_csv(runtime_of_app().db, export_audience(topic_id=topic.id)), f"topic-{topic.slug}.csv")


# --- subscribers -----------------------------------------------------------------------------------------


@bp.post("/subscribers")
@token_required(role="publisher")
def subscribers_create():
    data = json_body()
    _only(data, {"email", "name", "area", "audience", "services", "subscriptions", "consent"})
    consent = data.get("consent")
    if not isinstance(consent, dict):
        raise ApiError(
            400,
            '\'consent\' is required: {"source": where consent was given, "collected": true if it was '
            "collected elsewhere (otherwise we email them to confirm)}",
            {"consent": "required"},
        )
    _only(consent, {"source", "date", "collected"}, prefix="consent.")
    if not isinstance(data.get("email"), str):
        raise ApiError(400, "'email' is required", {"email": "required"})
    collected = consent.get("collected", False)
    if not isinstance(collected, bool):
        raise ApiError(400, "'consent.collected' must be true or false", {"consent.collected": "must be a boolean"})
    errors: dict[str, str] = {}
    attributes, attribute_errors = clean_attributes(
        name=data.get("name"), area=data.get("area"), audience=data.get("audience"), services=data.get("services")
    )
    errors.update(attribute_errors)
    rt = runtime_of_app()
    with rt.db.transaction() as session:
        subscriptions = []
        try:
            subscriptions = parse_subscriptions(session, data.get("subscriptions"))
        except InvalidInput as exc:
            errors.update(exc.errors)
        consent_date = None
        try:
            consent_date = parse_consent_date(consent.get("date"), "consent.date")
        except InvalidInput as exc:
            errors.update(exc.errors)
        if not isinstance(consent.get("source"), str):
            errors["consent.source"] = "Say where and how consent was given"
        if errors:
            raise InvalidInput(errors)
        outcome = add_subscriber(
            session,
            email=data["email"],
            subscriptions=subscriptions,
            attributes=attributes,
            consent_source=consent["source"],
            consent_date=consent_date,
            collected_elsewhere=collected,
            channel="api",
            api_token=g.api_token["name"],
        )
        audit.record(session, Actor.token(g.api_token), "subscriber.add", outcome.subscriber, created=outcome.created)
        body = profile(session, outcome.subscriber)
    if outcome.request_id is not None:
        enqueue(send_confirmation, outcome.request_id)
    status = 201 if outcome.created else 200
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = url_for("api.subscribers_show", email=body["email"])
    return response


@bp.get("/subscribers/<path:email>/export")
@token_required(role="admin")
def subscribers_export(email: str):
    session = db_session()
    return jsonify(subject_access(session, find_subscriber(session, email)))


@bp.get("/subscribers/<path:email>")
@token_required(role="publisher")
def subscribers_show(email: str):
    session = db_session()
    return jsonify(profile(session, find_subscriber(session, email)))


@bp.delete("/subscribers/<path:email>")
@token_required(role="admin")
def subscribers_erase(email: str):
    with runtime_of_app().db.transaction() as session:
        person = find_subscriber(session, email)
        erase(session, person, channel="api")
        audit.record(session, Actor.token(g.api_token), "subscriber.erase", None, subscriber=person.id)
    return "", 204


@bp.post("/subscribers/import")
@token_required(role="publisher")
def subscribers_import():
    """Store the CSV body for a worker to import: 202 with the import's status and its Location to poll."""
    if request.mimetype != "text/csv":
        raise ApiError(415, "Send the CSV file as the body with Content-Type: text/csv")
    request.max_content_length = IMPORT_MAX_BYTES
    try:
        import_id = receive_import(
            runtime_of_app().db,
            request.stream,
            channel="api",
            actor=Actor.token(g.api_token),
            filename=request.args.get("filename"),
            consent_source=request.args.get("consent_source"),
        )
    except ImportFileError as exc:
        raise ApiError(400, str(exc)) from exc
    enqueue(run_import_task, import_id)
    with runtime_of_app().db.sessions() as session:  # its own read: the request's began before the upload
        response = jsonify(import_status(session.get(Import, import_id)))
    response.status_code = 202
    response.headers["Location"] = url_for("api.subscribers_import_status", import_id=import_id)
    return response


@bp.get("/subscribers/imports/<int:import_id>")
@token_required(role="publisher")
def subscribers_import_status(import_id: int):
    """Where an import is: status, progress, counts so far, the rows to look at and, if it failed, why."""
    record = db_session().get(Import, import_id)
    if record is None:
        raise NotFound(f"No import {import_id}")
    return jsonify(import_status(record))
