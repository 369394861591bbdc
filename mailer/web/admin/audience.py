"""The comms team's audience pages: segments (a form, not JSON), subscribers, import and export."""

from __future__ import annotations

import json
import re
from functools import partial

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ...audience import commands, lookups
from ...audience.export import export_audience, export_csv
from ...audience.import_file import COLUMNS, IGNORED_COLUMNS, ImportFileError
from ...audience.importer import import_status
from ...audience.inputs import DATE_OPS, FIELDS, ImportUpload, RulesOnly, SegmentInput
from ...audience.profiles import profile, subject_access
from ...audience.rules import FIELD_LABELS, describe
from ...audience.segments import area_names, get_segment, rules_count, rules_matching, segment_rules, topic_names
from ...audit import Actor
from ...errors import Conflict, InvalidInput, NotFound
from ...inputs import parse
from ...models import AUDIENCES, FREQUENCY_LABELS, SERVICES, Segment, Subscriber
from ..auth import require_role
from ..context import db_session, runtime_of_app
from ..downloads import csv_download
from ..preferences import current_values, form_context, form_values, parse_form
from ..request_limits import UnreadableJSON, parse_json
from . import bp

MAX_ROWS = 30
ADMIN_OPS = {"in": "is any of", "not_in": "is none of", "before": "before", "after": "after"}
_RULE_PATH = re.compile(r"^rules\.(?:all|any)\[(\d+)\]")


def _value_labels(session) -> dict[str, dict[str, str]]:
    """For each set field, its values and what the team calls them."""
    return {
        "topic": topic_names(session),
        "area": area_names(session),
        "audience": AUDIENCES,
        "service": {slug: label for slug, (label, _) in SERVICES.items()},
        "frequency": FREQUENCY_LABELS,
    }


def _rows_from_rules(rules: dict) -> tuple[str, list[dict], bool]:
    """(match, rows, flat) for the form; nested rules (made through the API) cannot be shown as rows."""
    match = "all" if "all" in rules else "any"
    rows, flat = [], True
    for cond in rules[match]:
        if "all" in cond or "any" in cond:
            flat = False
            continue
        value = cond["value"]
        op = {"is": "in", "is_not": "not_in"}.get(cond["op"], cond["op"])
        rows.append(
            {
                "field": cond["field"],
                "op": op,
                "values": [value] if isinstance(value, str) and op not in DATE_OPS else value,
                "date": value if op in DATE_OPS else "",
            }
        )
    return match, rows, flat


def _rows_from_form(form) -> list[dict]:
    rows = []
    for i in range(MAX_ROWS):
        if f"field-{i}" not in form:
            continue
        field = form.get(f"field-{i}", "")
        rows.append(
            {
                "field": field,
                "op": form.get(f"op-{i}", ""),
                "values": form.getlist(f"value-{i}-{field}") if field else [],
                "date": form.get(f"date-{i}", "").strip(),
            }
        )
    return rows


def _rules_from_rows(match: str, rows: list[dict]) -> tuple[dict, list[int]]:
    """The rule tree for the chosen rows, and which form row each condition came from."""
    conditions, origin = [], []
    for i, row in enumerate(rows):
        if not row["field"]:
            continue
        if row["field"] in ("subscribed_at", "confirmed_at"):
            conditions.append({"field": row["field"], "op": row["op"], "value": row["date"]})
        else:
            conditions.append({"field": row["field"], "op": row["op"], "value": row["values"]})
        origin.append(i)
    return {match if match in ("all", "any") else "all": conditions}, origin


def _row_errors(exc: InvalidInput, origin: list[int]) -> dict[str, str]:
    """Map rule paths (rules.all[2].value) back to the form's rows (rule-5) for the error summary; a row's first
    problem is the one it shows."""
    errors: dict[str, str] = {}
    for path, message in exc.errors.items():
        found = _RULE_PATH.match(path)
        if found and int(found.group(1)) < len(origin):
            row = origin[int(found.group(1))]
            errors.setdefault(f"rule-{row}", f"Condition {row + 1}: {message}")
        elif path in ("rules", "rules.all", "rules.any"):
            errors["rule-0"] = "Add at least one condition: choose what to match on"
        else:
            errors[path] = message
    return errors


def _by() -> Actor:
    return Actor.user(current_user)


def _segment_form(
    segment=None, *, name="", description="", match="all", rows=None, flat=True, errors=None, status=200, audience=None
):
    session = db_session()
    rows = rows if rows is not None else []
    if not rows or rows[-1]["field"]:
        rows = [*rows, {"field": "", "op": "in", "values": [], "date": ""}]
    used_by = lookups.issues_using(session, segment.id) if segment else []
    return (
        render_template(
            "admin/segment_form.html",
            segment=segment,
            name=name,
            description=description,
            match=match,
            rows=rows[:MAX_ROWS],
            flat=flat,
            errors=errors or {},
            audience=audience,
            fields=FIELD_LABELS,
            set_fields=[f for f, ops in FIELDS.items() if ops[0] == "is"],
            ops=ADMIN_OPS,
            value_labels=_value_labels(session),
            summary=describe(segment.rules, topic_names(session), area_names(session)) if segment else None,
            used_by=used_by,
        ),
        status,
    )


@bp.get("/segments")
@require_role("editor")
def segments():
    session = db_session()
    names = topic_names(session)
    areas = area_names(session)
    rows = [(s, describe(s.rules, names, areas)) for s in lookups.segments(session)]
    return render_template("admin/segments.html", segments=rows)


def _load_segment(segment_id: int) -> Segment:
    try:
        return get_segment(db_session(), segment_id)
    except NotFound:
        abort(404, f"There is no segment {segment_id}.")


@bp.get("/segments/new")
@require_role("editor")
def new_segment():
    return _segment_form()


@bp.get("/segments/<int:segment_id>")
@require_role("editor")
def segment(segment_id: int):
    segment = _load_segment(segment_id)
    match, rows, flat = _rows_from_rules(segment.rules)
    try:
        audience, errors = rules_count(db_session(), segment.rules)[1], None
    except InvalidInput as exc:  # saved before validation refused it: point at what to change, never fail
        audience = None
        errors = _row_errors(exc, list(range(len(rows)))) if flat else {"rules_json": f"Change these rules: {exc}"}
    return _segment_form(
        segment,
        name=segment.name,
        description=segment.description,
        match=match,
        rows=rows,
        flat=flat,
        audience=audience,
        errors=errors,
    )


def _handle_segment_post(segment: Segment | None):
    form = request.form
    action = form.get("action", "save")
    match = form.get("match", "all")
    rows = _rows_from_form(form)
    if action.startswith("remove-"):
        index = action.removeprefix("remove-")
        rows = [r for i, r in enumerate(rows) if str(i) != index]
    # The form shown again, as posted (and changed by the action).
    again = partial(
        _segment_form,
        segment,
        name=form.get("name", ""),
        description=form.get("description", ""),
        match=match,
        rows=rows,
    )
    if action == "add" or action.startswith("remove-"):
        return again()
    rules, origin = _rules_from_rows(match, rows)
    try:
        if action == "count":
            counted = lookups.parse_in(db_session(), RulesOnly, {"rules": rules})
            return again(audience=rules_matching(db_session(), counted)[1])
        data = lookups.parse_in(
            db_session(),
            SegmentInput,
            {"name": form.get("name", ""), "description": form.get("description", ""), "rules": rules},
        )
        with runtime_of_app().db.transaction() as session:
            segment_id = commands.save_segment(session, data, _by(), segment.id if segment else None).id
    except InvalidInput as exc:
        return again(errors=_row_errors(exc, origin), status=400)
    except Conflict as exc:
        return again(errors={"name": str(exc)}, status=409)
    flash("Segment saved.")
    return redirect(url_for("admin.segment", segment_id=segment_id), code=303)


@bp.post("/segments/new")
@require_role("editor")
def create_segment():
    return _handle_segment_post(None)


@bp.post("/segments/<int:segment_id>")
@require_role("editor")
def update_segment(segment_id: int):
    segment = _load_segment(segment_id)
    if "rules_json" in request.form:
        # A nested segment (made through the API) is edited as its JSON.
        try:
            rules = parse_json(request.form["rules_json"])
        except UnreadableJSON as exc:
            flash(f"The rules are not JSON we can read: {exc}")
            return redirect(url_for("admin.segment", segment_id=segment_id), code=303)
        fields = {"name": request.form.get("name", segment.name), "description": request.form.get("description", "")}
        try:
            data = lookups.parse_in(db_session(), SegmentInput, fields | {"rules": rules})
            with runtime_of_app().db.transaction() as session:
                commands.save_segment(session, data, _by(), segment_id)
        except (InvalidInput, Conflict) as exc:
            flash(str(exc))
        return redirect(url_for("admin.segment", segment_id=segment_id), code=303)
    return _handle_segment_post(segment)


@bp.post("/segments/count")
@require_role("editor")
def count_segment():
    """The live count on the segment form: the form's fields in, `{"count"}` or `{"errors"}` out."""
    rules, origin = _rules_from_rows(request.form.get("match", "all"), _rows_from_form(request.form))
    session = db_session()
    try:
        rules, matched = rules_matching(session, lookups.parse_in(session, RulesOnly, {"rules": rules}))
    except InvalidInput as exc:
        return jsonify(errors=_row_errors(exc, origin)), 400
    return jsonify(count=matched, summary=describe(rules, topic_names(session), area_names(session)))


@bp.post("/segments/<int:segment_id>/delete")
@require_role("editor")
def remove_segment(segment_id: int):
    try:
        with runtime_of_app().db.transaction() as session:
            commands.delete_segment(session, segment_id, _by())
    except NotFound:
        abort(404, f"There is no segment {segment_id}.")
    except Conflict as exc:
        flash(str(exc))
        return redirect(url_for("admin.segment", segment_id=segment_id), code=303)
    flash("Segment deleted.")
    return redirect(url_for("admin.segments"), code=303)


@bp.get("/segments/<int:segment_id>/export.csv")
@require_role("publisher")
def export_segment(segment_id: int):
    segment = _load_segment(segment_id)
    try:
        rules = segment_rules(db_session(), segment)
    except Conflict as exc:
        flash(str(exc))
        return redirect(url_for("admin.segment", segment_id=segment_id), code=303)
    return csv_download(export_csv(runtime_of_app().db, export_audience(rules=rules)), f"segment-{segment.id}.csv")


@bp.get("/topics/<slug>/export.csv")
@require_role("publisher")
def export_topic(slug: str):
    try:
        topic = lookups.topic_by_slug(db_session(), slug)
    except NotFound:
        abort(404, f"There is no topic {slug}.")
    return csv_download(export_csv(runtime_of_app().db, export_audience(topic_id=topic.id)), f"topic-{topic.slug}.csv")


# --- subscribers ------------------------------------------------------------------------------------------


@bp.get("/subscribers")
@require_role("publisher")
def subscribers():
    session = db_session()
    query = " ".join(request.args.get("q", "").split()).lower()[:320]
    found = lookups.search_subscribers(session, query)
    more = len(found) > lookups.SEARCH_LIMIT
    return render_template(
        "admin/subscribers.html",
        query=query,
        found=found[: lookups.SEARCH_LIMIT],
        more=more,
        topics=lookups.topics(session),
    )


def _load_subscriber(subscriber_id: int, session=None) -> Subscriber:
    try:
        return lookups.subscriber(session or db_session(), subscriber_id)
    except NotFound as exc:
        abort(404, str(exc))


def _subscriber_page(session, person: Subscriber, values=None, errors=None, status=200):
    shown = profile(session, person).dump()  # as the API gives it
    events = shown["consent"]
    team = lookups.team_emails(session, {e["admin_user_id"] for e in events if e["admin_user_id"]})
    return (
        render_template(
            "admin/subscriber.html",
            person=person,
            data=shown,
            events=events,
            team=team,
            topic_labels=topic_names(session),
            labels=_value_labels(session),
            values=values or current_values(session, person),
            errors=errors or {},
            **form_context(session, person),
        ),
        status,
    )


@bp.get("/subscribers/<int:subscriber_id>")
@require_role("publisher")
def subscriber(subscriber_id: int):
    return _subscriber_page(db_session(), _load_subscriber(subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/preferences")
@require_role("publisher")
def subscriber_preferences(subscriber_id: int):
    """Change someone's choices on their behalf (they phoned or wrote in); recorded as done by this account.

    The team can end subscriptions and change frequencies and answers, but never adds back a topic the
    person left: only they can do that, from their own link."""
    try:
        with runtime_of_app().db.transaction() as session:
            person = _load_subscriber(subscriber_id, session)
            change = commands.update_preferences(session, person, parse_form(session, request.form), _by())
    except Conflict as exc:
        abort(409, str(exc))
    except InvalidInput as exc:  # nothing was written: the page again, with the form as posted
        session = db_session()
        return _subscriber_page(session, _load_subscriber(subscriber_id), form_values(request.form), exc.errors, 400)
    refused = change.refused
    if refused:
        flash(f"Saved, except {', '.join(refused)}: they left it, so only they can subscribe to it again.")
    else:
        flash("Their choices are saved and recorded as changed by you.")
    return redirect(url_for("admin.subscriber", subscriber_id=subscriber_id), code=303)


@bp.get("/subscribers/<int:subscriber_id>/export.json")
@require_role("admin")
def subscriber_export(subscriber_id: int):
    person = _load_subscriber(subscriber_id)
    if person.status == "erased":
        abort(404, "This subscriber was erased: nothing personal is held.")
    body = json.dumps(subject_access(db_session(), person).dump(), indent=2)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="subject-access-{person.id}.json"'},
    )


@bp.post("/subscribers/<int:subscriber_id>/erase")
@require_role("admin")
def subscriber_erase(subscriber_id: int):
    if request.form.get("confirm") != "erase":
        flash("Tick the box to confirm the erasure: it cannot be undone.")
        return redirect(url_for("admin.subscriber", subscriber_id=subscriber_id), code=303)
    try:
        with runtime_of_app().db.transaction() as session:
            commands.erase(session, _load_subscriber(subscriber_id, session), _by())
    except Conflict as exc:
        flash(str(exc))
    else:
        flash("Erased. Their address and details are gone; a one-way hash stops any import bringing them back.")
    return redirect(url_for("admin.subscriber", subscriber_id=subscriber_id), code=303)


# --- import ----------------------------------------------------------------------------------------------


def _import_form(error: str | None = None, status: int = 200):
    recent = lookups.recent_imports(db_session())
    page = render_template("admin/import.html", columns=COLUMNS, ignored=IGNORED_COLUMNS, recent=recent, error=error)
    return page, status


@bp.get("/import")
@require_role("publisher")
def import_form():
    return _import_form()


@bp.post("/import")
@require_role("publisher")
def import_upload():
    """Store the file for a worker to import, then show its report page, which follows its progress."""
    request.max_content_length = 512 * 1024 * 1024
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _import_form("Choose a CSV file to import", 400)
    try:
        data = parse(ImportUpload, {"filename": upload.filename, "consent_source": request.form.get("consent_source")})
        with runtime_of_app().db.transaction() as session:
            import_id = commands.receive_import(session, upload.stream, data, _by())
    except ImportFileError as exc:
        return _import_form(str(exc), 400)
    except InvalidInput as exc:
        return _import_form(exc.sentences, 400)
    return redirect(url_for("admin.import_report", import_id=import_id), code=303)


def _load_import(import_id: int):
    try:
        return lookups.import_record(db_session(), import_id)
    except NotFound as exc:
        abort(404, str(exc))


@bp.get("/imports/<int:import_id>")
@require_role("publisher")
def import_report(import_id: int):
    record = _load_import(import_id)
    return render_template("admin/import_report.html", record=record, status=import_status(record))


@bp.get("/imports/<int:import_id>/progress.json")
@require_role("publisher")
def import_progress_json(import_id: int):
    """What the report page polls while the import runs: status, progress and counts."""
    status = import_status(_load_import(import_id)).dump()
    return jsonify({k: v for k, v in status.items() if k not in ("errors", "skipped_rows")})
