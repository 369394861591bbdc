"""The suppression list: anyone in the team may look; a publisher adds an address or takes one off, saying why."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ...accounts import has_role
from ...audience import suppression
from ...audience.inputs import LISTED_REASONS, SUPPRESSION_REASONS, NewSuppression, SuppressionQuery, SuppressionRemoval
from ...errors import Conflict, InvalidInput, NotFound
from ...inputs import parse
from ..auth import require_role
from ..context import db_session, runtime_of_app
from . import _actor, bp

PAGE = 100
_SEARCH = ("email", "reason", "since", "before")


@bp.get("/suppressions")
@require_role("editor")
def suppressions(errors=None, values=None, status=200):
    asked = {name: request.args.get(name, "") for name in _SEARCH if request.args.get(name)}
    search_errors = {}
    try:
        query = parse(SuppressionQuery, asked | {"limit": str(PAGE)})
    except InvalidInput as exc:
        search_errors, query, status = exc.errors, parse(SuppressionQuery, {"limit": str(PAGE)}), 400
    page = suppression.list_suppressions(db_session(), query)
    return (
        render_template(
            "admin/suppressions.html",
            rows=page.rows,
            next_before=page.next_before,
            asked=asked,
            search={k: v for k, v in asked.items() if k != "before"},
            search_errors=search_errors,
            reasons=SUPPRESSION_REASONS,
            listed_reasons=LISTED_REASONS,
            can_change=has_role(current_user.role, "publisher"),
            errors=errors or {},
            values=values or {},
        ),
        status,
    )


@bp.post("/suppressions")
@require_role("publisher")
def add_suppression():
    values = {name: request.form.get(name, "") for name in ("email", "reason", "note")}
    try:
        data = parse(NewSuppression, values)
        with runtime_of_app().db.transaction() as session:
            suppression.add_suppression(session, data, _actor())
    except InvalidInput as exc:
        return suppressions(errors=exc.errors, values=values, status=400)
    except Conflict as exc:
        return suppressions(errors={"email": str(exc)}, values=values, status=409)
    flash(f"{data.email} is on the suppression list: it will not be mailed again.")
    return redirect(url_for("admin.suppressions"), code=303)


@bp.post("/suppressions/<int:suppression_id>/remove")
@require_role("publisher")
def remove_suppression(suppression_id: int):
    try:
        data = parse(SuppressionRemoval, {"reason": request.form.get("reason", "")})
        with runtime_of_app().db.transaction() as session:
            suppression.remove_suppression(session, suppression_id, data, _actor())
    except NotFound as exc:
        abort(404, str(exc))
    except InvalidInput as exc:
        flash(exc.sentences, "error")
        return redirect(url_for("admin.suppressions") + f"#suppression-{suppression_id}", code=303)
    flash(
        "Taken off the suppression list. Nobody was subscribed again: the person must sign up again and confirm "
        "their address before they get anything."
    )
    return redirect(url_for("admin.suppressions"), code=303)
