"""The comms team's pages: sign in, write an issue, preview it, send it, watch it go."""

from __future__ import annotations

import re

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from ... import audit
from ...accounts import has_role, sign_in
from ...audience.emails import normalise_email
from ...audience.rules import describe
from ...audience.segments import audience_size, topic_names, usable_rules
from ...audit import Actor
from ...compose.blocks import blocks_of, checks
from ...compose.issues import (
    LONDON,
    approve_issue,
    cancel_issue,
    get_issue,
    issue_progress,
    list_issues,
    parse_send_at,
    pause_issue,
    request_send,
    resume_issue,
    return_issue,
    schedule_issue,
    submit_issue,
    uk_time,
    unschedule_issue,
)
from ...compose.mail import preview
from ...dev import mailcatcher
from ...errors import Conflict, InvalidInput, NotFound
from ...models import EDITABLE, AdminUser, AuditEvent, Issue
from ...render.client_support import CLIENTS, client_support
from ...tasks import enqueue, plan_issue, send_test
from .. import sessions
from ..auth import require_role
from ..context import db_session, runtime_of_app
from ..limits import LOGIN_LIMIT, TEST_SEND_LIMIT, limiter

bp = Blueprint("admin", __name__)


# Where sign-in may return to: an admin page, its path and query spelled in plain URL characters. Anything else
# goes to the dashboard: another host, a backslash (browsers read `/\evil.example` as `//evil.example`), CR/LF
# (a Location with a line break was a 500), other control characters, raw or percent-encoded, and dot segments.
_NEXT = re.compile(r"/admin(?:/[A-Za-z0-9._~-]+)*/?(?:\?[A-Za-z0-9._~=&+%:@,;/!$*()'-]*)?")
_NEXT_FORBIDDEN = re.compile(r"%(?:[01][0-9a-f]|7f)|/\.\.?(?:/|\?|$)", re.IGNORECASE)


def _safe_next(target: str | None) -> str:
    """The page to show after sign-in: `target` if it is one of our admin pages, otherwise the dashboard."""
    if isinstance(target, str) and _NEXT.fullmatch(target) and not _NEXT_FORBIDDEN.search(target):
        return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    error = None
    email = request.form.get("email", "")
    if request.method == "POST":
        with runtime_of_app().db.transaction() as session:
            signed_in = sign_in(session, email, request.form.get("password", ""))
        if signed_in is not None:
            sessions.begin(*signed_in)
            return redirect(_safe_next(request.args.get("next")), code=303)
        error = "Enter a correct email address and password"
    return render_template("admin/login.html", error=error, email=email), (400 if error else 200)


@bp.post("/logout")
@login_required
def logout():
    sessions.end(current_user)
    return redirect(url_for("admin.login"), code=303)


@bp.get("/")
@login_required
def dashboard():
    session = db_session()
    return render_template("admin/dashboard.html", issues=list_issues(session))


def _load_issue(issue_id: int):
    try:
        return get_issue(db_session(), issue_id)
    except NotFound:
        abort(404, f"There is no issue {issue_id}.")


@bp.get("/issues/<int:issue_id>")
@login_required
def issue(issue_id: int):
    issue = _load_issue(issue_id)
    session = db_session()
    html, text = preview(issue, runtime_of_app().settings)
    size = len(html.encode())
    rules = issue.segment.rules if issue.segment is not None else None
    audience = audience_problem = None
    if issue.status in EDITABLE + ("scheduled",):
        try:
            usable = usable_rules(session, rules, f"segment {issue.segment.name!r}") if rules else None
            audience = audience_size(session, issue.topic_id, usable)
        except Conflict as exc:  # rules saved before validation refused them: say so, the page still works
            audience_problem = str(exc)
    return render_template(
        "admin/issue.html",
        issue=issue,
        progress=issue_progress(session, issue),
        preview_text=text,
        audience=audience,
        audience_problem=audience_problem,
        segment_summary=describe(issue.audience_rules or rules, topic_names(session))
        if rules or issue.audience_rules
        else None,
        can_publish=has_role(current_user.role, "publisher"),
        size_kb=size / 1024,
        checks=checks(issue.subject, blocks_of(issue), size),
        # What Gmail, Outlook, Apple Mail and Yahoo do with this HTML (caniemail's data), worked out once per HTML.
        client_support=client_support(html),
        client_names=list(CLIENTS),
        test_to=request.args.get("test_to") or current_user.email,
        workflow=_workflow(session, issue),
        uk_time=uk_time,
    )


def _workflow(session, issue) -> dict:
    """Who submitted and approved it, and the last note from a reviewer who sent it back."""
    names = dict(session.execute(select(AdminUser.id, AdminUser.email)).all())

    def who(user_id, when):
        return f"by {names.get(user_id, 'someone')} on {uk_time(when)}" if when else None

    returned = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "issue.return", AuditEvent.target_type == "issue", AuditEvent.target_id == issue.id)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    not_sent = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "issue.not_sent", AuditEvent.target_type == "issue")
        .where(AuditEvent.target_id == issue.id)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    local = issue.send_at.astimezone(LONDON).strftime("%Y-%m-%dT%H:%M") if issue.send_at else ""
    return {
        "submitted": who(issue.submitted_by_id, issue.submitted_at),
        "approved": who(issue.approved_by_id, issue.approved_at),
        "returned": {
            "when": f"by {returned.actor_label} on {uk_time(returned.at)}",
            "note": returned.details.get("note"),
        }
        if returned and issue.status == "draft"
        else None,
        "send_at_local": local,
        # Why the system did not send it (its segment's rules could no longer be used), until it is sent.
        "not_sent": not_sent.details.get("reason")
        if not_sent and issue.status in ("approved", "cancelled") and not_sent.at >= (issue.approved_at or not_sent.at)
        else None,
    }


@bp.get("/issues/<int:issue_id>/preview")
@login_required
def issue_preview(issue_id: int):
    html, _text = preview(_load_issue(issue_id), runtime_of_app().settings)
    # Shown in a sandboxed iframe; the CSP stops anything in it from running or loading remote content.
    return (
        html,
        200,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": "default-src 'none'; img-src * data:; style-src 'unsafe-inline'",
        },
    )


@bp.get("/issues/<int:issue_id>/progress")
@login_required
def issue_progress_json(issue_id: int):
    issue = _load_issue(issue_id)
    return issue_progress(db_session(), issue)


MAX_TEST_ADDRESSES = 10


@bp.post("/issues/<int:issue_id>/test")
@login_required
@limiter.limit(TEST_SEND_LIMIT)
def test_issue(issue_id: int):
    """Send the issue as it stands to up to ten of the team's addresses, marked [TEST]."""
    issue = _load_issue(issue_id)
    raw = request.form.get("to", "")
    addresses, bad = [], []
    for part in re.split(r"[\s,;]+", raw):
        if not part:
            continue
        try:
            addresses.append(normalise_email(part))
        except InvalidInput:
            bad.append(part)
    if bad or not addresses or len(addresses) > MAX_TEST_ADDRESSES:
        flash(
            f"Not an email address: {', '.join(bad)[:200]}"
            if bad
            else f"Enter between 1 and {MAX_TEST_ADDRESSES} email addresses to send the test to"
        )
        return redirect(url_for("admin.issue", issue_id=issue_id, test_to=raw[:500]) + "#test", code=303)
    with runtime_of_app().db.transaction() as session:
        audit.record(session, _actor(), "issue.test", session.get(Issue, issue.id), to=addresses)
    enqueue(send_test, issue.id, addresses)
    flash(f"Test sent to {', '.join(addresses)}. It arrives marked [TEST], with example links.")
    return redirect(url_for("admin.issue", issue_id=issue_id), code=303)


def _actor() -> Actor:
    return Actor.user(current_user)


def _schedule(session, issue_id: int, actor: Actor):
    return schedule_issue(session, issue_id, parse_send_at(request.form.get("send_at", "")), actor)


def _approve(session, issue_id: int, actor: Actor):
    return approve_issue(session, issue_id, actor, by_another=runtime_of_app().settings.approval_by_another)


def _send(session, issue_id: int, actor: Actor):
    # The settings let the send's start render the email it freezes (compose.mail.freeze).
    return request_send(session, issue_id, actor, settings=runtime_of_app().settings)


def _return(session, issue_id: int, actor: Actor):
    return return_issue(session, issue_id, actor, note=request.form.get("note", ""))


# action → (service, role needed, message, plan afterwards)
_ACTIONS = {
    "submit": (submit_issue, "editor", "Submitted for review. A publisher will check it.", False),
    "approve": (_approve, "publisher", "Approved. Send it now or schedule it.", False),
    "return": (_return, "publisher", "Sent back to its writer as a draft.", False),
    "schedule": (_schedule, "publisher", "Scheduled.", False),
    "unschedule": (unschedule_issue, "publisher", "No longer scheduled: it is approved and waiting.", False),
    "send": (_send, "publisher", "Sending has started.", True),
    "pause": (pause_issue, "publisher", "Sending is paused. Nobody else gets it until you resume.", False),
    "resume": (resume_issue, "publisher", "Sending has resumed. Nobody who already got it will get it again.", True),
    "cancel": (cancel_issue, "publisher", "Sending is cancelled. Nobody else will get this issue.", False),
}


@bp.post(
    "/issues/<int:issue_id>/<any(submit, approve, return, schedule, unschedule, send, pause, resume, cancel):action>"
)
@login_required
def issue_action(issue_id: int, action: str):
    change, role, message, plan = _ACTIONS[action]
    if not has_role(current_user.role, role):
        abort(403, f"Only a {role} or above can do that. Ask a publisher in your team.")
    try:
        with runtime_of_app().db.transaction() as session:
            issue = change(session, issue_id, _actor())
            send_at = issue.send_at
    except NotFound:
        abort(404, f"There is no issue {issue_id}.")
    except (Conflict, InvalidInput) as exc:
        flash(str(exc) if isinstance(exc, Conflict) else exc.sentences)
        return redirect(url_for("admin.issue", issue_id=issue_id), code=303)
    if plan:
        enqueue(plan_issue, issue_id)
    if action == "schedule":
        message = f"Scheduled for {uk_time(send_at)}."
    flash(message)
    return redirect(url_for("admin.issue", issue_id=issue_id), code=303)


# The dev mail catcher shows every message sent, with the addresses it went to and their personal links:
# subscribers' data, so it needs the role that may look people up.
@bp.get("/mail")
@require_role("publisher")
def mail_catcher():
    folder = runtime_of_app().settings.mailcatcher_dir
    if folder is None:
        abort(404, "The mail catcher runs only when SMTP_URL is not set.")
    return render_template("admin/mail.html", messages=mailcatcher.list_messages(folder))


@bp.get("/mail/<name>")
@require_role("publisher")
def mail_message(name: str):
    folder = runtime_of_app().settings.mailcatcher_dir
    if folder is None:
        abort(404, "The mail catcher runs only when SMTP_URL is not set.")
    try:
        message = mailcatcher.read_message(folder, name)
    except FileNotFoundError:
        abort(404, "That message is not in the mail catcher.")
    if request.args.get("part") == "html":
        return (
            message.html or "",
            200,
            {
                "Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": "default-src 'none'; img-src * data:; style-src 'unsafe-inline'",
            },
        )
    return render_template("admin/mail_message.html", message=message, name=name)


from . import audience as _audience_pages  # noqa: E402,F401  (registers its routes on bp)
from . import composer as _composer  # noqa: E402,F401  (registers its routes on bp)
from . import recipients  # noqa: E402,F401  (registers its routes on bp)
from . import team as _team  # noqa: E402,F401  (registers its routes on bp)
from . import updates as _updates  # noqa: E402,F401  (registers its routes on bp)
