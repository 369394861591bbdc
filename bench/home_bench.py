"""The team's home page at scale: GET /admin/ (and the sending panel it refreshes, and the issues list) over a
million subscribers, with the ledgers of a big finished send and of one half-way through.

The schema is dropped and rebuilt and BENCH_SUBSCRIBERS people (default 1,000,000) generated exactly as
`audience_bench.py` does (subscribed over three years, 1–3 subscriptions each, some ended: so the 12 weeks the page
shows hold about a twelfth of the subscriptions). Then, through the compose room's own commands and the delivery
engine's planning (one INSERT … SELECT each): an issue to Trust Matters sent to everyone on it (its ledger every
row `sent`, 1 % `bounced`, finished), one to Project Fusion half-way (its first half `sent`), three small sent
issues, two waiting for approval, two scheduled, 40 drafts; an import running; each topic's count kept, as
the hourly retention job keeps it (`stats.count_topics`, timed). A publisher signs in through the
login form, and each page is fetched BENCH_REPEAT times (default 20; 5 on SQLite) after one warm-up through the
Flask test client: p50 and p95 wall milliseconds. Each panel's read is timed alone too, so a slow page says which
panel it is.

Environment: BENCH_DATABASE_URL (default postgresql+psycopg://postgres@localhost:5432/test, whose public schema
is dropped; if it does not answer, SQLite in a temporary directory, and the run says so), BENCH_SUBSCRIBERS,
BENCH_REPEAT, BENCH_REDIS_PORT (default 17612, the redis-server it starts: the app's rate limits need one),
BENCH_REUSE=1 to measure again on the data set a previous run left (its accounts and issues too).
Prints progress, then one JSON line last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import audience_bench  # noqa: E402  (its data set: the same million people the segment figures are for)

from mailer.dev.redis_server import server_args  # noqa: E402

PASSWORD = "bench password, long enough"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn, repeat: int) -> dict:
    fn()  # warm-up: the first call compiles templates and fills caches
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(pct(times, 0.95), 1)}


def prepare(db, settings) -> dict:
    """The issues, ledgers and import the panels read (see the module's docstring)."""
    from sqlalchemy import select, update

    from mailer.accounts import create_admin
    from mailer.audience.lookups import parse_in
    from mailer.audience.segments import topic_audience
    from mailer.compose.inputs import IssueInput, ScheduleInput
    from mailer.compose.issues import approve_issue, create_issue, request_send, schedule_issue, submit_issue
    from mailer.delivery import dispatch
    from mailer.inputs import parse
    from mailer.models import Delivery, Import, Issue, utcnow

    with db.transaction() as s:
        writer = create_admin(s, "writer@example.nhs.uk", PASSWORD, role="editor").id
        create_admin(s, "publisher@example.nhs.uk", PASSWORD, role="publisher")

    def issue(subject: str, topic: str) -> int:
        with db.transaction() as s:
            data = parse_in(s, IssueInput, {"subject": subject, "body": "News.", "topic": topic})
            return create_issue(s, data, writer).id

    def send(subject: str, topic: str) -> tuple[int, int]:
        issue_id = issue(subject, topic)
        with db.transaction() as s:
            submit_issue(s, issue_id)
            approve_issue(s, issue_id)
            request_send(s, issue_id, settings=settings)
        t = time.perf_counter()
        dispatch.plan_issue(db, issue_id, lambda i: topic_audience(i.topic_id), 1000)
        with db.sessions() as s:
            count = s.get(Issue, issue_id).recipient_count
        print(f"  {subject}: {count:,} rows planned in {time.perf_counter() - t:.1f} s", flush=True)
        return issue_id, count

    sent_id, sent_count = send("Trust Matters: the big one", "trust-matters")
    half_id, half_count = send("Project Fusion: half-way", "project-fusion")
    small = [send(f"Sustainability {n}", "sustainability")[0] for n in range(3)]
    with db.transaction() as s:
        now = utcnow()
        s.execute(update(Delivery).where(Delivery.issue_id.in_([sent_id, *small])).values(status="sent", sent_at=now))
        # One in a hundred bounced: every hundredth row of the big send.
        first = s.scalar(select(Delivery.id).where(Delivery.issue_id == sent_id).order_by(Delivery.id).limit(1))
        s.execute(
            update(Delivery)
            .where(Delivery.issue_id == sent_id, (Delivery.id - first) % 100 == 0)
            .values(status="bounced")
        )
        middle = s.scalar(
            select(Delivery.id).where(Delivery.issue_id == half_id).order_by(Delivery.id).offset(half_count // 2)
        )
        first_half = (Delivery.issue_id == half_id) & (Delivery.id < middle)
        s.execute(update(Delivery).where(first_half).values(status="sent", sent_at=now))
        s.execute(update(Issue).where(Issue.id.in_([sent_id, *small])).values(status="sent", finished_at=now))
        s.add(Import(filename="people.csv", channel="admin", status="running", size=10_000_000, bytes_read=4_000_000))
    for n in range(2):
        with db.transaction() as s:
            submit_issue(s, issue(f"For review {n}", "careers"))
    for n in range(2):
        issue_id = issue(f"Scheduled {n}", "get-involved")
        with db.transaction() as s:
            submit_issue(s, issue_id)
            approve_issue(s, issue_id)
            when = (utcnow() + timedelta(days=3 + n)).isoformat()
            schedule_issue(s, issue_id, parse(ScheduleInput, {"send_at": when}).send_at)
    for n in range(40):
        issue(f"Draft {n}", "trust-matters")
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    return {"sent_rows": sent_count, "sending_rows": half_count}


def panels(db, settings, repeat: int) -> dict:
    """Each panel's read alone, as the page calls it."""
    from mailer.audience.importer import import_status
    from mailer.audience.lookups import running_imports
    from mailer.compose.issues import scheduled_issues, sending_now, waiting_for
    from mailer.stats import deliverability_health, recent_sends, topic_growth

    reads = {
        "waiting_for": lambda s: waiting_for(s, None, may_approve=True),
        "scheduled_issues": scheduled_issues,
        "sending_now": sending_now,
        "recent_sends": recent_sends,
        "topic_growth": topic_growth,
        "deliverability_health": lambda s: deliverability_health(s, settings.deliverability),
        "running_imports": lambda s: [import_status(r) for r in running_imports(s)],
    }
    out = {}
    for name, read in reads.items():

        def call(read=read):
            with db.sessions() as s:
                read(s)

        out[name] = timed(call, repeat)
        print(f"  {name:22} p50 {out[name]['p50_ms']:8.1f} ms   p95 {out[name]['p95_ms']:8.1f} ms", flush=True)
    return out


def main() -> None:
    n = int(os.environ.get("BENCH_SUBSCRIBERS", "1000000"))
    work = Path(tempfile.mkdtemp(prefix="mailer-home-bench-"))
    port = int(os.environ.get("BENCH_REDIS_PORT", "17612"))
    args = server_args(port, work / "redis")
    args[args.index("--appendonly") + 1] = "no"
    redis_proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.perf_counter()
    try:
        result = run(n, work, f"redis://127.0.0.1:{port}/0")
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    print(f"total {result['total_seconds']:.0f} s")
    print(json.dumps(result))


def run(n: int, work: Path, redis_url: str) -> dict:
    from mailer.config import load_settings
    from mailer.db import Database

    url, note = audience_bench.resolve_url(work)
    if note:
        print(note, flush=True)
    dialect = url.split(":")[0].split("+")[0]
    repeat = int(os.environ.get("BENCH_REPEAT", "20" if dialect == "postgresql" else "5"))
    result: dict = {"database": dialect, "subscribers": n, "repeat": repeat}
    if note:
        result["note"] = note
    for _ in range(100):
        try:
            redis.Redis.from_url(redis_url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)

    reuse = os.environ.get("BENCH_REUSE", "") not in ("", "0")
    print(f"home page over {n:,} subscribers ({dialect}; {'reused' if reuse else 'schema dropped and rebuilt'})")
    t = time.perf_counter()
    if not reuse:
        audience_bench.rebuild_schema(url)
    db = Database(url)
    settings = load_settings(
        {
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "SMTP_URL": "smtp://127.0.0.1:9",
            "SECRET_KEY": "bench-secret",
            "EMAIL_HASH_KEY": audience_bench.BENCH_EMAIL_HASH_KEY,
            "VAR_DIR": str(work / "var"),
            "BASE_URL": "http://bench.test",
        }
    )
    if not reuse:
        result["dataset"] = audience_bench.generate(db, n) | prepare(db, settings)
        result["dataset"]["seconds"] = round(time.perf_counter() - t, 1)
        print(f"  data set in {result['dataset']['seconds']:.0f} s: {result['dataset']}", flush=True)
    # What the hourly retention job keeps for the page: each topic's open subscriptions.
    from mailer.stats import count_topics

    t = time.perf_counter()
    with db.transaction() as s:
        count_topics(s)
    result["count_topics_ms"] = round((time.perf_counter() - t) * 1000, 1)
    print(f"  topics counted (as the hourly job does) in {result['count_topics_ms']:.0f} ms", flush=True)

    print(f"each panel's read, {repeat} runs after a warm-up:", flush=True)
    result["panels"] = panels(db, settings, repeat)
    db.dispose()

    from mailer.web import create_app

    app = create_app(settings)
    client = app.test_client()
    login = client.get("/admin/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', login.data).group(1).decode()
    signed_in = client.post(
        "/admin/login", data={"csrf_token": token, "email": "publisher@example.nhs.uk", "password": PASSWORD}
    )
    assert signed_in.status_code == 303, signed_in.status_code

    print(f"pages, {repeat} runs after a warm-up (wall time through the Flask test client):", flush=True)
    result["pages"] = {}
    for name, path in (
        ("home", "/admin/"),
        ("sending panel", "/admin/home/sending"),
        ("issues list", "/admin/issues"),
        ("issues list, filtered, page 2", "/admin/issues?status=draft&topic=trust-matters&size=10&page=2"),
    ):

        def get(path=path):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code)

        result["pages"][name] = timed(get, repeat)
        figures = result["pages"][name]
        print(f"  {name:30} p50 {figures['p50_ms']:8.1f} ms   p95 {figures['p95_ms']:8.1f} ms", flush=True)
    app.extensions["mailer"].db.dispose()
    return result


if __name__ == "__main__":
    main()
