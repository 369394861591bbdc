"""API for the suppression list: read it (any token), add an address or take one off with a reason (publisher).

Each route parses with its input model (`@operation`), calls one command or named read of the audience room
(mailer/audience/suppression.py) and answers with the output models below."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import g, jsonify, url_for
from pydantic import Field, WithJsonSchema

from ...accounts import has_role
from ...audience import suppression
from ...audience.inputs import LISTED_REASONS, NewSuppression, SuppressionQuery, SuppressionRemoval
from ...audit import Actor
from ...inputs import Output
from ...models import FEEDBACK_SOURCES
from ..context import db_session, runtime_of_app
from . import bp, created, token_required
from .spec import operation

Moment = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class ListedAddress(Output):
    """An address on the suppression list: it is never mailed"""

    id: int
    email_hash: str = Field(description="The keyed hash the list keeps instead of the address")
    email: str | None = Field(description="The address, while we still hold the person (publisher tokens only)")
    subscriber_id: int | None = Field(description="The subscriber behind the hash, while we still hold them")
    reason: Literal[LISTED_REASONS]
    detail: str | None = Field(description="What happened: the bounce or report, or the team's note")
    created_at: Moment
    issue_id: int | None = Field(description="The issue whose message led to it, if one did")
    issue_subject: str | None
    event_id: int | None = Field(description="The bounce or complaint report that led to it, if one did")
    event_source: Literal[FEEDBACK_SOURCES] | None
    event_status: str | None


class SuppressionList(Output):
    """A page of the suppression list, newest first; pass next_before as before for the next"""

    suppressions: list[ListedAddress]
    next_before: int | None


def _by() -> Actor:
    return Actor.token(g.api_token)


def _shown(row: suppression.Listed) -> dict:
    addresses = has_role(g.api_token["role"], "publisher")  # people's addresses: the role that may see them
    return ListedAddress(
        id=row.id,
        email_hash=row.email_hash,
        email=row.email if addresses else None,
        subscriber_id=row.subscriber_id,
        reason=row.reason,
        detail=row.detail,
        created_at=row.created_at.isoformat(),
        issue_id=row.issue_id,
        issue_subject=row.issue_subject,
        event_id=row.event_id,
        event_source=row.event_source,
        event_status=row.event_status,
    ).dump()


@bp.get("/suppressions")
@token_required
@operation(query=SuppressionQuery, responses={200: SuppressionList}, errors=(400,))
def suppressions_list(query: SuppressionQuery):
    """The suppression list, newest first: search by address (matched by its hash), reason, since a day"""
    page = suppression.list_suppressions(db_session(), query)
    return jsonify(SuppressionList(suppressions=[_shown(r) for r in page.rows], next_before=page.next_before).dump())


@bp.post("/suppressions")
@token_required(role="publisher")
@operation(
    body=NewSuppression,
    responses={201: ListedAddress},
    errors=(400, 409, 413, 415),
    headers={201: {"Location": "The listed address"}},
)
def suppressions_add(body: NewSuppression):
    """Put an address on the suppression list

    A subscriber with that address stops getting mail at once (their status says why, every subscription ends);
    an address we do not hold is listed by its hash, so it is never mailed if it turns up later. 409: listed
    already."""
    with runtime_of_app().db.transaction() as session:
        shown = _shown(suppression.add_suppression(session, body, _by()))
    return created(shown, url_for("api.suppressions_show", suppression_id=shown["id"]))


@bp.get("/suppressions/<int:suppression_id>")
@token_required
@operation(responses={200: ListedAddress}, errors=(404,))
def suppressions_show(suppression_id: int):
    """One address on the suppression list, with where it came from"""
    return jsonify(_shown(suppression.listed(db_session(), suppression_id)))


@bp.post("/suppressions/<int:suppression_id>/remove")
@token_required(role="publisher")
@operation(body=SuppressionRemoval, responses={200: ListedAddress}, errors=(400, 404, 413, 415))
def suppressions_remove(suppression_id: int, body: SuppressionRemoval):
    """Take an address off the suppression list, saying why (kept in the audit log)

    Nobody is subscribed again: the person must sign up again and confirm. Answers with what the list said."""
    with runtime_of_app().db.transaction() as session:
        return jsonify(_shown(suppression.remove_suppression(session, suppression_id, body, _by())))
