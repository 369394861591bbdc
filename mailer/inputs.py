"""Typed inputs: one pydantic model per thing a person or a program asks of us, validated once.

Every adapter turns what it was given into the same plain shape (an admin form becomes the dict an API call
would send; a CLI command's options likewise) and calls `parse(Model, data)`. What comes back is a model whose
fields can be trusted; what does not fit is `InvalidInput`, one plain-English sentence per wrong field, named by
its path as a person would write it (`blocks[3].alt`, `rules.all[1].op`, `consent.source`). The same models
describe the API (`mailer/web/api/spec.py` turns them into the OpenAPI document).

Conventions for models:
- subclass `Input` (unknown fields are refused, types are strict: `5` is not a string, `true` not a number);
- in a validator, raise `ValueError("A sentence a person can act on")`: it reaches them as written;
- a union of shapes (block types, rule groups or conditions) is discriminated (`Field(discriminator=...)` or a
  callable `Discriminator`), so an error names the field, not every shape it might have been.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


class Input(BaseModel):
    """Base for input models: unknown fields refused, no type coercion, values frozen once checked."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


class Output(BaseModel):
    """Base for what the API answers with: it documents the response; `dump()` gives JSON-ready data."""

    model_config = ConfigDict(extra="forbid")

    def dump(self) -> dict:
        return self.model_dump(mode="json")


def parse(model: type[M], data: Any, *, prefix: str = "", context: dict | None = None) -> M:
    """`data` checked against `model`, or InvalidInput naming every wrong field (paths start with `prefix`).
    `context` gives validators what only the database knows (`{"topics": ...}`: see `audience.lookups.parse_in`)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise invalid(exc, data, prefix=prefix) from None


def invalid(exc: ValidationError, data: Any, *, prefix: str = "") -> InvalidInput:
    """The InvalidInput a person reads for a pydantic ValidationError raised on `data`."""
    errors: dict[str, str] = {}
    summary: list[str] = []
    unknown: list[str] = []
    for error in exc.errors(include_url=False, include_context=True):
        path = field_path(error["loc"], data, prefix)
        if error["type"] == "extra_forbidden":
            unknown.append(path)
            errors.setdefault(path, "Unknown field")
            continue
        field, sentence = _sentences(error, path)
        if path not in errors:  # the first problem with a field is the one to fix first
            errors[path] = field
            summary.append(sentence)
    if unknown:
        summary.insert(0, f"Unknown field(s): {', '.join(unknown)}")
    return InvalidInput(errors, message="; ".join(summary))


def field_path(loc: tuple, data: Any, prefix: str = "") -> str:
    """`("blocks", 3, "image", "alt")` → `blocks[3].alt`.

    pydantic puts the tag of a discriminated union into the location (`"image"` above). It is dropped: walking
    the input along the location, a name that is not the last one and that the object in hand does not have is
    such a tag, never a field (a missing field is always the last name)."""
    parts: list[str] = [prefix] if prefix else []
    value = data
    last = len(loc) - 1
    for i, step in enumerate(loc):
        if isinstance(step, int):
            parts.append(f"[{step}]")
            value = value[step] if isinstance(value, list) and -len(value) <= step < len(value) else None
            continue
        if i < last and isinstance(value, dict) and step not in value:
            continue
        parts.append(f".{step}" if parts else str(step))
        value = value.get(step) if isinstance(value, dict) else None
    return "".join(parts).lstrip(".") or prefix


def _phrase(text: str):
    return lambda _ctx: text


def _bound(words: str):
    return lambda ctx: f"must be {words} {next(iter(ctx.values()), '')}"


def _tagged(ctx: dict) -> str:  # only an invalid tag's error lists the tags
    phrase = f"needs a {str(ctx.get('discriminator', 'type')).strip(chr(39))}"
    return phrase + (f": one of {ctx['expected_tags']}" if ctx.get("expected_tags") else "")


# pydantic's error types, as what is said of the field ("'count' must be a whole number").
_PHRASES = {
    "string_type": _phrase("must be a string"),
    "bool_type": _phrase("must be true or false"),
    "bool_parsing": _phrase("must be true or false"),
    "int_type": _phrase("must be a whole number"),
    "int_parsing": _phrase("must be a whole number"),
    "int_from_float": _phrase("must be a whole number"),
    "float_type": _phrase("must be a number"),
    "float_parsing": _phrase("must be a number"),
    "list_type": _phrase("must be a list"),
    "dict_type": _phrase("must be an object"),
    "model_type": _phrase("must be an object"),
    "model_attributes_type": _phrase("must be an object"),
    "none_required": _phrase("must be null"),
    "string_too_short": _phrase("must not be empty"),
    "literal_error": lambda ctx: f"must be one of {ctx.get('expected', '')}".strip(),
    "enum": lambda ctx: f"must be one of {ctx.get('expected', '')}".strip(),
    "union_tag_invalid": _tagged,
    "union_tag_not_found": _tagged,
    "string_too_long": lambda ctx: f"must be {ctx.get('max_length'):,} characters or fewer",
    "too_long": lambda ctx: f"must have at most {ctx.get('max_length'):,} items",
    "too_short": lambda ctx: (
        f"must have at least {ctx.get('min_length'):,} item" + ("" if ctx.get("min_length") == 1 else "s")
    ),
    "greater_than_equal": _bound("at least"),
    "greater_than": _bound("more than"),
    "less_than_equal": _bound("at most"),
    "less_than": _bound("less than"),
}
# Our own validators' sentences, as written (pydantic puts these prefixes before them).
_PREFIXES = {"value_error": "Value error, ", "assertion_error": "Assertion failed, "}


def _sentences(error: dict, path: str) -> tuple[str, str]:
    """(what is said next to the field, what is said of it in the one-line summary)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "Required", f"'{path}' is required"
    if kind in _PHRASES:
        phrase = _PHRASES[kind](ctx)
        return phrase[0].upper() + phrase[1:], f"'{path}' {phrase}"
    message = str(error["msg"]).removeprefix(_PREFIXES.get(kind, ""))
    return message, f"{path}: {message}" if path else message
