"""What a view reaches for during a request: the process's runtime and the request's read session."""

from __future__ import annotations

from flask import current_app, g

from ..runtime import Runtime


def runtime_of_app() -> Runtime:
    return current_app.extensions["mailer"]


def db_session():
    """A read session for the request (login lookups, page data); writes go through db.transaction()."""
    if "db_session" not in g:
        g.db_session = runtime_of_app().db.sessions()
    return g.db_session


def close_db_session(_exc=None) -> None:
    """Teardown: the request's read session, if it opened one, is closed with the app context."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
