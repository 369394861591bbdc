"""JSON API under /api/v1, authenticated by bearer tokens (`mailer token create`).

What every call shares is here: the blueprint, the token check, the rate limits and how refusals are answered.
The calls themselves are by room: issues.py (writing and sending issues), content.py (progress updates and
digests), audience.py (segments and subscribers), lists.py (the topics and areas the team manages); each
parses with `@operation` (spec.py), calls one command of its room and answers with an output model."""

from __future__ import annotations

import dataclasses
import hashlib
from functools import wraps

from flask import Blueprint, g, jsonify, request
from flask_limiter.util import get_remote_address

from ...accounts import TokenRefused, has_role, token_access
from ...errors import Conflict, InvalidInput, NotFound
from ..context import runtime_of_app
from ..limits import API_ADDRESS_LIMIT, API_TOKEN_LIMIT, limiter
from .spec import ApiError, Output, openapi_document, operation

bp = Blueprint("api", __name__)


def _token_key() -> str:
    """Rate-limit key for the bearer token a request carries (a digest, never the token); the address without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return "address:" + get_remote_address()


def _a_hook() -> bool:
    """The providers' webhooks have a limit of their own (hooks.py)."""
    return request.endpoint in ("api.hooks_ses", "api.hooks_notify")


# Every API call counts against both; a route with its own limit (test sends) counts against all three.
limiter.shared_limit(API_TOKEN_LIMIT, "api-token", key_func=_token_key, exempt_when=_a_hook)(bp)
limiter.shared_limit(API_ADDRESS_LIMIT, "api-address", exempt_when=_a_hook)(bp)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    body = {"error": exc.message}
    if exc.fields:
        body["fields"] = exc.fields
    return jsonify(body), exc.status


@bp.errorhandler(InvalidInput)
def _invalid(exc: InvalidInput):
    return jsonify(error=str(exc), fields=exc.errors), 400


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound):
    return jsonify(error=str(exc)), 404


@bp.errorhandler(Conflict)
def _conflict(exc: Conflict):
    return jsonify(error=str(exc)), 409


def token_required(view=None, *, role: str = "editor"):
    """Bearer token with at least `role` (editor < publisher < admin); 401 without a usable one (see
    accounts.token_access), 403 if too weak. g.api_token: the token's id, name, role, owner_id, owner_email."""
    if view is None:
        return lambda v: token_required(v, role=role)

    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorised("Send an API token as 'Authorization: Bearer <token>'")
        owner_required = runtime_of_app().settings.approval_by_another
        try:
            with runtime_of_app().db.transaction() as session:
                access = token_access(session, token.strip(), owner_required=owner_required)
        except TokenRefused as exc:
            return _unauthorised(str(exc))
        g.api_token = dataclasses.asdict(access)
        if not has_role(g.api_token["role"], role):
            raise ApiError(403, f"This token's role ({g.api_token['role']}) cannot do that: it needs {role}")
        return view(*args, **kwargs)

    wrapper.__token_role__ = role  # for the description: which role the operation needs
    return wrapper


def created(body: dict, location: str):
    """A 201 answer: `body`, and where the new thing is."""
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = location
    return response


def _unauthorised(message: str):
    response = jsonify(error=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


class OpenAPIDocument(Output):
    """The OpenAPI 3.1 description of this API, generated from the models that check each call"""

    model_config = {"extra": "allow"}
    openapi: str


@bp.get("/openapi.json")
@operation(responses={200: OpenAPIDocument}, public=True)
def openapi():
    """This description"""
    return jsonify(openapi_document())


from . import audience, content, hooks, issues, lists, suppressions  # noqa: E402,F401,I001  (register their routes on bp)
