"""WSGI entry point for gunicorn (`gunicorn web:app`) and `flask --app web run`."""

from mailer.web import create_app

app = create_app()
