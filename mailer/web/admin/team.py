"""Admins only: the team's accounts, API tokens and the audit log."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from ... import audit
from ...accounts import add_member, change_member, effective_role, issue_token, list_members, list_tokens, revoke_token
from ...accounts.factors import reset_factor
from ...errors import Conflict, InvalidInput, NotFound
from ...models import ROLES
from ..auth import require_role
from ..context import db_session, runtime_of_app
from . import _actor, bp


@bp.get("/team")
@require_role("admin")
def team(errors=None, values=None, new_token=None, status=200):
    session = db_session()
    return (
        render_template(
            "admin/team.html",
            users=list_members(session),
            tokens=list_tokens(session),
            roles=ROLES,
            effective_role=effective_role,
            errors=errors or {},
            values=values or {"role": "editor"},
            new_token=new_token,
        ),
        status,
    )


@bp.post("/team/users")
@require_role("admin")
def add_user():
    form = request.form
    values = {"email": form.get("email", ""), "name": form.get("name", ""), "role": form.get("role", "editor")}
    try:
        with runtime_of_app().db.transaction() as session:
            add_member(session, {**values, "password": form.get("password", "")}, actor=_actor())
    except InvalidInput as exc:
        return team(errors=exc.errors, values=values, status=400)
    except Conflict as exc:
        return team(errors={"email": str(exc)}, values=values, status=409)
    flash(f"Account created for {values['email']}. Give them their password in person or by phone.")
    return redirect(url_for("admin.team"), code=303)


@bp.post("/team/users/<int:user_id>")
@require_role("admin")
def update_user(user_id: int):
    change = {
        "role": request.form.get("role") or None,
        "active": {"on": True, "off": False}.get(request.form.get("active", "")),
    }
    try:
        with runtime_of_app().db.transaction() as session:
            user = change_member(session, user_id, change, actor=_actor())
    except NotFound as exc:
        abort(404, str(exc))
    except (InvalidInput, Conflict) as exc:
        flash(str(exc) if isinstance(exc, Conflict) else exc.sentences)
    else:
        flash(f"{user.email}: {'switched off' if change['active'] is False else 'saved'}.")
    return redirect(url_for("admin.team"), code=303)


@bp.post("/team/users/<int:user_id>/factor-reset")
@require_role("admin")
def reset_member_factor(user_id: int):
    """Take away someone's second factor (a lost phone): they are signed out and set up a new one next time."""
    try:
        with runtime_of_app().db.transaction() as session:
            user = reset_factor(session, user_id, actor=_actor())
    except NotFound as exc:
        abort(404, str(exc))
    except Conflict as exc:
        flash(str(exc))
    else:
        flash(f"{user.email}: second factor reset and signed out. They set up a new one when they next sign in.")
    return redirect(url_for("admin.team"), code=303)


@bp.post("/team/tokens")
@require_role("admin")
def add_token():
    form = request.form
    values = {"token_owner": form.get("token-owner", ""), "token_role": form.get("token-role", "")}
    owner = values["token_owner"]
    wanted = {
        "name": form.get("token-name", ""),
        "role": values["token_role"] or None,
        # The form's choice is an account's id; anything else chooses nobody.
        "owner": int(owner) if owner.isascii() and owner.isdecimal() and len(owner) < 10 else None,
    }
    try:
        with runtime_of_app().db.transaction() as session:
            _row, secret = issue_token(session, wanted, actor=_actor())
    except InvalidInput as exc:
        return team(errors={f"token_{k}": v for k, v in exc.errors.items()}, values=values, status=400)
    # Shown once, on this response only; only its hash is kept.
    return team(new_token=secret)


@bp.post("/team/tokens/<int:token_id>/revoke")
@require_role("admin")
def remove_token(token_id: int):
    try:
        with runtime_of_app().db.transaction() as session:
            row = revoke_token(session, {"id": token_id}, actor=_actor())
    except NotFound as exc:
        abort(404, str(exc))
    if row is not None:
        flash(f"Token {row.prefix}… revoked: it stops working now.")
    return redirect(url_for("admin.team"), code=303)


@bp.get("/audit")
@require_role("admin")
def audit_log():
    before = request.args.get("before", "")
    action = request.args.get("action", "")[:64] or None
    before_id = int(before) if before.isascii() and before.isdecimal() and len(before) < 19 else None
    events = audit.recent(db_session(), action=action, before=before_id, limit=101)
    return render_template(
        "admin/audit.html", events=events[:100], next_before=events[99].id if len(events) > 100 else None, action=action
    )
