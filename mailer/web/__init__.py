"""The web adapters: public pages, the admin and the JSON API. Blueprints parse input, call one service,
render the result. The factory is in app.py; each of its helpers (limits, errors, auth, downloads, filters,
the request context) in a module of its own."""

from .app import create_app

__all__ = ["create_app"]
