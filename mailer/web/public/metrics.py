"""/metrics for Prometheus, behind the bearer token METRICS_TOKEN (mailer/ops/metrics.py says what it holds).

Without METRICS_TOKEN the route is not there (404); a missing or wrong token is a 401. The token is compared in
constant time, and each client address may ask a few times a second at most.
"""

from __future__ import annotations

import hmac

from flask import Response, abort, request
from prometheus_client import CONTENT_TYPE_LATEST

from ...ops.metrics import exposition
from ..context import runtime_of_app
from ..limits import limiter
from . import bp

# Prometheus scrapes every 15 s or so; several servers (or a person with curl) stay far below this.
METRICS_LIMIT = "120 per minute"


def _token_matches(expected: str) -> bool:
    scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@bp.get("/metrics")
@limiter.limit(METRICS_LIMIT)
def metrics():
    rt = runtime_of_app()
    token = rt.settings.operations.metrics_token
    if not token:
        abort(404)
    if not _token_matches(token):
        return Response(
            "A bearer token is needed: Authorization: Bearer <METRICS_TOKEN>\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain; charset=utf-8"},
        )
    return Response(
        exposition(rt.db, rt.settings.redis_url),
        200,
        {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )
