"""The one place that makes engines and sessions, and the one place that commits.

Services receive a `Session` and never commit themselves; callers (a web request, a CLI command, a Celery
task) open a unit of work with `Database.transaction()`, which commits on success and rolls back on any
error, so a failed request leaves nothing half-written. What must happen only once the work is committed (a
task to enqueue: a worker must find the rows it is told about) is registered with `after_commit`, so a command
can say it and every adapter that calls the command gets it, and a rolled-back unit enqueues nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    """An engine tuned for the dialect: SQLite gets WAL and a busy timeout so web and workers can share it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every SQLite test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        # pysqlite defers BEGIN until the first write, so a transaction that reads and then writes can
        # find its snapshot stale and fail at once with "database is locked" (no busy wait). We emit BEGIN
        # ourselves: IMMEDIATE for units of work (they take the write lock up front and queue behind the
        # busy timeout), plain BEGIN for read-only sessions (WAL readers never wait).
        @event.listens_for(engine, "connect")
        def _no_pysqlite_autobegin(dbapi_conn, _record):  # pragma: no cover
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):  # pragma: no cover
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


EMAIL_HASH_KEY = "email_hash_key"
AFTER_COMMIT = "after_commit"

log = logging.getLogger(__name__)


def after_commit(session: Session, fn: Callable, *args, **kwargs) -> None:
    """Call `fn(*args, **kwargs)` once the unit of work `session` belongs to has committed; never if it rolls
    back. Calls run in the order registered; one that raises is logged and the rest still run (the work they
    follow is committed, and the sweeper is the safety net for a follow-up that did not happen)."""
    session.info.setdefault(AFTER_COMMIT, []).append((fn, args, kwargs))


def _run_after_commit(session: Session) -> None:
    for fn, args, kwargs in session.info.pop(AFTER_COMMIT, []):
        try:
            fn(*args, **kwargs)
        except Exception:
            # Not its arguments: a follow-up can carry addresses (a test send's).
            log.exception("after-commit call %s failed", getattr(fn, "__name__", fn))


class Database:
    """An engine and its session factory.

    `email_hash_key` (EMAIL_HASH_KEY) is what the address hashes stored in this database are keyed with; it
    belongs with the database as its URL does, so every session carries it (`session.info`) and the services
    that hash an address (`audience.emails.hash_address`) need no extra argument. Without it, hashing refuses.
    """

    def __init__(self, url: str, email_hash_key: str | None = None):
        self.url = url
        self.email_hash_key = email_hash_key
        self.engine = make_engine(url)
        info = {EMAIL_HASH_KEY: email_hash_key} if email_hash_key else {}
        # Read sessions (pages, lookups) and write sessions (units of work) share one pool.
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._writers = sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False, info=info
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed when the block ends normally and rolled back otherwise."""
        session = self._writers()
        try:
            yield session
            session.commit()
        except BaseException:
            session.info.pop(AFTER_COMMIT, None)
            session.rollback()
            raise
        finally:
            session.close()
        _run_after_commit(session)

    def check_email_hash_key(self) -> None:
        """Refuse (ConfigError) a key other than the one this database's address hashes were made with; record
        the key's fingerprint the first time. With another key nobody suppressed or erased would be recognised
        any more, and an import could bring them back, so starting is refused rather than carrying on quietly.
        A database not yet migrated has nothing to check."""
        from .config import ConfigError
        from .models import EMAIL_HASH, KeyFingerprint, key_fingerprint

        key = self.email_hash_key
        if not key or not inspect(self.engine).has_table(KeyFingerprint.__tablename__):
            return
        wanted = key_fingerprint(key)
        try:
            with self.transaction() as session:
                row = session.get(KeyFingerprint, EMAIL_HASH)
                if row is None:
                    session.add(KeyFingerprint(name=EMAIL_HASH, fingerprint=wanted))
                    return
        except IntegrityError:  # another process recorded it at the same moment: check against theirs
            with self.sessions() as session:
                row = session.get(KeyFingerprint, EMAIL_HASH)
        if row.fingerprint != wanted:
            raise ConfigError(
                f"EMAIL_HASH_KEY is not the key this database's address hashes were made with (recorded "
                f"{row.created_at:%Y-%m-%d}): with it nobody suppressed or erased would be recognised, and an import "
                "could bring them back. Set EMAIL_HASH_KEY to the key used before (in development it is in "
                "var/email_hash_key), or start from an empty database."
            )

    def ping(self) -> str:
        """ "ok" if the database answers a trivial query, otherwise the kind of error (the health check)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # report, do not raise: the caller says what is down
            return f"error: {exc.__class__.__name__}"
        return "ok"

    def dispose(self) -> None:
        self.engine.dispose()
