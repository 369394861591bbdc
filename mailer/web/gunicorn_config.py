"""gunicorn's settings for the web process: `gunicorn -c python:mailer.web.gunicorn_config mailer.web.wsgi:app`
(as `mailer run`, the image and compose start it). Command-line options (bind, workers, threads) come after it.

- The settings are read here, in gunicorn's master, before it forks: bad ones end gunicorn with their list on
  standard error and exit code EX_CONFIG (78), rather than in every worker.
- gunicorn's own lines, its master's included, go through the one logging configuration (ops/logs.py) instead of
  handlers of its own. No access log: the app writes one line a request, with its request id and the route instead
  of the path (paths carry signed tokens).
"""

from ..config import exit_on_config_error, load_settings
from ..ops.logs import logging_config, name_process

with exit_on_config_error():
    _settings = load_settings()
name_process("web")
logconfig_dict = logging_config(_settings.operations, _settings.email_hash_key)
# With a logging configuration gunicorn writes its access lines to gunicorn.access whatever `accesslog` says;
# they would repeat the app's line a request (mailer.web.requests), path and all, so that logger is quietened.
logconfig_dict.setdefault("loggers", {})["gunicorn.access"] = {"level": "WARNING", "propagate": True}
accesslog = None
