"""Writing an issue: the block composer. Works as plain form posts; segments.js-style enhancement is optional.

Every button posts the whole form: "add a block", "move up", "remove" re-show the form with the change
(nothing is saved until "Save"), so no work is lost and no JavaScript is needed. Image blocks upload their
file with the same post.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from ...audience.lookups import parse_in
from ...compose import commands
from ...compose.blocks import BLOCK_TYPES, FIELDS, blocks_of
from ...compose.inputs import MAX_BLOCKS, IssueInput
from ...compose.issues import EDITABLE, composer_choices
from ...errors import Conflict, InvalidInput
from ..context import db_session, runtime_of_app
from . import _actor, _load_issue, bp


def _values_of(issue) -> dict:
    return {
        "subject": issue.subject,
        "preheader": issue.preheader,
        "topic": issue.topic.slug,
        "segment": issue.segment_id,
        "blocks": blocks_of(issue),
    }


def _form(issue=None, values=None, errors=None, status=200):
    values = values or (
        _values_of(issue)
        if issue
        else {
            "subject": "",
            "preheader": "",
            "topic": "trust-matters",
            "segment": None,
            "blocks": [{"type": "text", "markdown": ""}],
        }
    )
    choices = composer_choices(db_session(), values["blocks"])
    return (
        render_template(
            "admin/issue_form.html",
            issue=issue,
            values=values,
            errors=errors or {},
            topics=choices.topics,
            segments=choices.segments,
            block_types=BLOCK_TYPES,
            media=choices.media,
        ),
        status,
    )


def _blocks_from_form(errors: dict) -> list[dict] | None:
    """The blocks as posted, in order; an uploaded image is stored at once and its block points at it."""
    form = request.form
    if "block-0-type" not in form and "body" in form:
        return None  # a plain Markdown body (older forms, scripts)
    blocks = []
    for i in range(MAX_BLOCKS):
        kind = form.get(f"block-{i}-type")
        if kind is None:
            continue
        if kind not in BLOCK_TYPES:
            continue
        block = {"type": kind}
        for name in FIELDS[kind]:
            block[name] = form.get(f"block-{i}-{name}", "")
        if kind == "image":
            block["media"] = _uploaded(i, f"blocks[{len(blocks)}].media", errors) or _small_int(block.get("media"))
        if kind == "updates":
            block["count"] = _small_int(block.get("count")) or block.get("count")
        blocks.append(block)
    return blocks


def _uploaded(i: int, field: str, errors: dict) -> int | None:
    """The id of the image uploaded for the form's block `i`, if one was (kept at once, whatever becomes of the rest
    of the form, so it is not uploaded again); a refused one's reason goes in `errors` under `field`."""
    upload = request.files.get(f"block-{i}-file")
    if upload is None or not upload.filename:
        return None
    try:
        with runtime_of_app().db.transaction() as session:
            var_dir = runtime_of_app().settings.var_dir
            return commands.upload_image(session, upload.read(), upload.filename, var_dir, _actor()).id
    except InvalidInput as exc:
        errors[field] = exc.errors["image"]
        return None


def _small_int(value) -> int | None:
    """A form field as a whole number if it is one (ASCII digits, fits an id), else None."""
    text = str(value or "").strip()
    return int(text) if text.isascii() and text.isdecimal() and len(text) < 10 else None


def _apply_action(blocks: list[dict], action: str) -> list[dict]:
    name, _, arg = action.partition("-")
    if name == "add" and arg in BLOCK_TYPES and len(blocks) < MAX_BLOCKS:
        empty = {"type": arg, **{f: "" for f in FIELDS[arg]}}
        if arg == "updates":
            empty["count"] = 3
        return [*blocks, empty]
    if arg.isascii() and arg.isdecimal() and len(arg) < 4 and int(arg) < len(blocks):
        i = int(arg)
        if name == "remove":
            return blocks[:i] + blocks[i + 1 :]
        if name == "up" and i > 0:
            blocks[i - 1], blocks[i] = blocks[i], blocks[i - 1]
        if name == "down" and i < len(blocks) - 1:
            blocks[i + 1], blocks[i] = blocks[i], blocks[i + 1]
    return blocks


def _posted() -> tuple[dict, dict, dict]:
    """The form as the issue's input (the shape the API takes), the values to show again, and what uploading
    its images refused."""
    f = request.form
    errors: dict[str, str] = {}
    blocks = _blocks_from_form(errors)
    action = f.get("action", "save")
    if blocks is not None and action != "save":
        blocks = _apply_action(blocks, action)
    segment = f.get("segment", "")
    data = {
        "subject": f.get("subject", ""),
        "topic": f.get("topic", ""),
        "preheader": f.get("preheader", ""),
        # Not a number cannot come from our select; it is reported as an unknown segment.
        "segment": (_small_int(segment) or -1) if segment else None,
        **({"body": f.get("body", "")} if blocks is None else {"blocks": blocks}),
    }
    values = {
        "subject": data["subject"],
        "preheader": data["preheader"],
        "topic": data["topic"],
        "segment": data["segment"],
        "blocks": blocks if blocks is not None else [{"type": "text", "markdown": data["body"]}],
    }
    return data, values, errors


def _checked(data: dict, upload_errors: dict) -> IssueInput:
    """The posted issue checked, every problem reported at once: a refused upload and whatever else is wrong."""
    try:
        checked = parse_in(db_session(), IssueInput, data)
    except InvalidInput as exc:
        raise InvalidInput(exc.errors | upload_errors) from exc
    if upload_errors:
        raise InvalidInput(upload_errors)
    return checked


@bp.route("/issues/new", methods=["GET", "POST"])
@login_required
def new_issue():
    if request.method == "GET":
        return _form()
    data, values, errors = _posted()
    if request.form.get("action", "save") != "save":
        return _form(values=values, errors=errors)
    try:
        checked = _checked(data, errors)
        with runtime_of_app().db.transaction() as session:
            issue_id = commands.create_issue(session, checked, _actor()).id
    except InvalidInput as exc:
        return _form(values=values, errors=exc.errors, status=400)
    flash("Draft saved. Check the preview, send yourself a test, then submit it for review.")
    return redirect(url_for("admin.issue", issue_id=issue_id), code=303)


@bp.route("/issues/<int:issue_id>/edit", methods=["GET", "POST"])
@login_required
def edit_issue(issue_id: int):
    issue = _load_issue(issue_id)
    if issue.status not in EDITABLE:
        flash(f"This issue is {issue.status} and can no longer be edited.")
        return redirect(url_for("admin.issue", issue_id=issue_id), code=303)
    if request.method == "GET":
        return _form(issue=issue)
    data, values, errors = _posted()
    if request.form.get("action", "save") != "save":
        return _form(issue=issue, values=values, errors=errors)
    try:
        checked = _checked(data, errors)
        with runtime_of_app().db.transaction() as session:
            commands.edit_issue(session, issue_id, checked, _actor())
    except InvalidInput as exc:
        return _form(issue=issue, values=values, errors=exc.errors, status=400)
    except Conflict as exc:
        flash(str(exc))
        return redirect(url_for("admin.issue", issue_id=issue_id), code=303)
    flash(
        "Changes saved."
        + (" It is a draft again: submit it for review when it is ready." if issue.status != "draft" else "")
    )
    return redirect(url_for("admin.issue", issue_id=issue_id), code=303)


# --- statistics --------------------------------------------------------------------------------------------


@bp.get("/issues/<int:issue_id>/stats")
@login_required
def issue_stats_page(issue_id: int):
    from ...stats import by_attribute, issue_stats

    issue = _load_issue(issue_id)
    session = db_session()
    return render_template(
        "admin/issue_stats.html",
        issue=issue,
        stats=issue_stats(session, issue),
        by_area=by_attribute(session, issue, "area"),
        by_audience=by_attribute(session, issue, "audience"),
    )


@bp.get("/stats")
@login_required
def stats_page():
    from ...stats import recent_figures, topic_overview

    overview = topic_overview(db_session())
    peak = max([max(w.gained, w.lost) for t in overview for w in t["weeks"]] + [1])
    recent = recent_figures(db_session()).as_dict()
    return render_template("admin/stats.html", overview=overview, peak=peak, recent=recent)
