"""API for progress updates and digests. Each view parses (`@operation`, with the compose room's input models),
calls one command of mailer/compose/commands.py and answers with its output model below."""

from __future__ import annotations

from typing import Literal

from flask import g, jsonify, url_for
from pydantic import Field

from ...audience.lookups import topic_context
from ...audit import Actor
from ...compose import commands
from ...compose.inputs import DigestRunInput, UpdateInput
from ...compose.updates import get_update, list_updates, update_json
from ...inputs import Output
from ...models import SERVICES
from ..context import db_session, runtime_of_app
from . import ApiError, bp, created, token_required
from .issues import Moment
from .spec import operation

Service = Literal[tuple(SERVICES)]


class Update(Output):
    """A progress update"""

    id: int
    slug: str | None
    title: str
    summary: str
    body: str
    topic: str
    areas: list[str] = Field(description="Areas' slugs (GET /areas); empty: everywhere")
    services: list[Service]
    link: str | None
    status: Literal["draft", "published"]
    published_at: Moment | None


class PublishedUpdate(Update):
    """The update, and the email that sends it once it is published"""

    email_issue: int | None


class DigestQueued(Output):
    """Queued: a worker runs the digest for this period"""

    frequency: Literal["weekly", "monthly"]
    period: str
    queued: Literal[True]


def _actor() -> Actor:
    return Actor.token(g.api_token)


def _published(update, issue) -> dict:
    return PublishedUpdate(**update_json(update), email_issue=issue.id if issue else None).dump()


@bp.get("/updates")
@token_required
@operation(responses={200: list[Update]})
def updates_list():
    """Updates, newest first (at most 200)"""
    return jsonify([Update(**update_json(u)).dump() for u in list_updates(db_session(), 200)])


@bp.post("/updates")
@token_required(role="publisher")
@operation(
    body=UpdateInput,
    context=lambda: topic_context(db_session()),
    responses={201: PublishedUpdate},
    errors=(400, 413, 415),
    headers={201: {"Location": "The new update"}},
)
def updates_create(body: UpdateInput):
    """Create a progress update; a draft unless publish is true (then it is published and sent now)"""
    settings = runtime_of_app().settings
    with runtime_of_app().db.transaction() as session:
        answer = _published(*commands.create_update(session, body, _actor(), settings))
    return created(answer, url_for("api.updates_show", update_id=answer["id"]))


@bp.get("/updates/<int:update_id>")
@token_required
@operation(responses={200: Update}, errors=(404,))
def updates_show(update_id: int):
    """An update"""
    return jsonify(Update(**update_json(get_update(db_session(), update_id))).dump())


@bp.post("/updates/<int:update_id>/publish")
@token_required(role="publisher")
@operation(responses={200: PublishedUpdate}, errors=(404, 409))
def updates_publish(update_id: int):
    """Publish a draft update: archive, feeds, as-it-happens email now, digests later"""
    settings = runtime_of_app().settings
    with runtime_of_app().db.transaction() as session:
        issue = commands.publish_update(session, update_id, _actor(), settings)
        return jsonify(_published(get_update(session, update_id), issue))


@bp.post("/digests/run")
@token_required(role="publisher")
@operation(body=DigestRunInput, responses={202: DigestQueued}, errors=(400, 413, 415, 503))
def digests_run(body: DigestRunInput):
    """Run the weekly or monthly digest for this period now, by a worker

    Running it again in the same period sends nothing more."""
    with runtime_of_app().db.transaction() as session:
        request = commands.request_digest(session, body, _actor())
    if not request.queued:
        raise ApiError(503, "The queue is not answering: try again shortly")
    return jsonify(DigestQueued(frequency=request.frequency, period=request.period, queued=True).dump()), 202
