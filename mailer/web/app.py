"""The Flask application factory: settings, extensions, blueprints, filters, error pages."""

from __future__ import annotations

from flask import Flask
from jinja2 import ChainableUndefined, ChoiceLoader, FileSystemLoader, PackageLoader

from ..accounts import SESSION_MAX_AGE
from ..config import Settings, load_settings, shipped
from ..runtime import Runtime, set_runtime
from ..tasks import configure_celery
from . import errors, filters, request_ids, security, sso
from .auth import login_manager
from .context import close_db_session
from .limits import limiter
from .request_limits import BoundedJSONProvider, IdConverter, refuse_nul_in_address
from .security import csrf


def create_served_app() -> Flask:
    """The app as gunicorn and `flask run` serve it (web.py): the process's logging and error reports are set up
    first, from the same settings. (Tests build apps with create_app and keep their own logging.)"""
    from ..ops.logs import configure_logging
    from ..ops.sentry import init_sentry

    settings = load_settings()
    configure_logging(settings, "web")
    init_sentry(settings, "web")
    return create_app(settings)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    rt = Runtime.build(settings)
    set_runtime(rt)
    configure_celery(settings)

    # Named for the package (as before the factory had a module of its own): the app's logger is "mailer.web".
    app = Flask("mailer.web", static_folder="static", static_url_path="/static")
    # No input reaches a view unbounded (request_limits.py): JSON depth and size, NUL characters, huge ids.
    app.json = BoundedJSONProvider(app)
    app.url_map.converters["int"] = IdConverter
    # First of the before_request hooks, so that even a request refused by the next ones has its id and log line.
    request_ids.install(app, trust_header=settings.trusted_proxies > 0)
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
                FileSystemLoader(shipped("templates") / "web"),
                PackageLoader("nhsuk_frontend_jinja"),
            ]
        ),
        "autoescape": True,
    }

    csrf.init_app(app)
    security.retry_after_only_on_refusals(app)
    limiter.init_app(app)
    login_manager.init_app(app)

    from .admin import bp as admin_bp
    from .api import bp as api_bp
    from .public import bp as public_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    sso.install(app, settings)  # signing in with NHS accounts (OpenID Connect), when OIDC_CLIENT_ID is set
    csrf.exempt(api_bp)

    filters.install(app)

    @app.context_processor
    def _globals():
        return {"settings": settings, "service_name": "Trust Matters"}

    security.install(app, https=settings.base_url.startswith("https://"))
    app.teardown_appcontext(close_db_session)
    errors.install(app)
    return app
