"""Writing an issue: the block composer. Works as plain form posts; segments.js-style enhancement is optional.

Every button posts the whole form: "add a block", "move up", "remove" re-show the form with the change
(nothing is saved until "Save"), so no work is lost and no JavaScript is needed. Image blocks upload their
file with the same post.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from ...compose.blocks import BLOCK_TYPES, FIELDS, MAX_BLOCKS, blocks_of
from ...compose.issues import EDITABLE, IssueInput, create_issue, update_issue
from ...compose.media import save_image
from ...errors import Conflict, InvalidInput
from ...models import Media, Segment, Topic
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
    session = db_session()
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
    media_ids = [b.get("media") for b in values["blocks"] if b.get("type") == "image" and b.get("media")]
    media = {m.id: m for m in session.scalars(select(Media).where(Media.id.in_(media_ids)))} if media_ids else {}
    return (
        render_template(
            "admin/issue_form.html",
            issue=issue,
            values=values,
            errors=errors or {},
            topics=list(session.scalars(select(Topic).order_by(Topic.position))),
            segments=list(session.scalars(select(Segment).order_by(Segment.name))),
            block_types=BLOCK_TYPES,
            media=media,
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
            block["media"] = _small_int(block.get("media"))
            upload = request.files.get(f"block-{i}-file")
            if upload is not None and upload.filename:
                try:
                    with runtime_of_app().db.transaction() as session:
                        block["media"] = save_image(
                            session, upload.read(), upload.filename, runtime_of_app().settings.var_dir, current_user.id
                        ).id
                except InvalidInput as exc:
                    errors[f"blocks[{len(blocks)}].media"] = exc.errors["image"]
        if kind == "updates":
            block["count"] = _small_int(block.get("count")) or block.get("count")
        blocks.append(block)
    return blocks


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


def _posted() -> tuple[IssueInput, dict, dict]:
    f = request.form
    errors: dict[str, str] = {}
    blocks = _blocks_from_form(errors)
    action = f.get("action", "save")
    if blocks is not None and action != "save":
        blocks = _apply_action(blocks, action)
    segment = f.get("segment", "")
    data = IssueInput(
        subject=f.get("subject", ""),
        body=f.get("body", "") if blocks is None else "",
        topic=f.get("topic", ""),
        preheader=f.get("preheader", ""),
        # Not a number cannot come from our select; it is reported as an unknown segment.
        segment=(_small_int(segment) or -1) if segment else None,
        blocks=blocks,
    )
    values = {
        "subject": data.subject,
        "preheader": data.preheader,
        "topic": data.topic,
        "segment": data.segment,
        "blocks": blocks if blocks is not None else [{"type": "text", "markdown": data.body}],
    }
    return data, values, errors


def _checked(upload_errors: dict, save, *args, **kwargs):
    """Save, reporting every problem at once: a refused upload and whatever else is wrong. Raising inside
    the caller's transaction rolls the save back, so nothing is half-written."""
    try:
        result = save(*args, **kwargs)
    except InvalidInput as exc:
        raise InvalidInput(exc.errors | upload_errors) from exc
    if upload_errors:
        raise InvalidInput(upload_errors)
    return result


@bp.route("/issues/new", methods=["GET", "POST"])
@login_required
def new_issue():
    if request.method == "GET":
        return _form()
    data, values, errors = _posted()
    if request.form.get("action", "save") != "save":
        return _form(values=values, errors=errors)
    try:
        with runtime_of_app().db.transaction() as session:
            issue_id = _checked(errors, create_issue, session, data, created_by_id=current_user.id, actor=_actor()).id
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
        with runtime_of_app().db.transaction() as session:
            _checked(errors, update_issue, session, issue_id, data, actor=_actor())
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
    from ...stats import topic_overview

    overview = topic_overview(db_session())
    peak = max([max(w.gained, w.lost) for t in overview for w in t["weeks"]] + [1])
    return render_template("admin/stats.html", overview=overview, peak=peak)
