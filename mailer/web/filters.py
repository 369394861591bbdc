"""Jinja filters the pages use: UK local time and readable audit details."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from flask import Flask

LONDON = ZoneInfo("Europe/London")


def install(app: Flask) -> None:
    app.jinja_env.filters["uk"] = uk
    app.jinja_env.filters["readable_details"] = readable_details


def uk(moment):
    """A moment in London's time (BST or GMT); None stays None."""
    return moment.astimezone(LONDON) if moment else moment


def readable_details(details) -> list[tuple[str, str]]:
    """An audit or consent record's details as (name, value) lines a person reads: text as it was written
    (never `\\u0027`-style escapes, which `tojson` makes for use inside scripts), lists joined with commas."""
    if not isinstance(details, dict):
        return [] if details in (None, "", [], {}) else [("", _readable(details))]
    return [(str(name), _readable(value)) for name, value in details.items()]


def _readable(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, ensure_ascii=False)
