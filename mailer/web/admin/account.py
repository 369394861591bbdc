"""One's own account: the sign-in's second step, enrolling a second factor, changing and resetting a password.

The code and forced-enrolment pages serve a browser that is half signed in (web/sessions.py `held`): it has no
sign-in yet, so every other admin page still sends it to sign in.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ...accounts import factors, member, passwords, signin
from ...audit import Actor
from ...errors import Conflict, InvalidInput, NotFound
from .. import sessions
from ..context import db_session, runtime_of_app
from ..limits import LOGIN_LIMIT, RESET_LIMIT, limiter
from . import LOCKED, _actor, _settings, bp

START_AGAIN = "That took too long, or your account changed meanwhile: sign in again."


def _finish(attempt: signin.Attempt):
    """A sign-in completed: the fresh cookie session, then the page asked for at the start."""
    next_page = sessions.held_next() or url_for("admin.dashboard")
    sessions.begin(attempt.user, attempt.secret)
    return next_page


def _start_again():
    """The half sign-in is void or at the other step: to that step if it is still good, else to sign in."""
    pending = sessions.held()
    for stage, page in (("code", "admin.login_code"), ("enrol", "admin.enrol")):
        if signin.pending_user(db_session(), pending, stage) is not None:
            return redirect(url_for(page), code=303)
    sessions.drop_held()
    flash(START_AGAIN)
    return redirect(url_for("admin.login"), code=303)


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login_code():
    """The second step: a code from the authenticator app, or a recovery code."""
    pending = sessions.held()
    if signin.pending_user(db_session(), pending, "code") is None:
        return _start_again()
    if request.method == "GET":
        return render_template("admin/login_code.html", error=None)
    code = request.form.get("code", "")[:64]
    with runtime_of_app().db.transaction() as session:
        attempt = signin.sign_in_with_code(session, pending, code, _settings())
    if attempt.outcome == "signed_in":
        return redirect(_finish(attempt), code=303)
    if attempt.outcome == "expired":
        return _start_again()
    if attempt.outcome == "locked":
        sessions.drop_held()
        return render_template("admin/login.html", error=LOCKED, email=""), 429
    error = "That code is not right, or it has been used already. Type the code your app shows now."
    return render_template("admin/login_code.html", error=error), 400


def _enrolling() -> tuple[str, int] | None:
    """Who is enrolling: ("signed_in", id) for a signed-in member, ("pending", id) for one whose password was
    right and who must enrol before anything else (MFA_REQUIRED), or None."""
    if current_user.is_authenticated:
        return "signed_in", current_user.id
    user = signin.pending_user(db_session(), sessions.held(), "enrol")
    return ("pending", user.id) if user is not None else None


@bp.route("/enrol", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def enrol():
    """Set up the second factor: scan the QR code (or type the key), then type a code back to switch it on."""
    who = _enrolling()
    if who is None:
        return _start_again()
    how, user_id = who
    settings = _settings()
    error = None
    if request.method == "POST":
        try:
            with runtime_of_app().db.transaction() as session:
                data = {"code": request.form.get("code", "")[:64]}
                if how == "pending":
                    attempt, codes = signin.enrol_and_sign_in(session, sessions.held(), data, settings)
                else:
                    user = member(session, user_id)
                    attempt, codes = None, factors.confirm_enrolment(session, user, data, settings, actor=_actor())
        except InvalidInput as exc:
            error = exc.errors.get("code", exc.sentences)
        except Conflict as exc:
            flash(str(exc))
            return redirect(url_for("admin.account"), code=303)
        else:
            if attempt is not None and attempt.outcome != "signed_in":
                return _start_again()
            next_page = _finish(attempt) if attempt is not None else url_for("admin.account")
            # Shown on this answer only: only their hashes are kept.
            return render_template("admin/recovery_codes.html", codes=codes, next_page=next_page)
    try:
        with runtime_of_app().db.transaction() as session:
            enrolment = factors.begin_enrolment(session, member(session, user_id), settings)
    except Conflict as exc:
        flash(str(exc))
        return redirect(url_for("admin.account"), code=303)
    return render_template("admin/enrol.html", enrolment=enrolment, error=error, forced=how == "pending"), (
        400 if error else 200
    )


@bp.get("/account")
@login_required
def account(errors=None, status=200):
    """Your account: change your password, your second factor."""
    return render_template(
        "admin/account.html",
        errors=errors or {},
        codes_left=factors.recovery_codes_left(db_session(), current_user.id),
    ), status


@bp.post("/account/password")
@login_required
@limiter.limit(LOGIN_LIMIT)
def change_password():
    form = {name: request.form.get(name, "") for name in ("current_password", "new_password", "confirm_password")}
    try:
        with runtime_of_app().db.transaction() as session:
            user = member(session, current_user.id)
            ended = passwords.change_password(
                session, user, form, current_sign_in=sessions.current_sign_in_id(), actor=_actor()
            )
    except InvalidInput as exc:
        return account(errors=exc.errors, status=400)
    elsewhere = f" You were signed out everywhere else ({ended})." if ended else ""
    flash("Your password is changed." + elsewhere)
    return redirect(url_for("admin.account"), code=303)


@bp.route("/forgotten-password", methods=["GET", "POST"])
@limiter.limit(RESET_LIMIT, methods=["POST"])
def forgotten_password():
    """Ask for a reset link by email: the same answer whether or not the address has an account."""
    if request.method == "GET":
        return render_template("admin/forgotten_password.html", errors={}, email="")
    email = request.form.get("email", "")
    try:
        with runtime_of_app().db.transaction() as session:
            passwords.request_reset(session, {"email": email}, actor=Actor("public", None, "the sign-in page"))
    except InvalidInput as exc:
        return render_template("admin/forgotten_password.html", errors=exc.errors, email=email[:320]), 400
    return render_template("admin/reset_sent.html")


@bp.route("/reset/<token>", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def reset_password(token: str):
    """Choose a new password with the emailed link. Opening it changes nothing; the form uses it up."""
    expired = render_template("admin/reset_expired.html"), 404
    if request.method == "GET":
        try:
            passwords.reset_for(db_session(), token)
        except NotFound:
            return expired
        return render_template("admin/reset_password.html", errors={})
    form = {name: request.form.get(name, "") for name in ("new_password", "confirm_password")}
    try:
        with runtime_of_app().db.transaction() as session:
            passwords.reset_password(session, token, form)
    except NotFound:
        return expired
    except InvalidInput as exc:
        return render_template("admin/reset_password.html", errors=exc.errors), 400
    if current_user.is_authenticated:  # every sign-in ended, this browser's too
        sessions.end(current_user)
    flash("Your password is changed and you are signed out everywhere. Sign in with your new password.")
    return redirect(url_for("admin.login"), code=303)
