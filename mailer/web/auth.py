"""Who may see an admin page: Flask-Login's user loader and the role decorator."""

from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import LoginManager, current_user, login_required

from ..accounts import has_role

login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = "Sign in to continue"


@login_manager.user_loader
def _load_user(user_id: str):
    from .sessions import load_user  # the sign-in must be live on the server, not just in the cookie

    return load_user(user_id)


def require_role(needed: str):
    """Admin view decorator: signed in, with at least `needed` (editor < publisher < admin)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            if not has_role(current_user.role, needed):
                abort(403, f"Only a {needed} or above can do that. Ask a publisher in your team.")
            return view(*args, **kwargs)

        return wrapper

    return decorator
