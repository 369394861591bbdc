"""A request id for every request: on each of its log lines, in its answer's X-Request-ID, and carried into every
task it queues (mailer/ops/logs.py). One line a request says what was asked and answered.

An X-Request-ID from the client is taken only when a trusted proxy (TRUSTED_PROXIES) is in front, which sets or
passes it, and only if it is well formed; otherwise anyone could write what they like into our logs.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from ..ops.logs import REQUEST_ID, new_request_id, well_formed

log = logging.getLogger("mailer.web.requests")
HEADER = "X-Request-ID"
# Asked every few seconds by load balancers and Prometheus: their lines only at DEBUG.
QUIET = ("/healthz", "/metrics", "/static/")


def route_of_request() -> str:
    """The route that answered (`/u/<token>`), never the path itself: paths carry signed tokens."""
    if request.url_rule is not None:
        return request.url_rule.rule
    return "(no route)"


def install(app: Flask, trust_header: bool) -> None:
    @app.before_request
    def _start():
        incoming = request.headers.get(HEADER) if trust_header else None
        g.request_id = incoming if well_formed(incoming) else new_request_id()
        g.request_token = REQUEST_ID.set(g.request_id)
        g.request_started = time.perf_counter()

    @app.after_request
    def _answer(response):
        request_id = g.get("request_id")
        if request_id:
            response.headers[HEADER] = request_id
            started = g.get("request_started")
            elapsed = round((time.perf_counter() - started) * 1000, 1) if started else None
            quiet = request.path.startswith(QUIET) and response.status_code < 500
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %s in %s ms",
                request.method,
                route_of_request(),
                response.status_code,
                elapsed,
                extra={
                    "method": request.method,
                    "route": route_of_request(),
                    "status": response.status_code,
                    "duration_ms": elapsed,
                },
            )
        return response

    @app.teardown_request
    def _end(_exc=None):
        token = g.pop("request_token", None)
        if token is not None:
            try:
                REQUEST_ID.reset(token)
            except ValueError:  # set in another context (a streamed response's generator): leave it to that one
                REQUEST_ID.set(None)
