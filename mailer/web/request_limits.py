"""What every request is held to before a view reads it, so that no input can turn into a 500.

- JSON bodies are read by `parse_json`: bounded in size and nesting depth (Python's parser recurses once per
  nested array or object, so a body nested 50,000 deep raised RecursionError on every JSON endpoint), with no
  NaN, Infinity or number too large to be a float.
- The path and the query string hold no NUL character. They only ever carry ids, slugs, filters and searches,
  and PostgreSQL refuses NUL in text, so `/news/%00` or a search with one was a 500 there. (Free text in forms
  and JSON keeps the services' rule: invisible characters are cleaned out, identifiers with them refused.)
- Whole numbers in paths (`<int:...>`) have at most ten digits (a longer one matches no route: a 404), and one
  above `MAX_ID` reaches the view as 0, an id no row has: a 404 like any other id that does not exist, never an
  overflow in the database driver (PostgreSQL's integers stop at 2**31 - 1).
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from ..models import MAX_ID

# Deeper than anything the API takes (a segment's rules nest at most 6 groups, about 15 levels of JSON).
MAX_DEPTH = 32
# The largest issue (200,000 characters of Markdown, every one escaped) fits with room to spare.
MAX_BYTES = 2 * 1024 * 1024


class UnreadableJSON(ValueError):
    """Not JSON we accept; the message says why in a sentence for a person."""


class BeyondLimits(UnreadableJSON):
    """JSON, but deeper, larger or with numbers beyond what we read."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 reads as infinity, which no field means and JSON cannot carry back
        raise BeyondLimits(f"The number {text[:20]} is too large")
    return number


def _no_constants(name: str):
    raise BeyondLimits(f"{name} is not a JSON value")


def _too_deep(value: Any) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH (walked with a list: no recursion to exhaust)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(data: str | bytes) -> Any:
    """`data` as JSON, or UnreadableJSON saying what is wrong: not JSON, larger than MAX_BYTES, nested deeper
    than MAX_DEPTH, or holding NaN, Infinity or a number too large for a float."""
    if len(data) > MAX_BYTES:
        raise BeyondLimits(f"JSON bodies may be at most {MAX_BYTES // (1024 * 1024)} MB")
    try:
        value = json.loads(data, parse_float=_finite, parse_constant=_no_constants)
    except RecursionError:
        raise BeyondLimits(f"JSON may nest arrays and objects at most {MAX_DEPTH} deep") from None
    except UnreadableJSON:
        raise
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer of over 4,300 digits
        raise UnreadableJSON(f"The body is not valid JSON: {str(exc)[:200]}") from None
    if _too_deep(value):
        raise BeyondLimits(f"JSON may nest arrays and objects at most {MAX_DEPTH} deep")
    return value


class BoundedJSONProvider(DefaultJSONProvider):
    """The app's JSON: what `request.get_json` parses goes through `parse_json`. Beyond the limits is a 400 (or a
    413) saying why; JSON that does not parse stays a ValueError, so each endpoint answers it as it always has.
    Flask's own callers that pass parser options (none do today) get the standard parser."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            return super().loads(s, **kwargs)
        if len(s) > MAX_BYTES:
            raise RequestEntityTooLarge(f"JSON bodies may be at most {MAX_BYTES // (1024 * 1024)} MB")
        try:
            return parse_json(s)
        except BeyondLimits as exc:
            # Not a ValueError any more: get_json(silent=True) must not turn this into "no body".
            raise BadRequest(str(exc)) from None


class IdConverter(IntegerConverter):
    """`<int:...>` in our routes: at most ten digits, so a longer number matches no route (a 404), and one above
    MAX_ID becomes 0, which no row has. Not refused with `max=`: werkzeug answers a converter's refusal with a
    405 when the same path has other methods."""

    regex = r"\d{1,10}"

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= MAX_ID else 0


def refuse_nul_in_address() -> None:
    """Before every request: a NUL in the path or the query string is a 400 saying where."""
    if "\x00" in request.path:
        raise BadRequest("The address holds a NUL character (%00): remove it")
    for key, value in request.args.items(multi=True):
        if "\x00" in key or "\x00" in value:
            raise BadRequest(f"The query parameter {key.replace(chr(0), '')[:40]!r} holds a NUL character: remove it")
