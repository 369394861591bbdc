"""What each API operation takes and answers, said once on the view, and the OpenAPI document made from it.

    @bp.post("/segments")
    @token_required
    @operation(body=SegmentInput, responses={201: SegmentOut}, errors=(400, 413, 415))
    def segments_create(body: SegmentInput): ...

`operation` reads the JSON body (bounded: see request_limits) and the query string, checks them with their
models (`mailer.inputs.parse`, so the errors are the same sentences and field paths an admin form shows) and
hands the view `body=` / `query=`. `openapi_document(app)` walks the app's routes and writes the OpenAPI 3.1
description from those models (pydantic's JSON Schema) and the routes' own converters: nothing in it is
written by hand, so it cannot drift from what the server checks. tests/test_api_contract.py holds the server
to it with schemathesis, and tests/test_api.py checks that every route is described.

Hand-rolled rather than spectree or flask-openapi3: both answer a bad body with their own 422 list of pydantic
errors, where this API has always said 400 `{"error": sentence, "fields": {path: sentence}}`, and the same
models must also check admin forms and CLI options, which neither integration reaches. What is ours here is the
walk over the routes (about a hundred lines); the schemas themselves are pydantic's.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Flask, current_app, request
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from werkzeug.routing import AnyConverter, IntegerConverter

from ...inputs import Input, Output, parse
from ...models import MAX_ID
from ..request_limits import MAX_BYTES, MAX_DEPTH

API_PREFIX = "/api/v1"
JSON = "application/json"


class ApiError(Exception):
    """An answer other than the view's own: `status`, a sentence, and optionally the fields it is about."""

    def __init__(self, status: int, message: str, fields: dict | None = None):
        self.status, self.message, self.fields = status, message, fields


class Query(Input):
    """Base for query-string models: values arrive as text, so numbers and booleans are read from it."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True, hide_input_in_errors=True)


class Error(Output):
    """What every refusal carries."""

    error: str
    fields: dict[str, str] | None = None


@dataclass(frozen=True)
class Body:
    """A response or request body that is not a JSON model: a CSV file, a CSV upload."""

    media_type: str
    description: str
    schema: dict = field(default_factory=lambda: {"type": "string"})


ERRORS = {
    400: "Invalid input: `fields` names each wrong field",
    401: "Missing or invalid token",
    403: "The role of this token cannot do this",
    404: "Not found",
    409: "Does not fit the current state",
    413: "The body is too large",
    415: "Not JSON (or, for an import, not CSV)",
    429: "Too many requests from this token or this address; Retry-After gives the seconds to wait",
    503: "The queue is not answering: try again shortly",
}


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str
    body: type[BaseModel] | Body | None
    query: type[Query] | None
    responses: dict[int, Any]
    errors: tuple[int, ...]
    headers: dict[int, dict[str, str]]
    public: bool


def operation(
    *,
    responses: dict[int, Any],
    body: type[BaseModel] | Body | None = None,
    query: type[Query] | None = None,
    errors: tuple[int, ...] = (),
    headers: dict[int, dict[str, str]] | None = None,
    summary: str | None = None,
    public: bool = False,
    context: Callable[[], dict] | None = None,
    read_body: bool = True,
):
    """Describe a view and check its input. `responses` maps a status to a model, `list[Model]`, a `Body`, or None
        (no body); `errors` lists the refusals it can give besides 401/403/429, which come with its token; `headers`
        names response headers per status (`{201: {"Location": "The new segment"}}`). The summary is the first line of
        the view's docstring unless given; the rest of the docstring is the description. `context()` gives the body's
    and query's validators what only the database knows (`audience.lookups.topic_context`: topics are checked once,
    here).
    `read_body=False`: the model describes the body, the view reads it itself (a webhook checks its proof first)."""

    def decorate(view):
        doc = inspect.cleandoc(view.__doc__ or "")
        first, _, rest = doc.partition("\n")
        described = Operation(
            summary=summary or first.strip() or view.__name__.replace("_", " "),
            description=rest.strip(),
            body=body,
            query=query,
            responses=responses,
            errors=tuple(errors),
            headers=headers or {},
            public=public,
        )

        @wraps(view)
        def checked(*args, **kwargs):
            if isinstance(body, type) and read_body:
                kwargs["body"] = parse(body, json_body(), context=context() if context else None)
            if query is not None:
                kwargs["query"] = parse(query, request.args.to_dict(), context=context() if context else None)
            return view(*args, **kwargs)

        checked.__api__ = described
        return checked

    return decorate


def json_body() -> Any:
    """The request's JSON object (bounded in size and depth), or a 415 / 400 saying what was wrong."""
    if not request.is_json:
        raise ApiError(415, "Send a JSON body with Content-Type: application/json")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object")
    return data


def described(view) -> Operation | None:
    return getattr(view, "__api__", None)


# --- the document ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    path: str
    method: str
    op: Operation
    parameters: list[dict]
    role: str | None  # the token role the route needs (None: no token)


def openapi_document(app: Flask | None = None, base_url: str | None = None) -> dict:
    """The OpenAPI 3.1 description of every route under /api/v1, from the routes and their `@operation`s."""
    app = app or current_app
    base_url = base_url if base_url is not None else app.extensions["mailer"].settings.base_url
    routes = _routes(app)
    refs, schema = models_json_schema(_models(routes), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method] = _operation_object(route, lambda m, mode: refs[(m, mode)])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trust Matters mailer API",
            "version": "1",
            "description": "Manage newsletter issues, segments, subscribers and progress updates, and read delivery "
            "progress. Authenticate with 'Authorization: Bearer <token>' (create one with "
            f"`mailer token create --name NAME`). JSON bodies may nest at most {MAX_DEPTH} deep and be at most "
            f"{MAX_BYTES // (1024 * 1024)} MB. This description is generated from the models that check each call.",
        },
        "servers": [{"url": f"{base_url}{API_PREFIX}"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schema.get("$defs", {}),
        },
        "paths": paths,
    }


def _routes(app: Flask) -> list[_Route]:
    """Every API route as OpenAPI paths and methods; LookupError for a route without its @operation."""
    routes = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(API_PREFIX + "/"):
            continue
        view = app.view_functions[rule.endpoint]
        op = described(view)
        if op is None:
            raise LookupError(f"{rule.endpoint} ({rule.rule}) has no @operation: every API route must be described")
        role = getattr(view, "__token_role__", None)
        for path, parameters in _paths(rule):
            routes += [
                _Route(path, m.lower(), op, parameters, role) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})
            ]
    return routes


def _models(routes: list[_Route]) -> list[tuple[type[BaseModel], str]]:
    """The models the document refers to, each with the mode it is read in (a body: as validated; an answer:
    as serialised)."""
    models: dict[tuple[type[BaseModel], str], None] = {(Error, "serialization"): None}
    for route in routes:
        if isinstance(route.op.body, type):
            models[(route.op.body, "validation")] = None
        for answer in route.op.responses.values():
            if (model := _model_of(answer)) is not None:
                models[(model, "serialization")] = None
    return list(models)


def api_description(base_url: str) -> dict:
    """The OpenAPI document without a running site: the API's routes on an app of their own (no database,
    no broker), for `mailer openapi` and the tests."""
    from ..request_limits import IdConverter
    from . import bp

    app = Flask(__name__)
    app.url_map.converters["int"] = IdConverter
    app.register_blueprint(bp, url_prefix=API_PREFIX)
    return openapi_document(app, base_url)


_ARGUMENT = re.compile(r"<(?:(?P<converter>[a-zA-Z_]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")


def _paths(rule) -> list[tuple[str, list[dict]]]:
    """The OpenAPI paths for a Flask rule and their path parameters; an `any(a, b)` part gives one path each."""
    paths = [(rule.rule.removeprefix(API_PREFIX), [])]
    for match in _ARGUMENT.finditer(rule.rule):
        name, converter = match["name"], rule._converters[match["name"]]
        placeholder = match.group(0)
        if isinstance(converter, AnyConverter):
            paths = [(p.replace(placeholder, item), params) for p, params in paths for item in sorted(converter.items)]
            continue
        if isinstance(converter, IntegerConverter):
            # At most ten digits (a longer number matches no route); no row has an id above MAX_ID.
            schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
        else:
            schema = {"type": "string", "minLength": 1}
        parameter = {"name": name, "in": "path", "required": True, "schema": schema}
        paths = [(p.replace(placeholder, "{" + name + "}"), [*params, parameter]) for p, params in paths]
    return paths


def _model_of(answer) -> type[BaseModel] | None:
    if isinstance(answer, type) and issubclass(answer, BaseModel):
        return answer
    if typing.get_origin(answer) is list:
        (item,) = typing.get_args(answer)
        return item if isinstance(item, type) and issubclass(item, BaseModel) else None
    return None


def _content(answer, ref, mode: str) -> dict:
    if isinstance(answer, Body):
        return {"content": {answer.media_type: {"schema": answer.schema}}}
    if typing.get_origin(answer) is list:
        return {"content": {JSON: {"schema": {"type": "array", "items": ref(_model_of(answer), mode)}}}}
    return {"content": {JSON: {"schema": ref(answer, mode)}}}


def _operation_object(route: _Route, ref) -> dict:
    op = route.op
    out: dict[str, Any] = {"summary": op.summary}
    if route.role is not None:
        out["x-role"] = route.role
    if op.description:
        out["description"] = op.description
    if op.public:
        out["security"] = []
    parameters = route.parameters + _query_parameters(op.query)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, **_content(op.body, ref, "validation")}
    out["responses"] = _answers(op, ref) | _refusals(op, route.role, ref)
    return out


def _query_parameters(query: type[Query] | None) -> list[dict]:
    if query is None:
        return []
    schema = query.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _answers(op: Operation, ref) -> dict[str, dict]:
    responses: dict[str, dict] = {}
    for status, answer in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": _describe(answer, status)}
        if answer is not None:
            entry |= _content(answer, ref, "serialization")
        if status in op.headers:
            entry["headers"] = {
                name: {"description": text, "schema": {"type": "string"}} for name, text in op.headers[status].items()
            }
        responses[str(status)] = entry
    return responses


def _refusals(op: Operation, role: str | None, ref) -> dict[str, dict]:
    refusals = set(op.errors)
    if not op.public:
        refusals |= {401, 429}
    if role not in (None, "editor"):  # the weakest role's tokens are refused
        refusals.add(403)
    responses = {}
    for status in sorted(refusals):
        entry = {"description": ERRORS[status], **_content(Error, ref, "serialization")}
        if status == 429:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        responses[str(status)] = entry
    return responses


def _describe(answer, status: int) -> str:
    if isinstance(answer, Body):
        return answer.description
    model = _model_of(answer)
    if model is not None:
        text = inspect.cleandoc(model.__doc__ or "").partition("\n")[0]
        if text:
            return ("A list of: " + text) if typing.get_origin(answer) is list else text
    return {200: "OK", 201: "Created", 202: "Accepted", 204: "Done: no content"}.get(status, "OK")
