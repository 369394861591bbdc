"""The WSGI application for gunicorn: `gunicorn -c python:mailer.web.gunicorn_config mailer.web.wsgi:app` (web.py
at the repository root is the same app).

Bad settings end the process with their list and no traceback. gunicorn_config checks them in gunicorn's master,
which then exits with EX_CONFIG (78) before starting a worker. A worker that still meets one (gunicorn started
without that config, or EMAIL_HASH_KEY not the database's) exits with gunicorn's own "App failed to load" code,
the one that makes the master stop instead of starting the worker again and again.
"""

import sys

from ..config import EX_CONFIG, exit_on_config_error
from .app import create_served_app

GUNICORN_APP_LOAD_ERROR = 4  # gunicorn.arbiter.Arbiter.APP_LOAD_ERROR

with exit_on_config_error(GUNICORN_APP_LOAD_ERROR if "gunicorn.arbiter" in sys.modules else EX_CONFIG):
    app = create_served_app()  # with the process's logging and error reports
