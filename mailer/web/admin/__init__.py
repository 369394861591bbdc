"""The comms team's pages: sign in, write an issue, preview it, send it, watch it go."""

from __future__ import annotations

import re

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ...accounts import has_role
from ...accounts.signin import sign_in_with_password
from ...audit import Actor
from ...compose.blocks import blocks_of, checks
from ...compose.commands import (
    approve_issue,
    cancel_issue,
    pause_issue,
    resume_issue,
    return_issue,
    schedule_issue,
    send_a_test,
    send_issue,
    submit_issue,
    unschedule_issue,
)
from ...compose.inputs import ReturnInput, ScheduleInput, TestSendInput
from ...compose.issues import get_issue, issue_progress, overview, uk_time
from ...compose.mail import preview
from ...dev import mailcatcher
from ...errors import Conflict, InvalidInput, NotFound
from ...inputs import parse
from ...render.client_support import CLIENTS, client_support
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
    """The first step: email and password. Then a code when the account has a second factor (login_code), or
    enrolment first when MFA_REQUIRED and it has none (account.enrol); otherwise signed in."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    error = None
    email = request.form.get("email", "")
    if request.method == "POST":
        with runtime_of_app().db.transaction() as session:
            attempt = sign_in_with_password(
                session, email, request.form.get("password", ""), mfa_required=_settings().mfa_required
            )
        next_page = _safe_next(request.args.get("next"))
        if attempt.outcome == "signed_in":
            sessions.begin(attempt.user, attempt.secret)
            return redirect(next_page, code=303)
        if attempt.outcome == "pending":
            sessions.hold(attempt.pending, next_page)
            step = "admin.login_code" if attempt.pending.stage == "code" else "admin.enrol"
            return redirect(url_for(step), code=303)
        if attempt.outcome == "locked":
            return render_template("admin/login.html", error=LOCKED, email=email), 429
        error = "Enter a correct email address and password"
    return render_template("admin/login.html", error=error, email=email), (400 if error else 200)


# Said whether or not an account has the address: unknown addresses are locked the same way (accounts.lockout).
LOCKED = (
    "There have been too many failed attempts to sign in with this email address. Wait 15 minutes and try again, "
    "or reset your password."
)


@bp.post("/logout")
@login_required
def logout():
    sessions.end(current_user)
    return redirect(url_for("admin.login"), code=303)


def _load_issue(issue_id: int):
    try:
        return get_issue(db_session(), issue_id)
    except NotFound:
        abort(404, f"There is no issue {issue_id}.")


@bp.get("/issues/<int:issue_id>")
@login_required
def issue(issue_id: int):
    issue = _load_issue(issue_id)
    html, text = preview(issue, runtime_of_app().settings)
    size = len(html.encode())
    seen = overview(db_session(), issue)
    return render_template(
        "admin/issue.html",
        issue=issue,
        progress=seen.progress,
        preview_text=text,
        audience=seen.audience,
        audience_problem=seen.audience_problem,
        segment_summary=seen.segment_summary,
        can_publish=has_role(current_user.role, "publisher"),
        size_kb=size / 1024,
        checks=checks(issue.subject, blocks_of(issue), size),
        # What Gmail, Outlook, Apple Mail and Yahoo do with this HTML (caniemail's data), worked out once per HTML.
        client_support=client_support(html),
        client_names=list(CLIENTS),
        test_to=request.args.get("test_to") or current_user.email,
        workflow=seen.workflow,
        uk_time=uk_time,
    )


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


@bp.post("/issues/<int:issue_id>/test")
@login_required
@limiter.limit(TEST_SEND_LIMIT)
def test_issue(issue_id: int):
    """Send the issue as it stands to up to ten of the team's addresses, marked [TEST]."""
    _load_issue(issue_id)
    raw = request.form.get("to", "")
    typed = [part for part in re.split(r"[\s,;]+", raw) if part]
    try:
        with runtime_of_app().db.transaction() as session:
            addresses = send_a_test(session, issue_id, parse(TestSendInput, {"to": typed}), _actor())
    except InvalidInput as exc:
        bad = [typed[int(path[3:-1])] for path in exc.errors if path.startswith("to[")]
        flash(f"Not an email address: {', '.join(bad)[:200]}" if bad else exc.errors.get("to", exc.sentences))
        return redirect(url_for("admin.issue", issue_id=issue_id, test_to=raw[:500]) + "#test", code=303)
    flash(f"Test sent to {', '.join(addresses)}. It arrives marked [TEST], with example links.")
    return redirect(url_for("admin.issue", issue_id=issue_id), code=303)


def _actor() -> Actor:
    return Actor.user(current_user)


def _settings():
    return runtime_of_app().settings


def _form(model, *names: str):
    """The posted fields `names`, checked by `model`."""
    return parse(model, {name: request.form.get(name, "") for name in names})


# action → (the command, its form read into its input; the role it needs; what to say once done)
_ACTIONS = {
    "submit": (submit_issue, "editor", "Submitted for review. A publisher will check it."),
    "approve": (
        lambda s, i, who: approve_issue(s, i, who, _settings()),
        "publisher",
        "Approved. Send it now or schedule it.",
    ),
    "return": (
        lambda s, i, who: return_issue(s, i, _form(ReturnInput, "note"), who),
        "publisher",
        "Sent back to its writer as a draft.",
    ),
    "schedule": (lambda s, i, who: schedule_issue(s, i, _form(ScheduleInput, "send_at"), who), "publisher", ""),
    "unschedule": (unschedule_issue, "publisher", "No longer scheduled: it is approved and waiting."),
    # The settings let the send's start render the email it freezes (compose.mail.freeze).
    "send": (lambda s, i, who: send_issue(s, i, who, _settings()), "publisher", "Sending has started."),
    "pause": (pause_issue, "publisher", "Sending is paused. Nobody else gets it until you resume."),
    "resume": (resume_issue, "publisher", "Sending has resumed. Nobody who already got it will get it again."),
    "cancel": (cancel_issue, "publisher", "Sending is cancelled. Nobody else will get this issue."),
}


@bp.post(
    "/issues/<int:issue_id>/<any(submit, approve, return, schedule, unschedule, send, pause, resume, cancel):action>"
)
@login_required
def issue_action(issue_id: int, action: str):
    command, role, message = _ACTIONS[action]
    if not has_role(current_user.role, role):
        abort(403, f"Only a {role} or above can do that. Ask a publisher in your team.")
    try:
        with runtime_of_app().db.transaction() as session:
            send_at = command(session, issue_id, _actor()).send_at
    except NotFound:
        abort(404, f"There is no issue {issue_id}.")
    except (Conflict, InvalidInput) as exc:
        flash(str(exc) if isinstance(exc, Conflict) else exc.sentences)
        return redirect(url_for("admin.issue", issue_id=issue_id), code=303)
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


from . import account as _account  # noqa: E402,F401  (registers its routes on bp)
from . import audience as _audience_pages  # noqa: E402,F401  (registers its routes on bp)
from . import composer as _composer  # noqa: E402,F401  (registers its routes on bp)
from . import home as _home  # noqa: E402,F401  (registers its routes on bp)
from . import lists as _lists  # noqa: E402,F401  (registers its routes on bp)
from . import recipients  # noqa: E402,F401  (registers its routes on bp)
from . import suppressions as _suppressions  # noqa: E402,F401  (registers its routes on bp)
from . import team as _team  # noqa: E402,F401  (registers its routes on bp)
from . import updates as _updates  # noqa: E402,F401  (registers its routes on bp)
