"""Error reports to Sentry (sentry-sdk) when SENTRY_DSN is set: unhandled errors and ERROR log lines of the web
processes and the Celery workers, with their breadcrumbs.

Nothing personal goes: the SDK collects no user, client address, cookie, request body, query string or frame
variables, and `scrub` (before_send and before_breadcrumb) passes every string of an
event, its keys included, through redact.py, the same redaction as the logs: addresses become short keyed hashes,
API tokens, signed link tokens and URL passwords go. A Sentry-compatible server (GlitchTip, self-hosted Sentry)
takes the same DSN.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

from ..config import Settings
from .redact import redactor

# Events are a few levels deep; anything deeper is cut rather than walked.
_MAX_DEPTH = 64


def scrubber(email_hash_key: str | None) -> Callable[[object], object]:
    """A function returning a copy of a JSON-like value (an event, a breadcrumb) with every string redacted."""
    redact = redactor(email_hash_key)

    def scrub(value, depth: int = 0):
        if depth > _MAX_DEPTH:
            return "[too deep]"
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {(redact(k) if isinstance(k, str) else k): scrub(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v, depth + 1) for v in value]
        return value

    return scrub


def init_sentry(settings: Settings, component: str) -> bool:
    """Start reporting errors for this process if SENTRY_DSN is set; True if it was."""
    ops = settings.operations
    if not ops.sentry_dsn:
        return False
    import sentry_sdk

    scrub = scrubber(settings.email_hash_key)
    sentry_sdk.init(
        dsn=ops.sentry_dsn,
        environment=ops.sentry_environment,
        release=f"trust-matters-mailer@{_version()}",
        # What the SDK itself collects (its `data_collection`, which replaced send_default_pii): no user, cookies,
        # bodies (a form post holds an address), query strings or frame variables (anyone's address, a message);
        # request headers only outside its own denylist of credentials and client addresses.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "queues": False,
            "gen_ai": {"inputs": False, "outputs": False},
            "stack_frame_variables": False,
        },
        before_send=lambda event, _hint: scrub(event),
        before_breadcrumb=lambda crumb, _hint: scrub(crumb),
        traces_sample_rate=0,  # errors only: no performance tracing
    )
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


def _version() -> str:
    try:
        return metadata.version("trust-matters-mailer")
    except metadata.PackageNotFoundError:
        return "unknown"
