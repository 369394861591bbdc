"""Progress updates in the admin: draft (editors), publish and send (publishers), and digests on demand."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ...accounts import has_role
from ...audience.lookups import parse_in
from ...audience.segments import area_names
from ...compose import commands
from ...compose.digests import recent_runs
from ...compose.inputs import DigestRunInput, UpdateInput
from ...compose.issues import topic_choices
from ...compose.updates import get_update, list_updates
from ...errors import Conflict, InvalidInput, NotFound
from ...inputs import parse
from ...models import SERVICES, Update, services_of
from ..auth import require_role
from ..context import db_session, runtime_of_app
from . import _actor, bp


def _posted() -> dict:
    """The form in the shape the API takes."""
    f = request.form
    return {
        "title": f.get("title", ""),
        "topic": f.get("topic", ""),
        "summary": f.get("summary", ""),
        "body": f.get("body", ""),
        "areas": f.getlist("areas"),
        "services": f.getlist("services"),
        "link": f.get("link") or None,
    }


def _page(update=None, values=None, errors=None, status=200):
    if values is None:
        values = (
            {
                "title": update.title,
                "topic": update.topic.slug,
                "summary": update.summary,
                "body": update.body,
                "areas": update.areas,
                "services": services_of(update.services),
                "link": update.link or "",
            }
            if update
            else {"topic": "project-fusion", "areas": [], "services": []}
        )
    return (
        render_template(
            "admin/update_form.html",
            update=update,
            values=values,
            errors=errors or {},
            topics=topic_choices(db_session()),
            areas=area_names(db_session()),
            services={slug: label for slug, (label, _) in SERVICES.items()},
            can_publish=has_role(current_user.role, "publisher"),
        ),
        status,
    )


@bp.get("/updates")
@login_required
def updates():
    session = db_session()
    return render_template(
        "admin/updates.html",
        updates=list_updates(session, 100),
        runs=recent_runs(session, 12),
        can_publish=has_role(current_user.role, "publisher"),
    )


@bp.route("/updates/new", methods=["GET", "POST"])
@login_required
def new_update():
    if request.method == "GET":
        return _page()
    data = _posted()
    try:
        checked = parse_in(db_session(), UpdateInput, data)
        with runtime_of_app().db.transaction() as session:
            update_id = commands.create_update(session, checked, _actor(), runtime_of_app().settings)[0].id
    except InvalidInput as exc:
        return _page(values=data, errors=exc.errors, status=400)
    flash(
        "Draft saved. A publisher publishes it: it then goes to the archive, the feeds, subscribers who want "
        "updates as they happen, and the next digests."
    )
    return redirect(url_for("admin.update", update_id=update_id), code=303)


def _load(update_id: int) -> Update:
    try:
        return get_update(db_session(), update_id)
    except NotFound:
        abort(404, f"There is no update {update_id}.")


@bp.route("/updates/<int:update_id>", methods=["GET", "POST"])
@login_required
def update(update_id: int):
    item = _load(update_id)
    if request.method == "GET":
        return _page(item)
    data = _posted()
    try:
        checked = parse_in(db_session(), UpdateInput, data)
        with runtime_of_app().db.transaction() as session:
            commands.edit_update(session, update_id, checked, _actor())
    except InvalidInput as exc:
        return _page(item, values=data, errors=exc.errors, status=400)
    except Conflict as exc:
        flash(str(exc))
    else:
        flash("Changes saved.")
    return redirect(url_for("admin.update", update_id=update_id), code=303)


@bp.post("/updates/<int:update_id>/publish")
@require_role("publisher")
def publish(update_id: int):
    try:
        with runtime_of_app().db.transaction() as session:
            commands.publish_update(session, update_id, _actor(), runtime_of_app().settings)
    except NotFound:
        abort(404, f"There is no update {update_id}.")
    except Conflict as exc:
        flash(str(exc))
        return redirect(url_for("admin.update", update_id=update_id), code=303)
    flash(
        "Published: it is in the archive and the feeds, and on its way to subscribers who want updates as they happen."
    )
    return redirect(url_for("admin.update", update_id=update_id), code=303)


@bp.post("/digests/run")
@require_role("publisher")
def run_digest_now():
    try:
        data = parse(DigestRunInput, {"frequency": request.form.get("frequency", "")})
    except InvalidInput:
        flash("Choose the weekly or the monthly digest.", "error")
        return redirect(url_for("admin.updates"), code=303)
    with runtime_of_app().db.transaction() as session:
        asked = commands.request_digest(session, data, _actor())
    period = "week" if asked.frequency == "weekly" else "month"
    if not asked.queued:
        flash(
            f"The {asked.frequency} digest was not started: the queue is not answering. Nothing has been sent; try "
            "again in a few minutes, and tell the support team if it keeps happening.",
            "error",
        )
    else:
        flash(
            f"The {asked.frequency} digest for this {period} is being sent to everyone with news. Running it again "
            "in the same period sends nothing more."
        )
    return redirect(url_for("admin.updates"), code=303)
