"""Admins only: the team's accounts, API tokens and the audit log."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ... import audit
from ...accounts import change_account, create_admin, create_token, effective_role, list_tokens, revoke_token
from ...errors import Conflict, InvalidInput
from ...models import ROLES, AdminUser, ApiToken
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
            users=list(session.scalars(select(AdminUser).order_by(AdminUser.email))),
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
            user = create_admin(
                session, values["email"], form.get("password", ""), role=values["role"], name=values["name"]
            )
            audit.record(session, _actor(), "user.create", user, email=user.email, role=user.role)
    except InvalidInput as exc:
        return team(errors=exc.errors, values=values, status=400)
    except Conflict as exc:
        return team(errors={"email": str(exc)}, values=values, status=409)
    flash(f"Account created for {values['email']}. Give them their password in person or by phone.")
    return redirect(url_for("admin.team"), code=303)


@bp.post("/team/users/<int:user_id>")
@require_role("admin")
def update_user(user_id: int):
    if db_session().get(AdminUser, user_id) is None:
        abort(404, f"There is no account {user_id}.")
    role = request.form.get("role") or None
    active = {"on": True, "off": False}.get(request.form.get("active", ""))
    try:
        with runtime_of_app().db.transaction() as session:
            user = change_account(session, user_id, role=role, active=active)
            audit.record(session, _actor(), "user.change", user, role=role, active=active)
    except (InvalidInput, Conflict) as exc:
        flash(str(exc) if isinstance(exc, Conflict) else exc.sentences)
    else:
        flash(f"{user.email}: {'switched off' if active is False else 'saved'}.")
    return redirect(url_for("admin.team"), code=303)


@bp.post("/team/tokens")
@require_role("admin")
def add_token():
    form = request.form
    values = {"token_owner": form.get("token-owner", ""), "token_role": form.get("token-role", "")}
    try:
        with runtime_of_app().db.transaction() as session:
            owner_id = values["token_owner"]
            is_id = owner_id.isascii() and owner_id.isdecimal() and len(owner_id) < 10
            owner = session.get(AdminUser, int(owner_id)) if is_id else None
            if owner is None:
                raise InvalidInput({"owner": "Choose the team member the token is for"})
            row, secret = create_token(session, form.get("token-name", ""), values["token_role"] or None, owner=owner)
            audit.record(session, _actor(), "token.create", row, name=row.name, role=row.role, owner=owner.email)
    except InvalidInput as exc:
        return team(errors={f"token_{k}": v for k, v in exc.errors.items()}, values=values, status=400)
    # Shown once, on this response only; only its hash is kept.
    return team(new_token=secret)


@bp.post("/team/tokens/<int:token_id>/revoke")
@require_role("admin")
def remove_token(token_id: int):
    with runtime_of_app().db.transaction() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            abort(404, f"There is no token {token_id}.")
        if row.revoked_at is None:
            revoke_token(session, row.prefix)
            audit.record(session, _actor(), "token.revoke", row, name=row.name)
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
