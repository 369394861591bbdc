"""Error answers: a page for people, JSON `{"error": ...}` for the API, whatever raised them."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .context import runtime_of_app
from .request_ids import route_of_request

log = logging.getLogger(__name__)


def _origin_of(url: str | None) -> str | None:
    """A Referer's scheme and host: its path can hold a signed link's token."""
    if not url:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "(not a URL)"


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _refusal(status: int, error: str, title: str, message: str):
    """The API's `{"error": ...}` or the error page, whichever the request is for."""
    if wants_json():
        return jsonify(error=error), status
    return render_template("error.html", title=title, message=message), status


def install(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc):
        description = exc.description or ""
        if "referrer" in description or "origin" in description:
            # Behind a proxy that passes Host without the port (nginx's $host), or no X-Forwarded-Proto, every
            # form fails here while the page looks fine: say which host the request claimed, for whoever reads
            # the log (the person gets the usual page: the cause is not theirs to fix).
            log.warning(
                "form refused: %s (the request is for %s, BASE_URL is %s; Origin %r, Referer from %r). Behind a proxy, "
                "pass the Host header with its port (nginx: proxy_set_header Host $http_host) and X-Forwarded-Proto",
                description,
                request.host_url.rstrip("/"),
                runtime_of_app().settings.base_url,
                request.headers.get("Origin"),
                _origin_of(request.headers.get("Referer")),
            )
        return _refusal(
            400,
            exc.description,
            "Your form has expired",
            "We could not accept that form because it was missing its security token or the token had expired. "
            "Go back, reload the page and try again.",
        )

    @app.errorhandler(429)
    def _too_many(exc):
        if getattr(exc, "response", None) is not None:
            return exc.response  # the limit made its own answer (on_breach), e.g. plain text for one-click
        return _refusal(
            429,
            "Too many requests: wait a minute and try again",
            "Too many attempts",
            "We have had too many requests from your connection. Wait a few minutes and try again.",
        )

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        # Keep what the exception says in its headers (Allow on a 405, WWW-Authenticate, Retry-After).
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        if wants_json():
            return jsonify(error=exc.description or exc.name), exc.code, headers
        return render_template("error.html", title=exc.name, message=exc.description), exc.code, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, route_of_request())
        return _refusal(
            500,
            "Something went wrong on our side. Try again later.",
            "Sorry, there is a problem with the service",
            "Try again later. Nothing you sent us has been half-saved.",
        )
