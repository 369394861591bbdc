"""`mailer doctor`: is this machine ready to run the mailer? One finding per check, ok, warn or FAIL:

- configuration: the settings read as every process reads them (their own checks, ConfigError);
- database: it answers, its schema is at the newest migration, EMAIL_HASH_KEY is the key it was keyed with;
- redis: PING;
- smtp: connect, EHLO, STARTTLS when SMTP_URL asks for it, log in when it names a user (TRANSPORT=smtp);
- dns, when DKIM_DOMAIN or BOUNCE_DOMAIN is set: the DKIM key published is ours, SPF and DMARC for the From
  domain, MX for the bounce domain (dnspython). A lookup that fails or times out is a warning, never a crash;
- beat and queues, as /healthz sees them (warnings: the processes may simply not be started yet).

Nothing is written anywhere: it reads and asks.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from sqlalchemy import select

from ..config import ConfigError, Settings, load_settings

OK, WARN, FAIL = "ok", "warn", "FAIL"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Finding:
    state: str  # ok, warn, FAIL
    check: str
    detail: str

    def line(self) -> str:
        return f"{self.state:<4} {self.check}: {self.detail}"


def diagnose(
    env: dict[str, str] | None = None, nameservers: list[tuple[str, int]] | None = None, dns_lifetime: float = 5.0
) -> Iterator[Finding]:
    """Each check's finding as it is made. `env`: the environment to read (default: the process's and .env);
    `nameservers`: (address, port) to ask instead of the system's resolvers, each lookup within `dns_lifetime`."""
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        yield Finding(FAIL, "configuration", str(exc))
        return
    yield from _configuration(settings)
    yield from _database(settings)
    redis_ok = yield from _redis(settings)
    yield from _smtp(settings)
    yield from _dns(settings, nameservers, dns_lifetime)
    if redis_ok:
        yield from _machinery(settings)


def _configuration(settings: Settings) -> Iterator[Finding]:
    d = settings.deliverability
    yield Finding(
        OK,
        "configuration",
        f"MAILER_ENV={'production' if settings.production else 'development'}, TRANSPORT={d.transport}, "
        f"BASE_URL={settings.base_url}, LOG_FORMAT={settings.operations.log_format}",
    )
    if settings.production:
        for embedded, what in ((settings.embedded_redis, "REDIS_URL"), (settings.embedded_smtp, "SMTP_URL")):
            if embedded and (what == "REDIS_URL" or d.transport == "smtp"):
                yield Finding(WARN, "configuration", f"{what} is not set: the embedded development one is used")
        if not settings.base_url.startswith("https://"):
            yield Finding(WARN, "configuration", "BASE_URL is not https: links in mail should be")


def _database(settings: Settings) -> Iterator[Finding]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from ..db import Database
    from ..models import EMAIL_HASH, KeyFingerprint, key_fingerprint
    from ..schema import alembic_config

    db = Database(settings.database_url)
    name = settings.database_url.split("://")[0]
    try:
        with db.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
            if current != head:
                yield Finding(
                    FAIL,
                    "database",
                    f"{name}: schema at {current or 'nothing'}, the newest is {head}: run `mailer init`",
                )
                return
            with db.sessions(bind=conn) as session:
                recorded = session.scalar(select(KeyFingerprint.fingerprint).where(KeyFingerprint.name == EMAIL_HASH))
    except Exception as exc:  # any driver's error: report what kind, never the URL (it may hold a password)
        yield Finding(FAIL, "database", f"{name}: does not answer ({exc.__class__.__name__})")
        return
    finally:
        db.dispose()
    if recorded is not None and recorded != key_fingerprint(settings.email_hash_key):
        yield Finding(FAIL, "database", "EMAIL_HASH_KEY is not the key this database's address hashes were made with")
        return
    yield Finding(OK, "database", f"{name} answers, schema at the newest migration ({head})")


def _redis(settings: Settings):
    try:
        redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        yield Finding(FAIL, "redis", f"does not answer PING ({exc.__class__.__name__}: {exc})")
        return False
    yield Finding(OK, "redis", "answers PING")
    return True


def _smtp(settings: Settings) -> Iterator[Finding]:
    from ..transports.smtp import SmtpTransport

    transport = settings.deliverability.transport
    if transport != "smtp":
        yield Finding(OK, "smtp", f"not used: TRANSPORT={transport}")
        return
    relay = SmtpTransport(settings.smtp_url, timeout=TIMEOUT)
    where = f"{relay.host}:{relay.port}"
    steps = ["TLS"] if relay.ssl else []
    try:
        conn = (
            smtplib.SMTP_SSL(relay.host, relay.port, timeout=TIMEOUT, context=relay._tls_context())
            if relay.ssl
            else smtplib.SMTP(relay.host, relay.port, timeout=TIMEOUT)
        )
    except (OSError, smtplib.SMTPException) as exc:
        yield Finding(FAIL, "smtp", f"cannot connect to {where}: {exc}")
        return
    try:
        code, _ = conn.ehlo()
        if code != 250:
            yield Finding(FAIL, "smtp", f"{where} answered EHLO with {code}")
            return
        steps.append("EHLO")
        if relay.starttls:
            if not conn.has_extn("starttls"):
                yield Finding(FAIL, "smtp", f"{where} does not offer STARTTLS, which SMTP_URL asks for")
                return
            conn.starttls(context=relay._tls_context())
            conn.ehlo()
            steps.append("STARTTLS")
        if relay.username:
            conn.login(relay.username, relay.password or "")
            steps.append(f"logged in as {relay.username}")
    except smtplib.SMTPAuthenticationError as exc:
        yield Finding(FAIL, "smtp", f"{where} refused the login of {relay.username}: {exc.smtp_code}")
        return
    except (OSError, ssl.SSLError, smtplib.SMTPException) as exc:
        yield Finding(FAIL, "smtp", f"{where}: {' '.join(steps) or 'connect'} then {exc.__class__.__name__}: {exc}")
        return
    finally:
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()
    yield Finding(OK, "smtp", f"{where}: {', '.join(steps)}")


def _dns(settings: Settings, nameservers: list[tuple[str, int]] | None, lifetime: float) -> Iterator[Finding]:
    d = settings.deliverability
    if not (d.dkim_domain or d.bounce_domain):
        return
    from .dns_records import Lookup

    lookup = Lookup(nameservers, lifetime)
    if d.dkim_domain:
        yield from lookup.dkim(d.dkim_domain, d.dkim_selector, d.dkim_private_key)
    yield from lookup.spf_and_dmarc(settings.mail_domain)
    if d.bounce_domain:
        yield from lookup.mx(d.bounce_domain)


def _machinery(settings: Settings) -> Iterator[Finding]:
    from . import beacons
    from .figures import machinery
    from .health import beat_state, queue_state

    found = machinery(beacons.client(settings.redis_url))
    beat = beat_state(found, settings.operations.beat_late_seconds)
    if beat == "ok":
        yield Finding(OK, "beat", f"sent a task {found.beat_seconds:.0f} s ago")
    else:
        yield Finding(WARN, "beat", f"{beat}: is `celery -A worker beat` running (exactly one)?")
    for queue in found.queues:
        if queue_state(queue, settings.operations.queue_stuck_seconds) != "ok":
            yield Finding(WARN, "queues", f"{queue.name}: {queue.waiting} task(s) waiting that no worker takes")
