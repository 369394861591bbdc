"""Error answers: a page for people, JSON `{"error": ...}` for the API, whatever raised them."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .context import runtime_of_app

log = logging.getLogger(__name__)


def wants_json() -> bool:
    return request.path.startswith("/api/")


def install(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc):
        description = exc.description or ""
        if "referrer" in description or "origin" in description:
            # Behind a proxy that passes Host without the port (nginx's $host), or no X-Forwarded-Proto, every
            # form fails here while the page looks fine: say which host the request claimed, for whoever reads
            # the log (the person gets the usual page: the cause is not theirs to fix).
            log.warning(
                "form refused: %s (the request is for %s, BASE_URL is %s; Origin %r, Referer %r). Behind a proxy, "
                "pass the Host header with its port (nginx: proxy_set_header Host $http_host) and X-Forwarded-Proto",
                description,
                request.host_url.rstrip("/"),
                runtime_of_app().settings.base_url,
                request.headers.get("Origin"),
                request.headers.get("Referer"),
            )
        if wants_json():
            return jsonify(error=exc.description), 400
        return render_template(
            "error.html",
            title="Your form has expired",
            message="We could not accept that form because it was missing its security token or the token "
            "had expired. Go back, reload the page and try again.",
        ), 400

    @app.errorhandler(429)
    def _too_many(exc):
        if getattr(exc, "response", None) is not None:
            return exc.response  # the limit made its own answer (on_breach), e.g. plain text for one-click
        if wants_json():
            return jsonify(error="Too many requests: wait a minute and try again"), 429
        return render_template(
            "error.html",
            title="Too many attempts",
            message="We have had too many requests from your connection. Wait a few minutes and try again.",
        ), 429

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        # Keep what the exception says in its headers (Allow on a 405, WWW-Authenticate, Retry-After).
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        if wants_json():
            return jsonify(error=exc.description or exc.name), exc.code, headers
        return render_template("error.html", title=exc.name, message=exc.description), exc.code, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify(error="Something went wrong on our side. Try again later."), 500
        return render_template(
            "error.html",
            title="Sorry, there is a problem with the service",
            message="Try again later. Nothing you sent us has been half-saved.",
        ), 500
