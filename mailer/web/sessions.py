"""Admin sign-ins held on the server, for Flask-Login.

Flask's own session is a signed cookie: whoever holds a copy stays signed in until it expires, whatever the
person did. Here the cookie also carries a random secret naming a row in `admin_sessions`, and the user
loader accepts a request only while that row is live, so signing out, the idle timeout and the absolute
lifetime end the session on the server. The rows live in the database rather than in Redis: every web
host sees the same ones, and a Redis restart can neither revive a session that ended nor sign anyone out.
"""

from __future__ import annotations

from datetime import timedelta

from flask import g
from flask import session as cookie
from flask_login import login_user, logout_user

from ..accounts import (
    SESSION_TOUCH_EVERY,
    end_session,
    find_session,
    member,
    session_state,
    sign_out,
    touch_session,
)
from ..accounts.signin import Pending
from ..models import AdminUser, utcnow
from .context import db_session, runtime_of_app

SESSION_KEY = "admin_session"
# Half signed in (accounts.signin): the password was right, the code (or an enrolment) is still to come. Held
# in the signed cookie only; it is no sign-in, so load_user never accepts it and no admin page opens for it.
PENDING_KEY = "pending_sign_in"
PENDING_NEXT_KEY = "pending_next"


def begin(user: AdminUser, secret: str) -> None:
    """Sign `user` in with the new sign-in `secret`, in a fresh cookie session.

    Everything the cookie held before is dropped, the CSRF token included, so a session or token planted
    in the browser before sign-in (session fixation) is worth nothing after it."""
    cookie.clear()
    g.pop("csrf_token", None)  # Flask-WTF caches the request's token here
    login_user(user)
    cookie[SESSION_KEY] = secret


def hold(pending: Pending, next_page: str) -> None:
    """Keep a half sign-in in a fresh cookie session (as `begin` does, nothing held before survives), with the
    page to show once it is complete."""
    cookie.clear()
    g.pop("csrf_token", None)
    cookie[PENDING_KEY] = pending.to_cookie()
    cookie[PENDING_NEXT_KEY] = next_page


def held() -> Pending | None:
    """The half sign-in this browser holds, if any (accounts.signin.pending_user says whether it still counts)."""
    return Pending.from_cookie(cookie.get(PENDING_KEY))


def held_next() -> str | None:
    return cookie.get(PENDING_NEXT_KEY)


def drop_held() -> None:
    cookie.pop(PENDING_KEY, None)
    cookie.pop(PENDING_NEXT_KEY, None)


def current_sign_in_id() -> int | None:
    """The id of the sign-in row this request's cookie names (a password change keeps it, ending the others)."""
    row = find_session(db_session(), cookie.get(SESSION_KEY) or "")
    return row.id if row is not None else None


def end(user: AdminUser) -> None:
    """Sign out: the sign-in ends on the server (a copy of the cookie stops working), then the cookie is emptied."""
    secret = cookie.get(SESSION_KEY)
    if secret:
        with runtime_of_app().db.transaction() as session:
            sign_out(session, secret, user)
    logout_user()
    cookie.clear()


def load_user(user_id: str) -> AdminUser | None:
    """Flask-Login's user loader: the account, only while the sign-in the cookie names is live."""
    reads = db_session()
    row = find_session(reads, cookie.get(SESSION_KEY) or "")
    if row is None or str(row.user_id) != user_id:
        return None
    idle = timedelta(minutes=runtime_of_app().settings.session_idle_minutes)
    state = session_state(row, idle)
    if state != "live":
        if row.ended_at is None:  # timed out: say so in the record, once
            with runtime_of_app().db.transaction() as session:
                end_session(session, row.id, state)
        return None
    user = member(reads, row.user_id)
    if user is None or not user.active:  # a deactivated account is signed out
        return None
    if utcnow() - row.last_seen_at >= SESSION_TOUCH_EVERY:
        with runtime_of_app().db.transaction() as session:
            touch_session(session, row.id)
    return user
