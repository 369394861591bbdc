"""API for the lists the team manages: topics people subscribe to and the areas they live or work in.

Reading needs any token; renaming, describing and reordering a publisher's; creating, retiring and restoring
(what the public is offered, what can be sent) an admin's. Each route parses with its input model, calls one
command of the audience room and answers with the row as it is now."""

from __future__ import annotations

from datetime import datetime

from flask import g, jsonify, url_for

from ...audience import commands, lookups
from ...audience.inputs import AreaChange, AreaInput, TopicChange, TopicInput
from ...audit import Actor
from ...models import Area as AreaRow
from ...models import Topic as TopicRow
from ..context import db_session, runtime_of_app
from . import bp, created, token_required
from .spec import Output, operation


def _by() -> Actor:
    return Actor.token(g.api_token)


class Topic(Output):
    """A topic people can subscribe to (a retired one is offered to nobody and sent nothing; it is kept as
    history)"""

    id: int
    slug: str
    name: str
    description: str
    position: int
    retired: bool
    retired_at: datetime | None


class Area(Output):
    """An area people can say they live or work in (a retired one is no longer offered)"""

    id: int
    slug: str
    name: str
    position: int
    retired: bool
    retired_at: datetime | None


def _topic(row: TopicRow) -> dict:
    return Topic(
        id=row.id,
        slug=row.slug,
        name=row.name,
        description=row.description or "",
        position=row.position + 1,
        retired=row.retired_at is not None,
        retired_at=row.retired_at,
    ).dump()


def _area(row: AreaRow) -> dict:
    return Area(
        id=row.id,
        slug=row.slug,
        name=row.name,
        position=row.position + 1,
        retired=row.retired_at is not None,
        retired_at=row.retired_at,
    ).dump()


# --- topics ----------------------------------------------------------------------------------------------


@bp.get("/topics")
@token_required
@operation(responses={200: list[Topic]})
def topics():
    """List topics, retired ones too, in the order the public sees them"""
    return jsonify([_topic(t) for t in lookups.topics(db_session())])


@bp.post("/topics")
@token_required(role="admin")
@operation(
    body=TopicInput,
    responses={201: Topic},
    errors=(400, 409, 413, 415),
    headers={201: {"Location": "The new topic"}},
)
def topics_create(body: TopicInput):
    """Create a topic, offered to the public at once; 409 if its slug is taken or no topic id is left"""
    with runtime_of_app().db.transaction() as session:
        shown = _topic(commands.create_topic(session, body, _by()))
    return created(shown, url_for("api.topics_show", topic_id=shown["id"]))


@bp.get("/topics/<int:topic_id>")
@token_required
@operation(responses={200: Topic}, errors=(404,))
def topics_show(topic_id: int):
    """A topic"""
    return jsonify(_topic(lookups.listed(db_session(), TopicRow, topic_id)))


@bp.patch("/topics/<int:topic_id>")
@token_required(role="publisher")
@operation(body=TopicChange, responses={200: Topic}, errors=(400, 404, 413, 415))
def topics_change(topic_id: int, body: TopicChange):
    """Rename, describe or move a topic: only the fields given change (its slug never does)"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_topic(commands.change_topic(session, topic_id, body, _by())))


@bp.post("/topics/<int:topic_id>/retire")
@token_required(role="admin")
@operation(responses={200: Topic}, errors=(404,))
def topics_retire(topic_id: int):
    """Retire a topic: no longer offered or sent to; its subscriptions are kept as history"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_topic(commands.retire_topic(session, topic_id, _by())))


@bp.post("/topics/<int:topic_id>/restore")
@token_required(role="admin")
@operation(responses={200: Topic}, errors=(404,))
def topics_restore(topic_id: int):
    """Restore a retired topic: offered and sent to again, to the subscriptions it kept"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_topic(commands.restore_topic(session, topic_id, _by())))


# --- areas -----------------------------------------------------------------------------------------------


@bp.get("/areas")
@token_required
@operation(responses={200: list[Area]})
def areas():
    """List areas, retired ones too, in the order the public sees them"""
    return jsonify([_area(a) for a in lookups.areas(db_session())])


@bp.post("/areas")
@token_required(role="admin")
@operation(
    body=AreaInput,
    responses={201: Area},
    errors=(400, 409, 413, 415),
    headers={201: {"Location": "The new area"}},
)
def areas_create(body: AreaInput):
    """Create an area, offered to the public at once; 409 if its slug is taken"""
    with runtime_of_app().db.transaction() as session:
        shown = _area(commands.create_area(session, body, _by()))
    return created(shown, url_for("api.areas_show", area_id=shown["id"]))


@bp.get("/areas/<int:area_id>")
@token_required
@operation(responses={200: Area}, errors=(404,))
def areas_show(area_id: int):
    """An area"""
    return jsonify(_area(lookups.listed(db_session(), AreaRow, area_id)))


@bp.patch("/areas/<int:area_id>")
@token_required(role="publisher")
@operation(body=AreaChange, responses={200: Area}, errors=(400, 404, 413, 415))
def areas_change(area_id: int, body: AreaChange):
    """Rename or move an area: only the fields given change (its slug never does)"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_area(commands.change_area(session, area_id, body, _by())))


@bp.post("/areas/<int:area_id>/retire")
@token_required(role="admin")
@operation(responses={200: Area}, errors=(404,))
def areas_retire(area_id: int):
    """Retire an area: no longer offered; people who chose it keep it"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_area(commands.retire_area(session, area_id, _by())))


@bp.post("/areas/<int:area_id>/restore")
@token_required(role="admin")
@operation(responses={200: Area}, errors=(404,))
def areas_restore(area_id: int):
    """Offer a retired area again"""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_area(commands.restore_area(session, area_id, _by())))
