"""One logging configuration for every process: web (gunicorn and `flask run`), Celery workers and beat, the CLI.

The standard library's `logging.config.dictConfig` with python-json-logger's formatter for LOG_FORMAT=json (one
JSON object a line: what a log shipper reads without parsing rules) and a plain line for LOG_FORMAT=text. Not
structlog: every line here comes from the standard library's loggers (ours, Celery's, gunicorn's, SQLAlchemy's),
so a formatter and a filter on the one root handler see all of them, and nothing has to be taught a second API.

Every line carries the request id of the web request it belongs to (`request_id`), or of the request that
queued the task it was written in: the id travels in the task message's headers (before_task_publish), and
task_prerun sets it for the task's own lines and for whatever it queues in turn. A task queued by no request
(beat's) takes its own task id, so what it queues can be followed back to it. Each finished line goes through
redact.py: no address, token or password reaches a log.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import uuid
from contextvars import ContextVar

from celery.signals import beat_init, before_task_publish, setup_logging, task_postrun, task_prerun
from pythonjsonlogger.json import JsonFormatter

from ..config import Operations, Settings
from .redact import redactor

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TASK: ContextVar[tuple[str, str] | None] = ContextVar("task", default=None)  # (name, id) of the running task
# The task message header that carries the request id to the worker.
HEADER = "mailer_request_id"
# What a request id from the proxy may look like (a UUID, nginx's $request_id, an AWS trace id): anything else is
# replaced by one of our own, so a header cannot put line breaks or a novel into the logs.
WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+-]{7,127}")

# Which process this is (web, worker, beat, cli): on every line, and set once at start.
_component = {"name": "cli"}


def new_request_id() -> str:
    return uuid.uuid4().hex


def well_formed(value: str | None) -> bool:
    return bool(value) and WELL_FORMED.fullmatch(value) is not None


class Context(logging.Filter):
    """Adds the process (`component`), the request id and the running task to every record that has them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = _component["name"]
        request_id = REQUEST_ID.get()
        if request_id:
            record.request_id = request_id
        task = TASK.get()
        if task:
            record.task, record.task_id = task
        return True


def _context_text(record: logging.LogRecord) -> str:
    tags = [f"{name}={getattr(record, name)}" for name in ("request_id", "task") if getattr(record, name, None)]
    return f" [{' '.join(tags)}]" if tags else ""


class TextFormatter(logging.Formatter):
    """`2026-12-01 09:00:00,123 INFO mailer.tasks [request_id=… task=…]: message`, redacted."""

    def __init__(self, email_hash_key: str | None = None):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context_text)s: %(message)s")
        self._redact = redactor(email_hash_key)

    def format(self, record: logging.LogRecord) -> str:
        record.context_text = _context_text(record)
        return self._redact(super().format(record))


class JsonLinesFormatter(JsonFormatter):
    """`{"time": …, "level": …, "logger": …, "message": …, "component": …, "request_id": …}` a line, redacted
    as a whole (message, traceback and any extra field alike). Fields without a value are left out."""

    def __init__(self, email_hash_key: str | None = None):
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            timestamp="time",
            reserved_attrs=[*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "context_text"],
        )
        self._redact = redactor(email_hash_key)

    def process_log_record(self, log_data):
        ordered = {"time": log_data.pop("time", None), **log_data}  # time first, as a person reads a line
        return {k: v for k, v in ordered.items() if v is not None}

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class Stderr(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is when a line is written (not when configured), so a test's
    captured stream, or a replaced one, is never written to after it closed."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def logging_config(operations: Operations, email_hash_key: str | None) -> dict:
    """The dictConfig for these settings: one handler on the root logger that every library's logger reaches."""
    formatter = JsonLinesFormatter if operations.log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": Context}},
        "formatters": {"line": {"()": formatter, "email_hash_key": email_hash_key}},
        "handlers": {"stderr": {"()": Stderr, "formatter": "line", "filters": ["context"]}},
        "root": {"level": operations.log_level, "handlers": ["stderr"]},
        "loggers": {
            # gunicorn's own loggers (its master and workers) through the same handler, not handlers of their own.
            "gunicorn.error": {"handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": True},
            "mail.log": {"level": "WARNING"},  # aiosmtpd's line per SMTP command
            "alembic.runtime.plugins": {"level": "WARNING"},  # a line per plugin at every start
        },
    }


def name_process(component: str) -> None:
    """What every line of this process says it came from: web, worker, beat or cli."""
    _component["name"] = component


def configure_logging(settings: Settings, component: str) -> None:
    """Set this process's logging from LOG_LEVEL and LOG_FORMAT; `component` names the process on every line."""
    name_process(component)
    logging.config.dictConfig(logging_config(settings.operations, settings.email_hash_key))


# --- Celery: our configuration instead of Celery's, and the request id carried into tasks -------------------------


@setup_logging.connect
def _celery_logging(**_):
    """A worker or beat sets up logging: ours, from the settings (a connected receiver stops Celery's own, and its
    redirection of standard output into the log)."""
    from ..runtime import runtime

    # beat_init comes after beat's first lines: tell beat by its command line (`celery -A worker beat`).
    configure_logging(runtime().settings, "beat" if "beat" in sys.argv[1:] else "worker")


@beat_init.connect
def _beat_named(**_):
    name_process("beat")


@before_task_publish.connect
def _carry_request_id(headers=None, **_):
    request_id = REQUEST_ID.get()
    if request_id and headers is not None:
        headers.setdefault(HEADER, request_id)


_task_tokens: dict[str, tuple] = {}


@task_prerun.connect
def _enter_task(task_id=None, task=None, **_):
    carried = getattr(task.request, HEADER, None) if task is not None else None
    request_id = carried if well_formed(carried) else task_id
    _task_tokens[task_id] = (REQUEST_ID.set(request_id), TASK.set((getattr(task, "name", "?"), task_id)))


@task_postrun.connect
def _leave_task(task_id=None, **_):
    tokens = _task_tokens.pop(task_id, None)
    if tokens:
        REQUEST_ID.reset(tokens[0])
        TASK.reset(tokens[1])
