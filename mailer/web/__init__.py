"""The Flask application factory. Blueprints parse input, call one service, render the result."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from flask import Flask, g, jsonify, render_template, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2 import ChainableUndefined, ChoiceLoader, FileSystemLoader, PackageLoader
from werkzeug.exceptions import HTTPException

from ..accounts import SESSION_MAX_AGE
from ..config import ROOT, Settings, load_settings
from ..runtime import Runtime, set_runtime
from ..tasks import configure_celery
from . import security
from .request_limits import BoundedJSONProvider, IdConverter, refuse_nul_in_address

log = logging.getLogger(__name__)

csrf = CSRFProtect()
login_manager = LoginManager()
# Per client address, counted in Redis so every web process shares the count. The per-address cap on
# confirmation mails (audience.subscriptions) protects an inbox; this protects the service.
limiter = Limiter(get_remote_address, strategy="fixed-window")
SUBSCRIBE_LIMIT = "20 per minute; 200 per hour"
LOGIN_LIMIT = "10 per minute; 50 per hour"
MANAGE_LINK_LIMIT = "5 per minute; 30 per hour"
# Test sends go to any address the team types: enough for checking an issue, too few to mail the world.
TEST_SEND_LIMIT = "10 per minute; 60 per hour"
# One-click unsubscribe (RFC 8058) is posted by mail providers from their own servers, for all their users at
# once: a few addresses carry every Gmail or Yahoo reader's unsubscribes. So the tight limit is per signed link
# (one person's: no provider retries one link more than a few times) and the per-address one only stops a flood.
ONE_CLICK_LINK_LIMIT = "10 per minute; 30 per hour"
ONE_CLICK_ADDRESS_LIMIT = "300 per minute"
# The API, per token (a runaway script) and per address (many tokens, or guessed ones, from one place). A
# website posting its sign-ups, or a sync script, stays far below.
API_TOKEN_LIMIT = "600 per minute"
API_ADDRESS_LIMIT = "1200 per minute"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    rt = Runtime.build(settings)
    set_runtime(rt)
    configure_celery(settings)

    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # No input reaches a view unbounded (request_limits.py): JSON depth and size, NUL characters, huge ids.
    app.json = BoundedJSONProvider(app)
    app.url_map.converters["int"] = IdConverter
    app.before_request(refuse_nul_in_address)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Client addresses (rate limits, consent records) come from X-Forwarded-For only when told how
        # many proxies set it; otherwise anyone could claim any address.
        app.wsgi_app = ProxyFix(
            app.wsgi_app,
            x_for=settings.trusted_proxies,
            x_proto=settings.trusted_proxies,
            x_host=settings.trusted_proxies,
        )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_MAX_AGE,
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session instead, so a form left open does not fail
        MAX_CONTENT_LENGTH=10 * 1024 * 1024,
        RATELIMIT_STORAGE_URI=settings.redis_url,
        RATELIMIT_KEY_PREFIX="mailer-limits",
        # If Redis is down the site still answers (the health check reports it); limits resume with Redis.
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.extensions["mailer"] = rt
    app.jinja_options = {
        "undefined": ChainableUndefined,
        "loader": ChoiceLoader(
            [
                FileSystemLoader(ROOT / "templates" / "web"),
                PackageLoader("nhsuk_frontend_jinja"),
            ]
        ),
        "autoescape": True,
    }

    csrf.init_app(app)
    security.retry_after_only_on_refusals(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.login_message = "Sign in to continue"

    from .admin import bp as admin_bp
    from .api import bp as api_bp
    from .public import bp as public_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    csrf.exempt(api_bp)

    from zoneinfo import ZoneInfo

    london = ZoneInfo("Europe/London")
    app.jinja_env.filters["uk"] = lambda moment: moment.astimezone(london) if moment else moment
    app.jinja_env.filters["readable_details"] = readable_details

    @app.context_processor
    def _globals():
        return {"settings": settings, "service_name": "Trust Matters"}

    security.install(app, https=settings.base_url.startswith("https://"))

    @app.teardown_appcontext
    def _close_session(_exc):
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    _register_error_pages(app)
    return app


@login_manager.user_loader
def _load_user(user_id: str):
    from .sessions import load_user  # the sign-in must be live on the server, not just in the cookie

    return load_user(user_id)


def runtime_of_app() -> Runtime:
    from flask import current_app

    return current_app.extensions["mailer"]


def db_session():
    """A read session for the request (login lookups, page data); writes go through db.transaction()."""
    if "db_session" not in g:
        g.db_session = runtime_of_app().db.sessions()
    return g.db_session


def require_role(needed: str):
    """Admin view decorator: signed in, with at least `needed` (editor < publisher < admin)."""
    from functools import wraps

    from flask import abort
    from flask_login import current_user, login_required

    from ..accounts import has_role

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            if not has_role(current_user.role, needed):
                abort(403, f"Only a {needed} or above can do that. Ask a publisher in your team.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _register_error_pages(app: Flask) -> None:
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


def csv_download(pieces: Iterator[str], filename: str):
    """CSV text (from `mailer.spreadsheet`, so BOM-led and formula-safe) streamed as an attachment."""
    from flask import Response, stream_with_context

    return Response(
        stream_with_context(pieces),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


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
