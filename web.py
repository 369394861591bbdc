"""WSGI entry point for gunicorn (`gunicorn web:app`) and `flask --app web run`."""

from mailer.web.app import create_served_app

app = create_served_app()
