"""Progress updates in the admin: draft (editors), publish and send (publishers), and digests on demand."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from ...accounts import has_role
from ...compose.digests import DIGEST_FREQUENCIES
from ...compose.updates import UpdateInput, create_update, edit_update, get_update, publish_update
from ...errors import Conflict, InvalidInput, NotFound
from ...models import AREAS, SERVICES, DigestRun, Topic, Update, services_of
from ...tasks import enqueue, plan_issue, run_digest_task
from ..auth import require_role
from ..context import db_session, runtime_of_app
from . import _actor, bp


def _form_input() -> UpdateInput:
    f = request.form
    return UpdateInput(
        title=f.get("title", ""),
        topic=f.get("topic", ""),
        summary=f.get("summary", ""),
        body=f.get("body", ""),
        areas=f.getlist("areas"),
        services=f.getlist("services"),
        link=f.get("link") or None,
    )


def _page(update=None, values=None, errors=None, status=200):
    session = db_session()
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
            topics=list(session.scalars(select(Topic).order_by(Topic.position))),
            areas=AREAS,
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
        updates=list(session.scalars(select(Update).order_by(Update.id.desc()).limit(100))),
        runs=list(session.scalars(select(DigestRun).order_by(DigestRun.id.desc()).limit(12))),
        can_publish=has_role(current_user.role, "publisher"),
    )


@bp.route("/updates/new", methods=["GET", "POST"])
@login_required
def new_update():
    if request.method == "GET":
        return _page()
    data = _form_input()
    try:
        with runtime_of_app().db.transaction() as session:
            update_id = create_update(session, data, _actor()).id
    except InvalidInput as exc:
        return _page(values=vars(data), errors=exc.errors, status=400)
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
    data = _form_input()
    try:
        with runtime_of_app().db.transaction() as session:
            edit_update(session, update_id, data, _actor())
    except InvalidInput as exc:
        return _page(item, values=vars(data), errors=exc.errors, status=400)
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
            issue_id = publish_update(session, update_id, _actor(), runtime_of_app().settings).id
    except NotFound:
        abort(404, f"There is no update {update_id}.")
    except Conflict as exc:
        flash(str(exc))
        return redirect(url_for("admin.update", update_id=update_id), code=303)
    enqueue(plan_issue, issue_id)
    flash(
        "Published: it is in the archive and the feeds, and on its way to subscribers who want updates as they happen."
    )
    return redirect(url_for("admin.update", update_id=update_id), code=303)


@bp.post("/digests/run")
@require_role("publisher")
def run_digest_now():
    frequency = request.form.get("frequency", "")
    if frequency not in DIGEST_FREQUENCIES:
        abort(400, "Choose the weekly or the monthly digest.")
    # Run by a worker, not in this request: a long run must not be cut short by a web timeout.
    enqueue(run_digest_task, frequency)
    flash(
        f"The {frequency} digest for this {('week' if frequency == 'weekly' else 'month')} is being sent to everyone "
        "with news. Running it again in the same period sends nothing more."
    )
    return redirect(url_for("admin.updates"), code=303)
