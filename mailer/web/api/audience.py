"""API for the audience: segments, subscribers (add, look up, subject access, erase), import and export.

Each route parses with its input model (`@operation`), calls one command or named read of the audience room
(mailer/audience) and answers with its output model (mailer/audience/profiles.py); the OpenAPI document is
generated from those models."""

from __future__ import annotations

from flask import g, jsonify, request, url_for

from ...audience import commands, lookups
from ...audience.export import export_audience, export_csv
from ...audience.import_file import ImportFileError
from ...audience.importer import import_status
from ...audience.inputs import ImportUpload, NewSubscriber, RulesOnly, SegmentChange, SegmentInput
from ...audience.profiles import (
    AudienceCount,
    CountedSegment,
    ImportStatus,
    Segment,
    SegmentCount,
    SubjectAccess,
    Subscriber,
    counted_segment,
    profile,
    segment_shown,
    subject_access,
)
from ...audience.segments import get_segment, rules_matching, segment_count, segment_rules, topic_names
from ...audit import Actor
from ..context import db_session, runtime_of_app
from ..downloads import csv_download
from . import ApiError, bp, token_required
from .spec import Body, operation

# Imports stream, so they may be much larger than a form post.
IMPORT_MAX_BYTES = 512 * 1024 * 1024
CSV = Body("text/csv", "CSV, streamed: email, name, topics, area, audience, services, subscribed_at, confirmed_at")


def _by() -> Actor:
    return Actor.token(g.api_token)


def _topics() -> dict:
    """The body's topics are checked against these when it is parsed (the command trusts them)."""
    return lookups.topic_context(db_session())


def _created(body: dict, status: int, endpoint: str, **values):
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = url_for(endpoint, **values)
    return response


# --- segments ------------------------------------------------------------------------------------------


@bp.get("/segments")
@token_required
@operation(responses={200: list[Segment]})
def segments_list():
    """List segments"""
    session = db_session()
    names = topic_names(session)
    return jsonify([segment_shown(session, s, names).dump() for s in lookups.segments(session)])


@bp.post("/segments")
@token_required
@operation(
    body=SegmentInput,
    context=_topics,
    responses={201: CountedSegment},
    errors=(400, 409, 413, 415),
    headers={201: {"Location": "The new segment"}},
)
def segments_create(body: SegmentInput):
    """Create a segment; unknown fields, ops or values are a 400 naming where"""
    with runtime_of_app().db.transaction() as session:
        shown = counted_segment(session, commands.save_segment(session, body, _by())).dump()
    return _created(shown, 201, "api.segments_show", segment_id=shown["id"])


@bp.get("/segments/<int:segment_id>")
@token_required
@operation(responses={200: Segment}, errors=(404,))
def segments_show(segment_id: int):
    """A segment"""
    session = db_session()
    return jsonify(segment_shown(session, get_segment(session, segment_id)).dump())


@bp.put("/segments/<int:segment_id>")
@token_required
@operation(body=SegmentChange, context=_topics, responses={200: Segment}, errors=(400, 404, 409, 413, 415))
def segments_update(segment_id: int, body: SegmentChange):
    """Change a segment: only the fields given change"""
    with runtime_of_app().db.transaction() as session:
        shown = segment_shown(session, commands.save_segment(session, body, _by(), segment_id)).dump()
    return jsonify(shown)


@bp.delete("/segments/<int:segment_id>")
@token_required
@operation(responses={204: None}, errors=(404, 409))
def segments_delete(segment_id: int):
    """Delete a segment no issue uses"""
    with runtime_of_app().db.transaction() as session:
        commands.delete_segment(session, segment_id, _by())
    return "", 204


@bp.get("/segments/<int:segment_id>/count")
@token_required
@operation(responses={200: SegmentCount}, errors=(404, 409))
def segments_count(segment_id: int):
    """How many reachable people match the segment now (409: its rules can no longer be used)"""
    session = db_session()
    segment = get_segment(session, segment_id)
    return jsonify(SegmentCount(id=segment.id, count=segment_count(session, segment)).dump())


@bp.post("/segments/count")
@token_required
@operation(body=RulesOnly, context=_topics, responses={200: AudienceCount}, errors=(400, 413, 415))
def segments_preview_count(body: RulesOnly):
    """Count the people unsaved rules would match (the admin's live count uses the same read)"""
    _rules, matched = rules_matching(db_session(), body)
    return jsonify(AudienceCount(count=matched).dump())


@bp.get("/segments/<int:segment_id>/export")
@token_required(role="publisher")
@operation(responses={200: CSV}, errors=(404, 409))
def segments_export(segment_id: int):
    """The segment's people as CSV"""
    session = db_session()
    segment = get_segment(session, segment_id)
    rules = segment_rules(session, segment)
    return csv_download(export_csv(runtime_of_app().db, export_audience(rules=rules)), f"segment-{segment.id}.csv")


@bp.get("/topics/<slug>/export")
@token_required(role="publisher")
@operation(responses={200: CSV}, errors=(404,))
def topics_export(slug: str):
    """A topic's subscribers as CSV"""
    topic = lookups.topic_by_slug(db_session(), slug)
    return csv_download(export_csv(runtime_of_app().db, export_audience(topic_id=topic.id)), f"topic-{topic.slug}.csv")


# --- subscribers -----------------------------------------------------------------------------------------


@bp.post("/subscribers")
@token_required(role="publisher")
@operation(
    body=NewSubscriber,
    context=_topics,
    responses={201: Subscriber, 200: Subscriber},
    errors=(400, 409, 413, 415),
    headers={201: {"Location": "The subscriber"}, 200: {"Location": "The subscriber"}},
)
def subscribers_create(body: NewSubscriber):
    """Add or update a subscriber; active at once only with consent.collected = true

    Otherwise they are emailed to confirm, and stay pending until they do."""
    with runtime_of_app().db.transaction() as session:
        outcome = commands.add_subscriber(session, body, _by())
        shown = profile(session, outcome.subscriber).dump()
    return _created(shown, 201 if outcome.created else 200, "api.subscribers_show", email=shown["email"])


@bp.get("/subscribers/<path:email>/export")
@token_required(role="admin")
@operation(responses={200: SubjectAccess}, errors=(404,))
def subscribers_export(email: str):
    """Subject access: everything held about the person"""
    session = db_session()
    return jsonify(subject_access(session, lookups.find_subscriber(session, email)).dump())


@bp.get("/subscribers/<path:email>")
@token_required(role="publisher")
@operation(responses={200: Subscriber}, errors=(404,))
def subscribers_show(email: str):
    """Attributes, subscriptions and consent events"""
    session = db_session()
    return jsonify(profile(session, lookups.find_subscriber(session, email)).dump())


@bp.delete("/subscribers/<path:email>")
@token_required(role="admin")
@operation(responses={204: None}, errors=(404, 409))
def subscribers_erase(email: str):
    """Erase: personal data removed, a hash kept so no import brings it back"""
    with runtime_of_app().db.transaction() as session:
        commands.erase(session, lookups.find_subscriber(session, email), _by())
    return "", 204


@bp.post("/subscribers/import")
@token_required(role="publisher")
@operation(
    body=Body("text/csv", "The CSV file"),
    query=ImportUpload,
    responses={202: ImportStatus},
    errors=(400, 413, 415),
    headers={202: {"Location": "The import's status"}},
)
def subscribers_import(query: ImportUpload):
    """Upload a CSV for a worker to import; poll the Location for progress and the report

    Columns: email, name, topics, area, audience, services, consent_source, consent_date. A file over 512 MB is
    a 413."""
    if request.mimetype != "text/csv":
        raise ApiError(415, "Send the CSV file as the body with Content-Type: text/csv")
    request.max_content_length = IMPORT_MAX_BYTES
    db = runtime_of_app().db
    try:
        with db.transaction() as session:
            import_id = commands.receive_import(session, request.stream, query, _by())
            # What was received, as committed: a worker may take it the moment the commit is done.
            shown = import_status(lookups.import_record(session, import_id)).dump()
    except ImportFileError as exc:
        raise ApiError(400, str(exc)) from exc
    return _created(shown, 202, "api.subscribers_import_status", import_id=import_id)


@bp.get("/subscribers/imports/<int:import_id>")
@token_required(role="publisher")
@operation(responses={200: ImportStatus}, errors=(404,))
def subscribers_import_status(import_id: int):
    """An import: status, progress, counts so far, the rows to look at and, if it failed, why"""
    return jsonify(import_status(lookups.import_record(db_session(), import_id)).dump())
