"""gunicorn's settings (`gunicorn --config python:mailer.ops.gunicorn_config web:app`, as `mailer run` and the
image start it): gunicorn's own lines, its master's included, go through the one logging configuration
(ops/logs.py) instead of handlers of its own. No access log: the app writes one line a request, with its
request id and the route instead of the path (paths carry signed tokens)."""

from ..config import load_settings
from .logs import logging_config, name_process

_settings = load_settings()
name_process("web")
logconfig_dict = logging_config(_settings.operations, _settings.email_hash_key)
accesslog = None
