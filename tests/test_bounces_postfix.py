"""A real relay that bounces later: the project sends an issue through a Postfix of the tests' own, which
accepts every message and relays it downstream, where some mailboxes do not exist (550 5.1.1) and one is full
(452 4.2.2). Postfix then writes its own DSNs to each message's VERP Return-Path; they reach our receiver
(`mailer bounces receive`, its own process), which records them: the ledger, the events, the suppressions, the
issue's figures, and the next issue skipping the people suppressed.

Real Celery workers send, with SMTP_URL pointing at Postfix and BOUNCE_DOMAIN set, on a Redis database of
their own (the suite's workers have another SMTP_URL). Auto-pause is off here: it is judged per chunk and per
report, and a list a third dead would pause part-way, at a moment that depends on Postfix's speed
(tests/test_feedback_policy.py proves the pause)."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select

from conftest import free_port, wait_until
from mailer.audit import Actor
from mailer.compose import commands
from mailer.compose.issues import create_issue
from mailer.config import ROOT, load_settings
from mailer.feedback.policy import send_figures
from mailer.models import Delivery, FeedbackEvent, Issue, Subscriber, Suppression
from mailer.tasks import configure_celery
from support.bounce_flows import BOUNCE_DOMAIN, people
from support.flows import approve_for_sending, issue_input
from support.postfix import Postfix, PostfixUnavailable
from support.smtp import SmtpTestServer

DEAD = ("dead.one@example.org", "dead.two@example.org")
FULL = "full@example.org"
ALIVE = ("alive.one@example.org", "alive.two@example.org", "alive.three@example.org")


def _own_redis(url: str) -> str:
    """The suite's Redis, another database number: our workers must not share a queue with the suite's."""
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(number + 8) % 16}"))


@pytest.fixture(scope="module")
def downstream():
    server = SmtpTestServer(port=free_port())
    server.start()
    yield server
    server.stop()


def _process(args, env, log_path):
    log = open(log_path, "w")  # noqa: SIM115 - closed by _stop
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _stop(proc, log):
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    log.close()


@pytest.fixture(scope="module")
def relay(test_env, downstream, tmp_path_factory):
    """Postfix in front of `downstream`, our receiver for BOUNCE_DOMAIN, and workers sending through Postfix:
    the environment they share."""
    logs = tmp_path_factory.mktemp("relay")
    receiver_port = free_port()
    postfix = Postfix(free_port(), downstream.port, {BOUNCE_DOMAIN: receiver_port})
    try:
        postfix.start()
    except PostfixUnavailable as exc:
        pytest.skip(f"no Postfix relay for this test: {exc}")
    ours = {
        **test_env,
        "SMTP_URL": f"smtp://127.0.0.1:{postfix.port}",
        "REDIS_URL": _own_redis(test_env["REDIS_URL"]),
        "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
        "BOUNCE_SMTP_PORT": str(receiver_port),
        "AUTO_PAUSE_BOUNCE_RATE": "0",
        "SOFT_BOUNCE_LIMIT": "2",
    }
    env = {**os.environ, **ours, "PYTHONUNBUFFERED": "1"}
    started = [
        _process([sys.executable, "-m", "mailer.cli", "bounces", "receive"], env, logs / "receiver.log"),
        _process(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "--queues", "bulk,imports,transactional"]
            + [
                "--concurrency",
                "2",
                "--hostname",
                f"relay-{os.getpid()}@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
            ],
            env,
            logs / "worker.log",
        ),
    ]
    try:
        wait_until(lambda: "receiving reports" in (logs / "receiver.log").read_text(), 30, message="the receiver")
        wait_until(lambda: "ready." in (logs / "worker.log").read_text(), 60, message="the celery worker")
        yield {"env": ours, "postfix": postfix, "logs": logs}
    finally:
        for proc, log in started:
            _stop(proc, log)
        postfix.stop()


@pytest.fixture()
def relay_settings(relay, settings):
    ours = load_settings(relay["env"])
    configure_celery(ours)  # what this test queues goes to the relay's workers
    yield ours
    configure_celery(settings)


def _send(db, settings, subject) -> int:
    with db.transaction() as s:
        issue = create_issue(
            s, issue_input(s, subject=subject, body="News from Project Fusion.", topic="project-fusion")
        )
        approve_for_sending(s, issue.id)
        issue_id = issue.id
    with db.transaction() as s:
        commands.send_issue(s, issue_id, Actor("system", None, "test"), settings)
    return issue_id


def _events(session, issue_id):
    return session.scalars(select(FeedbackEvent).where(FeedbackEvent.issue_id == issue_id)).all()


def _state(db, relay, issue_id, events: int):
    def done():
        with db.transaction() as s:
            return s.get(Issue, issue_id).status == "sent" and len(_events(s, issue_id)) >= events

    wait_until(done, 90, interval=0.2, message=f"issue {issue_id} sent and {events} reports back: {_logs(relay)}")


def _suppressions():
    """(subscriber, why) of each suppression, through the event it names."""
    return select(FeedbackEvent.subscriber_id, Suppression.detail).join(
        FeedbackEvent, FeedbackEvent.id == Suppression.event_id
    )


def _logs(relay) -> str:
    return "\n".join(
        [relay["postfix"].log()[-1500:]] + [p.read_text()[-1500:] for p in sorted(relay["logs"].iterdir())]
    )


def test_postfix_accepts_everything_then_its_dsns_bounce_suppress_and_count(db, relay, relay_settings, downstream):
    for address in DEAD:
        downstream.refuse(address, "550 5.1.1 No such mailbox here")
    downstream.refuse(FULL, "452 4.2.2 Mailbox full")
    ids = people(db, [*DEAD, FULL, *ALIVE])
    first = _send(db, relay_settings, "Progress in December")
    _state(db, relay, first, events=3)

    for address in ALIVE:
        [received] = downstream.messages_to(address)
        assert received.mail_from.startswith("bounce-") and received.mail_from.endswith(f"@{BOUNCE_DOMAIN}")
    with db.transaction() as s:
        rows = {r.subscriber_id: r for r in s.scalars(select(Delivery).where(Delivery.issue_id == first))}
        for address in DEAD:
            row = rows[ids[address]]
            assert row.status == "bounced" and "5.1.1 No such mailbox here" in row.last_error
        assert {rows[ids[a]].status for a in ALIVE} == {"sent"}
        # The relay gave up on the full mailbox: not delivered, but not a bounce that counts against the issue.
        assert (
            rows[ids[FULL]].status == "failed"
            and "not delivered after sending: 452 4.2.2 Mailbox full" in rows[ids[FULL]].last_error
        )
        events = {e.subscriber_id: e for e in _events(s, first)}
        assert {(e.source, e.severity, e.status) for e in events.values()} == {
            ("smtp", "hard", "5.1.1"),
            ("smtp", "soft", "4.2.2"),
        }
        assert all(events[ids[a]].delivery_id == rows[ids[a]].id for a in (*DEAD, FULL))  # by the VERP address
        suppressed = dict(s.execute(_suppressions()).all())
        assert set(suppressed) == {ids[a] for a in DEAD}
        assert all("hard bounce by DSN" in detail and "5.1.1" in detail for detail in suppressed.values())
        assert s.get(Subscriber, ids[FULL]).status == "active"  # one soft bounce: counted
        figures = send_figures(s, first)
        assert (figures.attempted, figures.bounced, figures.complaints) == (6, 2, 0)

    second = _send(db, relay_settings, "Progress in January")
    _state(db, relay, second, events=1)
    with db.transaction() as s:
        planned = set(s.scalars(select(Delivery.subscriber_id).where(Delivery.issue_id == second)))
        assert planned == {ids[a] for a in (FULL, *ALIVE)}  # the suppressed are not sent to again
        assert s.get(Subscriber, ids[FULL]).status == "bounced"  # the second soft bounce in 30 days (limit 2)
        assert "2 soft bounces in 30 days" in dict(s.execute(_suppressions()).all())[ids[FULL]]
        assert s.scalar(select(func.count()).select_from(FeedbackEvent)) == 4
    for address in ALIVE:
        assert len(downstream.messages_to(address)) == 2
