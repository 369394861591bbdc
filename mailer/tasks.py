"""Celery tasks: adapters that read their arguments and call the room that does the work. A task that acts for
the team or the public (a queued request, beat's schedule, a digest run) calls the room's command, as the admin,
the API and the CLI do, and the command registers what follows with the unit of work (`after_commit`): queued
once it commits, never if it rolls back. The delivery engine's own steps (plan, batch, sweep) chain themselves.

Queues: `transactional` (confirmations, test sends) has its own worker slots and never waits behind
`bulk` (issue batches, planning, the sweeper). Delivery is at-least-once: acks late, a task whose
worker dies is redelivered, and the ledger makes a repeated task harmless.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timedelta

from celery import Celery, shared_task
from celery.schedules import crontab
from celery.signals import worker_process_init
from sqlalchemy.exc import OperationalError

from . import stats
from .accounts.passwords import reset_mail
from .audience import commands as audience_commands
from .audience import importer, retention
from .audience import requests as public_requests
from .audience.confirmation import confirmation_mail, latest_request_id, manage_link_mail, mark_confirmation_sent
from .compose import digests, notices
from .compose.mail import recipient_fields, send_tests, sent_message
from .compose.recipients import plan_send, still_wanted
from .config import Settings
from .delivery import dispatch
from .delivery.rate import SendRate
from .delivery.sender import send_batch as send_batch_service
from .errors import NotFound
from .feedback import commands as feedback
from .feedback import verp
from .inputs import parse
from .models import Issue
from .ops import beacons, logs  # noqa: F401  (their Celery signal receivers: request ids, logging, beat and queue marks)
from .runtime import runtime, set_runtime
from .transports import PermanentFailure, TemporaryFailure, rate_cap, transport_for

log = logging.getLogger(__name__)

TRANSACTIONAL = "transactional"
BULK = "bulk"
# Imports have a queue of their own, read by the bulk workers too: Celery's Redis transport takes from its
# queues in turn, so an import starts after at most one batch of a large send instead of after all of them.
IMPORTS = "imports"
SWEEP_SECONDS = 30.0
RETENTION_SECONDS = 3600.0


def make_celery(settings: Settings) -> Celery:
    """A Celery app for the settings' Redis, with at-least-once delivery settings and beat's schedule. The tasks
    below are shared tasks: every app made here has them, under the same names and queues."""
    app = Celery("mailer", set_as_current=False)
    app.conf.update(
        broker_url=settings.redis_url,
        broker_connection_retry_on_startup=True,
        # A task not acknowledged within this many seconds is handed to another worker: well above the
        # longest batch (500 messages at even 50/s is 10 s).
        broker_transport_options={"visibility_timeout": 3600},
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=BULK,
        task_routes={
            "mailer.act_on_request": {"queue": TRANSACTIONAL},
            "mailer.send_confirmation": {"queue": TRANSACTIONAL},
            "mailer.send_manage_link": {"queue": TRANSACTIONAL},
            "mailer.send_test": {"queue": TRANSACTIONAL},
            "mailer.tell_publishers_paused": {"queue": TRANSACTIONAL},
            "mailer.send_password_reset": {"queue": TRANSACTIONAL},
            "mailer.run_import": {"queue": IMPORTS},
        },
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        timezone="Europe/London",
        beat_schedule={
            "sweep": {"task": "mailer.sweep", "schedule": SWEEP_SECONDS},
            "retention": {"task": "mailer.retention", "schedule": RETENTION_SECONDS},
            "weekly-digest": {
                "task": "mailer.run_digest",
                "schedule": crontab(
                    minute=settings.digest_minute, hour=settings.digest_hour, day_of_week=settings.digest_weekday
                ),
                "args": ("weekly",),
            },
            "monthly-digest": {
                "task": "mailer.run_digest",
                "schedule": crontab(
                    minute=settings.digest_minute, hour=settings.digest_hour, day_of_month=settings.digest_monthday
                ),
                "args": ("monthly",),
            },
        },
        worker_hijack_root_logger=False,
    )
    if settings.deliverability.bounce_imap_url:  # the bounce mailbox (mailer/feedback/mailbox.py)
        app.conf.beat_schedule["bounce-mailbox"] = {
            "task": "mailer.poll_bounces",
            "schedule": float(settings.deliverability.bounce_poll_seconds),
        }
    return app


_apps: dict[tuple, Celery] = {}


def configure_celery(settings: Settings) -> Celery:
    """The process's Celery app for these settings, made the first time they are seen and kept; tasks are sent
    through the one configured last (worker.py's in a worker, create_app's in a web process).

    One app per broker, rather than one app pointed at another broker: a pool's connections belong to one
    address, and kombu keeps its producer pools per address for the whole process. A process that meets
    another broker (a test's private Redis) gets that broker's own app and pools, and nothing is closed
    under an app that may be used again."""
    key = (
        settings.redis_url,
        settings.digest_minute,
        settings.digest_hour,
        settings.digest_weekday,
        settings.digest_monthday,
        settings.deliverability.bounce_imap_url,
        settings.deliverability.bounce_poll_seconds,
    )
    app = _apps.get(key)
    if app is None:
        app = _apps[key] = make_celery(settings)
    app.set_default()  # for every thread (a threaded web server's)
    app.set_current()  # for this one: Celery keeps a current app per thread
    return app


@worker_process_init.connect
def _fresh_connections_after_fork(**_):
    # A forked child must not share the parent's database connections.
    rt = runtime()
    rt.db.engine.dispose(close=False)


def enqueue(task, *args, **options) -> bool:
    """Publish a task; if the broker is down, log and let the sweeper find the work later."""
    try:
        task.apply_async(args=args, **options)
        return True
    except Exception:  # kombu raises OperationalError and friends; the sweeper is the safety net
        # Ids only: some tasks carry addresses (a test send's).
        log.exception("could not enqueue %s%s; the sweeper will retry", task.name, _ids_of(args))
        return False


def _ids_of(args: tuple) -> str:
    """A task's arguments for a log line: numbers as they are, anything else only by its kind."""
    return "(" + ", ".join(str(a) if isinstance(a, int) else f"<{type(a).__name__}>" for a in args) + ")"


# --- the public's forms and confirmations ---------------------------------------------------------


@shared_task(
    name="mailer.act_on_request",
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def act_on_request(request_id: int) -> str:
    """A sign-up or "email me my link" the web request queued: look the address up, then mail if due."""
    return _act_on_request(request_id)


def _act_on_request(request_id: int) -> str:
    rt = runtime()
    allowance = public_requests.manage_link_allowance(rt.settings.redis_url)
    with rt.db.transaction() as session:  # its mail is queued once this commits
        followup = audience_commands.act_on_request(session, request_id, allowance)
    return "already done" if followup is None else "done"


@shared_task(name="mailer.send_confirmation", bind=True, max_retries=8)
def send_confirmation(self, request_id: int) -> str:
    rt = runtime()
    try:
        with rt.db.transaction() as session:
            mail = confirmation_mail(session, request_id, rt.settings, rt.links)
    except NotFound:
        return "gone"
    outcome = _send_one(self, mail, f"confirmation for request {request_id}")
    # Refused is final too: recorded as handled so the sweeper does not try again.
    with rt.db.transaction() as session:
        mark_confirmation_sent(session, mail.subscriber_id)
    return outcome


def _send_one(task, mail, what: str) -> str:
    """Send one transactional mail: 'sent', 'refused' (the address said no for good), or a Celery retry."""
    try:
        transport_for(runtime().settings).send(mail.envelope_from, mail.recipient, mail.data)
    except TemporaryFailure as exc:
        raise task.retry(exc=exc, countdown=min(2**task.request.retries * 5, 300)) from exc
    except PermanentFailure as exc:
        log.warning("%s refused: %s", what, exc)
        return "refused"
    return "sent"


@shared_task(name="mailer.send_manage_link", bind=True, max_retries=8)
def send_manage_link(self, subscriber_id: int) -> str:
    rt = runtime()
    try:
        with rt.db.sessions() as session:
            mail = manage_link_mail(session, subscriber_id, rt.settings, rt.links)
    except NotFound:
        return "gone"
    return _send_one(self, mail, f"manage link for subscriber {subscriber_id}")


@shared_task(name="mailer.send_test", bind=True, max_retries=5)
def send_test(self, issue_id: int, addresses: list[str]) -> dict:
    """A test of an issue to the team's own addresses, marked [TEST], with example links."""
    rt = runtime()
    outcomes, again = send_tests(rt.db, issue_id, addresses, rt.settings, transport_for(rt.settings))
    if again:  # only the addresses that did not get it yet
        raise self.retry(args=(issue_id, again), countdown=min(2**self.request.retries * 5, 300))
    return outcomes


@shared_task(name="mailer.tell_publishers_paused", bind=True, max_retries=8)
def tell_publishers_paused(self, issue_id: int, only: list[str] | None = None) -> dict:
    """A send paused itself (feedback.commands.check_send): every publisher and admin gets its figures and a
    link to decide. Those a server could not take it for now are tried again, and only they."""
    rt = runtime()
    with rt.db.transaction() as session:  # the audit row says who was told
        mails = notices.paused_notice(session, issue_id, rt.settings, only)
    transport = transport_for(rt.settings)
    outcomes, again = {}, []
    for mail in mails:
        try:
            transport.send(mail.envelope_from, mail.recipient, mail.data)
            outcomes[mail.recipient] = "sent"
        except TemporaryFailure:
            again.append(mail.recipient)
        except PermanentFailure as exc:
            log.warning("the auto-pause notice of issue %s to one of the team was refused: %s", issue_id, exc)
            outcomes[mail.recipient] = f"refused: {exc}"
    if again:
        raise self.retry(args=(issue_id, again), countdown=min(2**self.request.retries * 5, 300))
    return outcomes


@shared_task(name="mailer.send_password_reset", bind=True, max_retries=5)
def send_password_reset(self, address: str) -> str:
    """"Forgotten your password?": mail a reset link if an active account has this address (the web request
    queued this the same for every address, so neither its answer nor its timing says who has an account)."""
    rt = runtime()
    with rt.db.transaction() as session:  # the link works once this commits
        mail = reset_mail(session, address, rt.settings)
    if mail is None:
        return "nothing to send"
    # A retry makes a new link (this one then stops working): the mail that did not go named this one.
    return _send_one(self, mail, "a password reset link")


# --- issues --------------------------------------------------------------------------------------


# A database that is briefly unavailable or locked: try again shortly (the ledger makes repeats harmless).
RETRY_DB = {"autoretry_for": (OperationalError,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 8}


@shared_task(name="mailer.plan_issue", **RETRY_DB)
def plan_issue(issue_id: int) -> int:
    rt = runtime()
    ranges = plan_send(rt.db, issue_id, rt.settings.batch_size)
    for lo, hi in ranges:
        enqueue(send_batch, issue_id, lo, hi)
    return len(ranges)


_compiled: OrderedDict = OrderedDict()


def _compiled_issue(key: tuple, db, settings: Settings):
    """Each issue's frozen email, encoded once per worker process; keep the last few. Nothing is rendered
    here: the email was rendered when the send started (compose.mail.sent_message)."""
    # What an issue sends is frozen once it is sending, so (id, created_at) is the key. Not updated_at: every
    # batch's heartbeat moves that, and each batch would encode it again.
    message = _compiled.get(key)
    if message is None:
        message = _compiled[key] = sent_message(db, key[0], settings)
        while len(_compiled) > 8:
            _compiled.popitem(last=False)
    return message


_rates: dict = {}


def _send_rate(settings: Settings):
    """The shared bucket of SEND_RATE and the way out's own limit (SES's MaxSendRate, Notify's 50 a second),
    whichever is slower, one client per process; None when neither sets a rate."""
    rates = [r for r in (settings.send_rate, rate_cap(settings)) if r is not None]
    if not rates:
        return None
    key = (settings.redis_url, min(rates))
    if key not in _rates:
        _rates[key] = SendRate(settings.redis_url, min(rates)).acquire
    return _rates[key]


@shared_task(name="mailer.send_batch", **RETRY_DB)
def send_batch(issue_id: int, lo: int, hi: int) -> dict:
    rt = runtime()
    # A read session: rendering must not hold SQLite's write lock.
    with rt.db.sessions() as session:
        issue = session.get(Issue, issue_id)
        if issue is None or issue.status != "sending":
            return {"skipped": "issue not sending"}
        topic_id, kind, key = issue.topic_id, issue.kind, (issue.id, issue.created_at)
    message = _compiled_issue(key, rt.db, rt.settings)
    judge = _Judge(rt, issue_id)
    report = send_batch_service(
        rt.db,
        issue_id=issue_id,
        lo=lo,
        hi=hi,
        eligible=still_wanted(kind, topic_id),
        message=message,
        recipient_fields=recipient_fields(issue_id, kind, topic_id, rt.links, rt.settings),
        transport=transport_for(rt.settings),
        lease_seconds=rt.settings.lease_seconds,
        throttle=_send_rate(rt.settings),
        envelope_for=_envelope_for(rt.settings, message.envelope_from),
        after_chunk=judge,
        chunk=judge.chunk,
    )
    dispatch.after_batch(rt.db, issue_id)
    return {k: v for k, v in vars(report).items() if k not in ("hard_bounces", "refusals")}


class _Judge:
    """After each chunk of a batch: its hard bounces become events and suppressions, and the send is judged for
    auto-pause (feedback.policy). Judged on every chunk until the send's sample has gone, then only on chunks
    that bounced: one that did not can only lower the rates (later reports judge the send themselves)."""

    # Rows claimed at a time while the send is being judged, and after: every worker's chunk in flight when a send
    # pauses still goes, so small chunks until the sample has gone keep a bad list's overshoot small.
    JUDGING_CHUNK = 25
    CHUNK = 100

    def __init__(self, rt, issue_id: int):
        self.rt, self.issue_id, self.judged = rt, issue_id, False

    def chunk(self) -> int:
        return self.CHUNK if self.judged else self.JUDGING_CHUNK

    def __call__(self, refusals) -> str | None:
        if self.judged and not refusals:
            return None
        with self.rt.db.transaction() as session:  # the publishers are told once this commits, if it paused
            feedback.refused_while_sending(session, self.issue_id, refusals, self.rt.settings)
            check = feedback.check_send(session, self.issue_id, self.rt.settings)
        self.judged = check.judged
        return f"the send paused itself: {check.paused}" if check.paused else None


def _envelope_for(settings: Settings, default: str):
    """Each bulk message's Return-Path: VERP naming its delivery row when BOUNCE_DOMAIN is set (feedback.verp)."""
    return lambda claim: verp.envelope_for_delivery(claim.delivery_id, settings, default)


# --- recovery ------------------------------------------------------------------------------------


@shared_task(name="mailer.sweep")
def sweep() -> dict:
    """Recover lost work, one step after another. A step that fails is logged and the others still run: one
    bad row must not stop confirmations being resent or stalled sends and imports being carried on."""
    rt = runtime()
    report: dict = {}
    for step in (_start_scheduled, _resume_digest_runs, _recover_sends, _act_on_lost_requests, _hand_on_imports):
        try:
            report.update(step(rt))
        except Exception:
            log.exception("sweep: %s failed; the other steps ran, the next sweep tries it again", step.__name__)
            report[step.__name__.lstrip("_")] = "failed"
    return report


def _start_scheduled(rt) -> dict:
    # Scheduled issues whose time has come: started once however many beats fire (compare-and-set).
    from .compose import commands  # the compose room's commands queue these tasks: looked up once both exist

    with rt.db.transaction() as session:  # their planning is queued once this commits
        started = commands.start_scheduled(session, rt.settings)
    return {"started": started}


def _resume_digest_runs(rt) -> dict:
    # A digest run whose planning process died (a SIGKILL, a deploy) is carried on from where it stopped.
    with rt.db.sessions() as session:
        stuck = digests.stuck_runs(session, timedelta(seconds=rt.settings.stall_seconds * 2))
    for frequency, cutoff in stuck:
        enqueue(run_digest_task, frequency, cutoff.isoformat())
    return {"digest_runs_resumed": len(stuck)}


def _recover_sends(rt) -> dict:
    found = dispatch.sweep(rt.db, rt.settings.batch_size, timedelta(seconds=rt.settings.stall_seconds))
    for issue_id in found.plan:
        enqueue(plan_issue, issue_id)
    for issue_id, lo, hi in found.batches:
        enqueue(send_batch, issue_id, lo, hi)
    for subscriber_id in found.confirmations:
        with rt.db.transaction() as session:
            request_id = latest_request_id(session, subscriber_id)
        if request_id:
            enqueue(send_confirmation, request_id)
    return {
        "requeued_rows": found.requeued_rows,
        "plans": len(found.plan),
        "batches": len(found.batches),
        "confirmations": len(found.confirmations),
        "finished": found.finished,
    }


def _act_on_lost_requests(rt) -> dict:
    # Sign-ups and link requests whose task never came (the broker was down when they were posted). Each in a
    # transaction of its own: one that fails stays queued for the next sweep and holds up none of the others.
    with rt.db.sessions() as session:
        lost = public_requests.waiting(session)
    failed = 0
    for request_id in lost:
        try:
            _act_on_request(request_id)
        except Exception:
            failed += 1
            log.exception("public request %s could not be acted on; the next sweep tries again", request_id)
    return {"public_requests": len(lost), "public_requests_failed": failed}


def _hand_on_imports(rt) -> dict:
    # An import whose worker died (or whose task never reached one) goes to another worker, or fails.
    imports = importer.stalled_imports(rt.db, timedelta(seconds=rt.settings.lease_seconds))
    for import_id in imports:
        enqueue(run_import_task, import_id)
    return {"imports": len(imports)}


# --- imports -------------------------------------------------------------------------------------


@shared_task(name="mailer.run_import")
def run_import_task(import_id: int) -> str:
    """Import an uploaded CSV file, or carry on one a lost worker left (audience.importer.process_import)."""
    rt = runtime()
    return importer.process_import(rt.db, import_id, lease=timedelta(seconds=rt.settings.lease_seconds))


@shared_task(name="mailer.poll_bounces")
def poll_bounces() -> dict:
    """Beat's poll of the bounce mailbox (BOUNCE_IMAP_URL); a mailbox that does not answer waits for the next."""
    from .feedback import mailbox

    rt = runtime()
    try:
        polled = mailbox.poll(rt.db, rt.settings)
    except mailbox.MailboxError as exc:
        log.warning("bounce mailbox: %s", exc)
        return {"error": str(exc)}
    log.info("bounce mailbox: %s", polled)
    return vars(polled)


@shared_task(name="mailer.retention", **RETRY_DB)
def retention_job() -> dict:
    """Delete unconfirmed sign-ups and anonymise people who left long ago, a chunk per transaction; then count
    each topic's open subscriptions for the home page (`stats.count_topics`)."""
    rt = runtime()
    report = retention.RetentionReport()
    for _ in range(1000):  # bounded: at most a million people per run, the rest next hour
        with rt.db.transaction() as session:
            deleted = retention.delete_unconfirmed(session, rt.settings.unconfirmed_days)
            anonymised = retention.anonymise_ended(session, rt.settings.anonymise_after_days)
            cleared = retention.clear_old_reports(session, rt.settings.anonymise_after_days)
        report.deleted_unconfirmed += deleted
        report.anonymised += anonymised
        report.reports_cleared += cleared
        if max(deleted, anonymised, cleared) < retention.CHUNK:
            break
    # Each topic's open subscriptions, kept for the home page (stats.topic_growth counts from it).
    with rt.db.transaction() as session:
        stats.count_topics(session)
    if report.deleted_unconfirmed or report.anonymised or report.reports_cleared:
        log.info("retention: %s", report)
    return vars(report)


@shared_task(name="mailer.run_digest", **RETRY_DB)
def run_digest_task(frequency: str, at: str | None = None) -> dict:
    """Beat's weekly and monthly digest (or one asked for): plan the run, then send its emails."""
    from .compose import commands  # the compose room's commands queue these tasks: looked up once both exist
    from .compose.inputs import DigestRunInput

    rt = runtime()
    moment = datetime.fromisoformat(at) if at else None
    # No actor: a requested run was recorded (digest.request) when it was asked for; beat's is recorded as digest.run.
    data = parse(DigestRunInput, {"frequency": frequency})
    report, _unsent = commands.run_digest(rt.db, data, None, rt.settings, moment)  # the sweeper plans any unsent
    return report.as_dict()


def bootstrap(settings: Settings | None = None) -> Celery:
    """Used by worker.py: configure Celery (and the process runtime) from settings or the environment, and error
    reports (SENTRY_DSN). Logging is set up when Celery asks for it (ops.logs, the setup_logging signal)."""
    from .ops.sentry import init_sentry

    if settings is not None:
        from .runtime import Runtime

        set_runtime(Runtime.build(settings))
    init_sentry(runtime().settings, "worker")
    return configure_celery(runtime().settings)
