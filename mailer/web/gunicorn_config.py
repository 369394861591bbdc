"""gunicorn's settings for the web process: `gunicorn -c python:mailer.web.gunicorn_config mailer.web.wsgi:app`.

Command-line options (bind, workers, threads) still come after it; this only adds a check before any worker starts.
"""

from ..config import exit_on_config_error, load_settings


def on_starting(server) -> None:
    """In gunicorn's master, before it forks: bad settings end gunicorn here, their list on standard error and exit
    code EX_CONFIG (78), rather than in every worker."""
    with exit_on_config_error():
        load_settings()
