"""WSGI entry point in a checkout: `gunicorn web:app`, `flask --app web run` (installed: mailer.web.wsgi:app)."""

from mailer.web.wsgi import app

__all__ = ["app"]
