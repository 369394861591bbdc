"""Weekly digest benchmark: BENCH_SUBSCRIBERS people, 50 updates, 20 preference sets, through the real engine.

Builds (set-based) BENCH_SUBSCRIBERS active subscribers (default 100,000) in 20 preference groups, each group a
weekly topic set x an area (and a services mask), and 50 updates published over the last few days across the five
topics and areas, laid out so that every group gets a different set of updates: 20 distinct contents. Then:

* plans the run in this process with `run_digest(db, "weekly", settings=...)`, as beat's task does, and times it
  (`plan_seconds`, which includes rendering and freezing each distinct email once); checks that the distinct
  renders it made equal the distinct preference sets built;
* sends every digest email through the delivery engine, as beat's `run_digest` task would (`plan_issue` per
  email, Celery over a redis-server, SMTP into Postfix's smtp-sink on localhost) and times it from the first
  enqueue until every digest issue is `sent`; the workers log every MJML render they make (`worker_renders`:
  0, since the emails were frozen when the run started them);
* runs `run_digest` a second time for the same week: it must process nobody and send nothing more;
* measures the wire's limit as send_bench does: smtp-source, as many messages of the digests' size, same sink.

Missing and duplicate recipients are counted from the sink's dump, not our ledger. The helpers (sink counter,
Postfix install, process memory) come from send_bench.py.

Environment: BENCH_SUBSCRIBERS (default 100000), BENCH_DATABASE_URL (default: a SQLite file in a temp dir; on
PostgreSQL the database is created if missing and its public schema dropped and rebuilt, so its name must
contain "bench", e.g. postgresql+psycopg://postgres@localhost:5432/bench_digest), BENCH_CONCURRENCY (worker
processes, default cores), BENCH_SESSIONS (smtp-source sessions, default cores), BENCH_PROFILE=1 (cProfile the
planning and print the top functions). Prints progress, then one JSON line last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from send_bench import (  # noqa: E402 - bench/ is put on the path first
    LIMIT_RCPT,
    ROOT,
    SOURCE,
    bench_rig,
    children,
    counting_worker,
    ensure_postfix_tools,
    renders_in,
    rss_kb,
    wait_quiet,
)

UPDATES_PER_TOPIC = 10  # x 5 topics = 50 updates
# Weekly topic sets; with the five areas, 4 x 5 = 20 preference groups. Each set has its own services mask, so
# (area, services) names a group; updates concern every service (0), so the mask does not split content.
TOPIC_SETS = [
    (("project-fusion",), 1),
    (("project-fusion", "get-involved"), 3),
    (("trust-matters", "careers"), 6),
    (("sustainability", "get-involved", "careers"), 7),
]
STARTED: list[subprocess.Popen] = []


def email_of(n: int) -> str:
    return f"d{n}@bench.invalid"


def ensure_postgres_database(url: str) -> None:
    """Create the bench's own PostgreSQL database if it is missing; refuse any whose name lacks 'bench'."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if "bench" not in (u.database or ""):
        sys.exit(f"refusing to drop the schema of database {u.database!r}: use one whose name contains 'bench'")
    import psycopg

    conninfo = {"host": u.host or "localhost", "port": u.port or 5432, "user": u.username or "postgres",
                "dbname": "postgres"}
    if u.password:
        conninfo["password"] = u.password
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (u.database,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{u.database}"')


def prepare_database(settings, n: int) -> dict:
    """Schema, topics, n subscribers in 20 groups with weekly subscriptions, 50 published updates."""
    from sqlalchemy import insert, literal, select, text

    from mailer.db import Database
    from mailer.models import SEED_AREAS, Subscriber, Subscription, Topic, Update, email_hash, utcnow
    from mailer.schema import init_database

    db = Database(settings.database_url)
    key = settings.email_hash_key
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    init_database(settings.database_url)
    areas = [slug for slug, _name in SEED_AREAS]
    now = utcnow()
    long_ago = now - timedelta(days=120)
    with db.transaction() as s:
        topic_ids = dict(s.execute(select(Topic.slug, Topic.id)).all())
        for start in range(0, n, 10000):
            rows = []
            for i in range(start, min(n, start + 10000)):
                group = i % (len(TOPIC_SETS) * len(areas))
                email = email_of(i)
                rows.append({
                    "email": email, "email_key": email, "email_hash": email_hash(email, key), "status": "active",
                    "area": areas[group % len(areas)], "services": TOPIC_SETS[group // len(areas)][1],
                    "created_at": long_ago, "subscribed_at": long_ago, "confirmed_at": long_ago,
                })
            s.execute(insert(Subscriber), rows)
        # One INSERT … SELECT per (topic set, topic): the services mask says which topic set a subscriber has.
        for topics, mask in TOPIC_SETS:
            for slug in topics:
                s.execute(
                    insert(Subscription).from_select(
                        ["subscriber_id", "topic_id", "frequency", "source", "started_at"],
                        select(Subscriber.id, literal(topic_ids[slug]), literal("weekly"), literal("bench"),
                               literal(long_ago, Subscription.started_at.type))
                        .where(Subscriber.services == mask),
                    )
                )
        # 10 updates per topic: one for each area, three for everywhere, two for a pair of areas. Every
        # group then sees an update of its own area in each of its topics, so no two groups share content.
        updates = []
        for t, slug in enumerate(topic_ids):
            for i in range(UPDATES_PER_TOPIC):
                if i < len(areas):
                    where = [areas[i]]
                elif i < 8:
                    where = []
                else:
                    where = sorted({areas[(i + t) % len(areas)], areas[(i + t + 1) % len(areas)]},
                                   key=areas.index)
                k = len(updates)
                updates.append({
                    "slug": f"bench-{slug}-{i}", "title": f"{slug.replace('-', ' ').title()}: progress {i + 1}",
                    "summary": f"What changed in {slug.replace('-', ' ')} ({', '.join(where) or 'everywhere'}):"
                               " new clinics, opening hours and how to have your say at the next community event.",
                    "body": "", "topic_id": topic_ids[slug], "areas": where, "services": 0, "status": "published",
                    "published_at": now - timedelta(days=5) + timedelta(hours=2 * k),
                    "created_at": now - timedelta(days=6), "updated_at": now - timedelta(days=6),
                })
        s.execute(insert(Update), updates)
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    db.dispose()
    return {"groups": len(TOPIC_SETS) * len(areas), "updates": len(updates)}


def main() -> None:
    n = int(os.environ.get("BENCH_SUBSCRIBERS", "100000"))
    cores = os.cpu_count() or 2
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", str(cores)))
    sessions = int(os.environ.get("BENCH_SESSIONS", str(cores)))
    ensure_postfix_tools()
    database_url = os.environ.get("BENCH_DATABASE_URL")
    if database_url and database_url.startswith("postgresql"):
        ensure_postgres_database(database_url)

    with bench_rig("mailer-digest-bench-", database_url, STARTED) as rig:
        result = run(n, rig.settings, rig.env, rig.work, rig.counter, rig.sink_port, concurrency, sessions)
    print(json.dumps(result))


def plan_run(db, settings, profile: bool):
    """`run_digest` as beat's task calls it: with the settings, so each distinct email is rendered (and frozen)
    once here, in the planning, and never by the workers."""
    from mailer.compose.digests import run_digest

    if not profile:
        return run_digest(db, "weekly", settings=settings)
    import cProfile
    import pstats

    prof = cProfile.Profile()
    report = prof.runcall(run_digest, db, "weekly", settings=settings)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return report


def run(n, settings, env, work, counter, sink_port, concurrency, sessions):
    from sqlalchemy import func, select

    from mailer.compose.mail import compile_issue
    from mailer.db import Database
    from mailer.models import DigestRunSubscriber, Issue, utcnow

    database = settings.database_url.split(":")[0].split("+")[0]
    t = time.perf_counter()
    built = prepare_database(settings, n)
    setup_seconds = time.perf_counter() - t
    print(f"database ({database}): {n:,} subscribers in {built['groups']} preference groups, "
          f"{built['updates']} updates, in {setup_seconds:.1f} s", flush=True)

    renders_log = work / "renders.log"
    log = open(work / "worker.log", "w")  # noqa: SIM115 - the process outlives this function's frames
    workers = subprocess.Popen(counting_worker("bulk", concurrency, renders_log), cwd=ROOT,
                               env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    STARTED.append(workers)
    from mailer.runtime import Runtime, set_runtime
    from mailer.tasks import configure_celery, enqueue, plan_issue

    set_runtime(Runtime.build(settings))
    configure_celery(settings)
    db = Database(settings.database_url)

    t = time.perf_counter()
    report = plan_run(db, settings, os.environ.get("BENCH_PROFILE") == "1")
    plan_seconds = time.perf_counter() - t
    with db.sessions() as s:
        placed = s.scalar(select(func.count()).select_from(DigestRunSubscriber)
                          .where(DigestRunSubscriber.run_id == report.run_id))
        sizes = sorted(s.scalars(select(func.count()).select_from(DigestRunSubscriber)
                                 .where(DigestRunSubscriber.run_id == report.run_id)
                                 .group_by(DigestRunSubscriber.issue_id)))
    print(f"plan: run_digest processed {report.processed:,} ({report.with_news:,} with news) in {plan_seconds:.1f} s "
          f"= {report.processed / plan_seconds:,.0f} people/s; {report.renders} distinct contents for "
          f"{built['groups']} preference groups, {len(report.emails)} emails of {sizes[0]:,}–{sizes[-1]:,} people",
          flush=True)

    # Every digest compiled here once, outside the clock: their mean size (weighted by recipients) is the size
    # the wire's limit is measured with.
    fields = {"date": "Mon, 23 Nov 2026 10:00:00 +0000", "message_id": "x@y",
              "list_unsubscribe": "https://mailer.example.nhs.uk/u/" + "x" * 60,
              "unsubscribe_url": "https://mailer.example.nhs.uk/u/" + "x" * 60,
              "manage_url": "https://mailer.example.nhs.uk/manage/" + "x" * 60}
    with db.sessions() as s:
        audience = dict(s.execute(select(DigestRunSubscriber.issue_id, func.count())
                                  .where(DigestRunSubscriber.run_id == report.run_id)
                                  .group_by(DigestRunSubscriber.issue_id)).all())
        t = time.perf_counter()
        message_sizes = [len(compile_issue(s.get(Issue, i), settings).fill({"to": email_of(0), **fields}))
                         for i in report.emails]
        encode_ms = (time.perf_counter() - t) * 1000 / max(len(report.emails), 1)
    weights = [audience.get(i, 0) for i in report.emails]
    mean_size = sum(w * size for w, size in zip(weights, message_sizes, strict=True)) / max(sum(weights), 1)
    time.sleep(3)  # let the workers finish starting before the clock runs

    peak_total, peak_child = 0, 0
    start, enqueued_at = time.perf_counter(), utcnow()
    for issue_id in report.emails:
        enqueue(plan_issue, issue_id)
    unsent = len(report.emails)
    progress, progress_at, shown = -1, time.perf_counter(), time.perf_counter()
    while unsent:
        time.sleep(0.2)
        if counter.total != progress:
            progress, progress_at = counter.total, time.perf_counter()
        elif time.perf_counter() - progress_at > 120:
            raise SystemExit(f"no message reached the sink for 2 minutes: see {work / 'worker.log'}")
        pids = children(workers.pid)
        rss = [rss_kb(p) for p in pids]
        peak_total = max(peak_total, rss_kb(workers.pid) + sum(rss))
        peak_child = max([peak_child, *rss])
        with db.sessions() as s:
            unsent = s.scalar(select(func.count()).select_from(Issue)
                              .where(Issue.id.in_(report.emails), Issue.status != "sent"))
        if time.perf_counter() - shown > 10:
            shown = time.perf_counter()
            print(f"  {shown - start:5.0f} s: {counter.total:,} at the sink, {len(report.emails) - unsent} of "
                  f"{len(report.emails)} emails sent", flush=True)
        if time.perf_counter() - start > 1800:
            raise SystemExit("the send did not finish within 30 minutes")
        if workers.poll() is not None:
            log_tail = (work / "worker.log").read_text()[-3000:]  # the scratch folder goes with the run
            raise SystemExit(f"the workers stopped:\n{log_tail}")
    seconds = time.perf_counter() - start
    expected_total = report.with_news
    wait_quiet(counter, expected_total)
    with db.sessions() as s:
        # When the last email's audience was in the ledger, from the first enqueue (queueing included).
        all_planned = (s.scalar(select(func.max(Issue.planned_at)).where(Issue.id.in_(report.emails)))
                       - enqueued_at).total_seconds()
    ours = {k: v for k, v in counter.counts.items() if k != LIMIT_RCPT}
    expected = {email_of(i).encode() for i in range(n)}
    missing = len(expected - set(ours))
    duplicates = sum(v - 1 for v in ours.values() if v > 1)
    strangers = len(set(ours) - expected)
    rate = expected_total / seconds
    renders = renders_in(renders_log)
    print(f"send: {expected_total:,} digests ({mean_size / 1024:.1f} KB on average, {min(message_sizes) / 1024:.1f}–"
          f"{max(message_sizes) / 1024:.1f} KB, {encode_ms:.0f} ms to encode one) in {seconds:.1f} s = "
          f"{rate:,.0f} msg/s; missing {missing}, duplicates {duplicates}, unexpected {strangers}; "
          f"workers rendered MJML {len(renders)} times ({len(set(renders))} processes)", flush=True)

    # Run it again for the same week: nobody is processed twice, nothing more goes.
    before = counter.total
    t = time.perf_counter()
    again = plan_run(db, settings, False)
    again_seconds = time.perf_counter() - t
    for issue_id in again.emails:
        enqueue(plan_issue, issue_id)
    time.sleep(5)
    resent = counter.total - before
    print(f"again: run_digest processed {again.processed}, {len(again.emails)} emails to plan, "
          f"{resent} more at the sink ({again_seconds:.2f} s)", flush=True)

    # The wire's limit: the same count and size, smtp-source over reused connections into the same sink.
    before = counter.total
    payload = max(round(mean_size) - 600, 1000)  # smtp-source adds ~600 bytes of headers
    t = time.perf_counter()
    subprocess.run([SOURCE, "-d", "-s", str(sessions), "-m", str(expected_total), "-l", str(payload), "-f",
                    "bench@example.nhs.uk", "-t", LIMIT_RCPT.decode(), f"127.0.0.1:{sink_port}"], check=True)
    limit_seconds = time.perf_counter() - t
    wait_quiet(counter, before + expected_total)
    limit = expected_total / limit_seconds
    print(f"limit: smtp-source {expected_total:,} messages in {limit_seconds:.1f} s = {limit:,.0f} msg/s "
          f"({sessions} sessions)", flush=True)
    print(f"worker memory: peak {peak_total / 1024:.0f} MB over {concurrency} processes and the parent, "
          f"largest process {peak_child / 1024:.0f} MB", flush=True)
    db.dispose()
    return {
        "subscribers": n,
        "preference_sets": built["groups"],
        "updates": built["updates"],
        "setup_seconds": round(setup_seconds, 1),
        "plan_seconds": round(plan_seconds, 2),
        "processed": report.processed,
        "placed": placed,
        "with_news": report.with_news,
        "distinct_contents": report.renders,
        "emails": len(report.emails),
        "worker_renders": len(renders),
        "encode_ms": round(encode_ms, 1),
        "all_planned_after_s": round(all_planned, 2),
        "seconds": round(seconds, 2),
        "msgs_per_s": round(rate),
        "limit_msgs_per_s": round(limit),
        "ratio": round(rate / limit, 3),
        "missing": missing,
        "duplicates": duplicates,
        "unexpected": strangers,
        "again_processed": again.processed,
        "again_emails": len(again.emails),
        "again_sent": resent,
        "peak_worker_rss_mb": round(peak_total / 1024, 1),
        "message_kb": round(mean_size / 1024, 1),
        "concurrency": concurrency,
        "database": database,
    }


if __name__ == "__main__":
    main()
