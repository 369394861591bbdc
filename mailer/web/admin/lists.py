"""The lists the team manages: topics (what people subscribe to) and areas (where they live or work).

Anyone in the team may look; a publisher renames, describes and reorders; an admin creates, retires and
restores (what the public is offered and what can be sent). Each form becomes the dict the API takes, parsed by
the same model, and calls the same command."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ...accounts import has_role
from ...audience import commands, lookups
from ...audience.inputs import AreaChange, AreaInput, TopicChange, TopicInput
from ...errors import Conflict, InvalidInput, NotFound
from ...inputs import parse
from ...models import Area, Topic
from ..auth import require_role
from ..context import db_session, runtime_of_app
from . import _actor, bp

# Which list each page is: its rows, its commands, its models, the fields its forms have.
LISTS = {
    "topics": {
        "kind": Topic,
        "rows": lookups.topics,
        "new": (TopicInput, commands.create_topic),
        "change": (TopicChange, commands.change_topic),
        "retire": commands.retire_topic,
        "restore": commands.restore_topic,
        "fields": ("name", "description"),
    },
    "areas": {
        "kind": Area,
        "rows": lookups.areas,
        "new": (AreaInput, commands.create_area),
        "change": (AreaChange, commands.change_area),
        "retire": commands.retire_area,
        "restore": commands.restore_area,
        "fields": ("name",),
    },
}


def _page(which: str, *, errors=None, values=None, status=200):
    return (
        render_template(
            "admin/lists.html",
            which=which,
            rows=LISTS[which]["rows"](db_session()),
            fields=LISTS[which]["fields"],
            can_change=has_role(current_user.role, "publisher"),
            can_manage=has_role(current_user.role, "admin"),
            errors=errors or {},
            values=values or {},
        ),
        status,
    )


def _form(which: str) -> dict:
    """The posted fields as the API would send them (blank fields left out of a change: unchanged)."""
    return {name: request.form.get(name, "") for name in LISTS[which]["fields"]}


@bp.get("/topics")
@require_role("editor")
def topics():
    return _page("topics")


@bp.get("/areas")
@require_role("editor")
def areas():
    return _page("areas")


@bp.post("/topics")
@require_role("admin")
def create_topic():
    return _create("topics")


@bp.post("/areas")
@require_role("admin")
def create_area():
    return _create("areas")


@bp.post("/topics/<int:topic_id>")
@require_role("publisher")
def change_topic(topic_id: int):
    return _change("topics", topic_id)


@bp.post("/areas/<int:area_id>")
@require_role("publisher")
def change_area(area_id: int):
    return _change("areas", area_id)


@bp.post("/topics/<int:topic_id>/move")
@require_role("publisher")
def move_topic(topic_id: int):
    return _move("topics", topic_id)


@bp.post("/areas/<int:area_id>/move")
@require_role("publisher")
def move_area(area_id: int):
    return _move("areas", area_id)


@bp.post("/topics/<int:topic_id>/<any(retire, restore):action>")
@require_role("admin")
def topic_action(topic_id: int, action: str):
    return _retire_or_restore("topics", topic_id, action)


@bp.post("/areas/<int:area_id>/<any(retire, restore):action>")
@require_role("admin")
def area_action(area_id: int, action: str):
    return _retire_or_restore("areas", area_id, action)


def _create(which: str):
    values = _form(which) | ({"slug": request.form.get("slug", "")} if request.form.get("slug") else {})
    model, command = LISTS[which]["new"]
    try:
        data = parse(model, values)
        with runtime_of_app().db.transaction() as session:
            name = command(session, data, _actor()).name
    except InvalidInput as exc:
        return _page(which, errors=exc.errors, values=values, status=400)
    except Conflict as exc:
        return _page(which, errors={"slug" if "slug" in str(exc) else "name": str(exc)}, values=values, status=409)
    flash(f"{name} added: the sign-up form and the preference centre offer it now.")
    return redirect(url_for(f"admin.{which}"), code=303)


def _change(which: str, row_id: int):
    model, command = LISTS[which]["change"]
    values = _form(which)
    try:
        data = parse(model, values)
        with runtime_of_app().db.transaction() as session:
            command(session, row_id, data, _actor())
    except NotFound as exc:
        abort(404, str(exc))
    except InvalidInput as exc:
        errors = {f"{field}-{row_id}": message for field, message in exc.errors.items()}
        return _page(which, errors=errors, values={row_id: values}, status=400)
    flash("Changes saved.")
    return redirect(url_for(f"admin.{which}") + f"#{which}-{row_id}", code=303)


def _move(which: str, row_id: int):
    """Up or down one place: a change of position, as the API takes it."""
    rows = [row.id for row in LISTS[which]["rows"](db_session())]
    if row_id not in rows:
        abort(404, f"There is no {which[:-1]} {row_id}.")
    step = -1 if request.form.get("direction") == "up" else 1
    model, command = LISTS[which]["change"]
    data = parse(model, {"position": max(1, rows.index(row_id) + 1 + step)})
    with runtime_of_app().db.transaction() as session:
        command(session, row_id, data, _actor())
    return redirect(url_for(f"admin.{which}") + f"#{which}-{row_id}", code=303)


def _retire_or_restore(which: str, row_id: int, action: str):
    try:
        with runtime_of_app().db.transaction() as session:
            name = LISTS[which][action](session, row_id, _actor()).name
    except NotFound as exc:
        abort(404, str(exc))
    if action == "restore":
        flash(f"{name} is offered again.")
    elif which == "topics":
        flash(f"{name} is retired: it is no longer offered and nothing is sent to it; its subscriptions are kept.")
    else:
        flash(f"{name} is retired: it is no longer offered; people who chose it keep it.")
    return redirect(url_for(f"admin.{which}") + f"#{which}-{row_id}", code=303)
