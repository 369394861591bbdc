"""Audience at scale: segment counts and planning over a million subscribers, CSV import and export.

1. Segments. The schema is dropped and rebuilt (migrations, seeded topics) and BENCH_SUBSCRIBERS people
   (default 1,000,000) are generated with set-based SQL on PostgreSQL (INSERT … SELECT over
   generate_series, random() for the attributes; Python executemany in chunks on SQLite): skewed areas and
   audiences, services bits, 90% active, subscribed over three years, 1–3 subscriptions each to the seeded
   topics (80% "as it happens"), some ended, 0.5% of addresses on the suppression list; on PostgreSQL
   each subscriber's subscription summary is filled in one pass (migration 0005's UPDATE) and the table
   rewritten (VACUUM FULL); then VACUUM ANALYZE (the steady state autovacuum keeps). Seven realistic
   segments are each validated and counted the way the admin's live count does it (`check_rules` +
   `count(segment_audience(rules))`) and for an issue to Trust Matters (`check_rules` +
   `audience_size(topic, rules)`), BENCH_REPEAT times after one warm-up:
   p50/p95/max per query and p95 over all. The slowest query's plan is printed (EXPLAIN ANALYZE,
   PostgreSQL). Planning: an issue is put in `sending` and `dispatch.plan_issue` snapshots its audience into
   the ledger (one INSERT … SELECT) and cuts the batch ranges, for the whole topic and with a segment.
   The peer, in the same run: the seven counts compiled as before migration 0005 (a correlated EXISTS over
   subscriptions per topic or frequency condition instead of the summary columns), and the ratio of p95s.
2. Export: `export_csv(db, export_audience(...))` streamed in a child process for everyone reachable on
   Trust Matters and for one area (about a fifth as many rows), counting rows and bytes; the child's peak
   RSS (VmHWM, read by the child itself) against its RSS after start-up says if memory grows with the rows.
3. Import: CSV files of 10,000 and BENCH_IMPORT_ROWS (default 100,000) new people (1% bad rows: a bad
   address or an unknown topic) are imported with `run_import(..., channel="api")` (the upload stored in the
   database, then imported as a worker does) into the same database,
   after the generated people, each in a child process; the bigger file is then imported again (every
   good row unchanged). Rows per second and the child's peak RSS; the ratio of the two peaks says if memory
   is flat. BENCH_PROFILE=1 runs the 10,000-row import under cProfile and prints where its time goes.

Environment: BENCH_DATABASE_URL (default postgresql+psycopg://postgres@localhost:5432/test, whose public
schema is dropped; if it does not answer, a SQLite file in a temporary directory, and the run says so),
BENCH_SUBSCRIBERS, BENCH_IMPORT_ROWS, BENCH_REPEAT (default 20, 5 on SQLite),
BENCH_PROFILE. Prints progress, then one JSON line last.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql+psycopg://postgres@localhost:5432/test"
TOPIC = "trust-matters"

# Share of people per value (None: did not answer); hampshire is the biggest area.
AREA_SHARES = [
    ("hampshire", 0.35),
    ("southampton", 0.17),
    ("portsmouth", 0.14),
    ("isle-of-wight", 0.12),
    ("elsewhere", 0.07),
    (None, 0.15),
]
AUDIENCE_SHARES = [
    ("patient", 0.30),
    ("carer", 0.12),
    ("staff", 0.20),
    ("partner", 0.05),
    ("community-group", 0.05),
    ("other", 0.08),
    (None, 0.20),
]
STATUS_SHARES = [("active", 0.90), ("pending", 0.04), ("unsubscribed", 0.04), ("bounced", 0.02)]
# The first topic someone picks, by position: Trust Matters most.
FIRST_TOPIC_SHARES = [(0, 0.55), (1, 0.20), (2, 0.12), (3, 0.08), (4, 0.05)]
FREQUENCY_SHARES = [("immediately", 0.80), ("weekly", 0.14), ("monthly", 0.06)]
NO_SERVICES = 0.30  # the rest have one of the masks 1..7, evenly
ENDED = 0.03  # open subscriptions of active people that ended anyway (left one topic)
SUPPRESSED = 0.005


@contextmanager
def compiled_as_before_0005():
    """Compile topic and frequency rules as they were before migration 0005, as a correlated EXISTS over
    subscriptions per condition, so the summary columns are measured against that in the same run."""
    from sqlalchemy import exists, select

    from mailer.audience import rules
    from mailer.models import Subscriber, Subscription, Topic

    def has_subscription(where):
        return exists(
            select(Subscription.id)
            .where(Subscription.subscriber_id == Subscriber.id, Subscription.ended_at.is_(None), where)
            .correlate(Subscriber)
        )

    summary_condition = rules._condition

    def condition(cond: dict):
        if cond["field"] not in ("topic", "frequency"):
            return summary_condition(cond)
        values = rules._values(cond)
        if cond["field"] == "topic":
            match = has_subscription(Subscription.topic_id.in_(select(Topic.id).where(Topic.slug.in_(values))))
        else:
            match = has_subscription(Subscription.frequency.in_(values))
        return ~match if cond["op"] in ("is_not", "not_in") else match

    rules._condition = condition
    try:
        yield
    finally:
        rules._condition = summary_condition


def segments(today: datetime) -> dict[str, dict]:
    a_year_ago = (today - timedelta(days=365)).date().isoformat()
    return {
        "iow_carers_mental_health": {
            "all": [
                {"field": "area", "op": "is", "value": "isle-of-wight"},
                {"field": "audience", "op": "is", "value": "carer"},
                {"field": "service", "op": "is", "value": "mental-health"},
            ]
        },
        "fusion_in_cities": {
            "all": [
                {"field": "topic", "op": "is", "value": "project-fusion"},
                {"field": "area", "op": "in", "value": ["southampton", "portsmouth"]},
            ]
        },
        "staff_or_services": {
            "any": [
                {"field": "audience", "op": "is", "value": "staff"},
                {"field": "service", "op": "in", "value": ["learning-disability", "community"]},
            ]
        },
        "nested": {
            "all": [
                {
                    "any": [
                        {"field": "area", "op": "is", "value": "hampshire"},
                        {"field": "area", "op": "is", "value": "isle-of-wight"},
                    ]
                },
                {
                    "any": [
                        {
                            "all": [
                                {"field": "audience", "op": "is", "value": "patient"},
                                {"field": "service", "op": "is", "value": "mental-health"},
                            ]
                        },
                        {"field": "topic", "op": "is", "value": "get-involved"},
                    ]
                },
            ]
        },
        "joined_last_year": {"all": [{"field": "subscribed_at", "op": "after", "value": a_year_ago}]},
        "weekly_digest": {"all": [{"field": "frequency", "op": "is", "value": "weekly"}]},
        "not_elsewhere_not_careers": {
            "all": [
                {"field": "area", "op": "is_not", "value": "elsewhere"},
                {"field": "topic", "op": "not_in", "value": ["careers"]},
            ]
        },
    }


# --- helpers ---------------------------------------------------------------------------------------


def proc_kb(key: str, pid: str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if pid == "self" else 0


def load(result: dict, phase: str) -> str:
    """Note the 1-minute load average as a phase starts: on a shared machine, other work skews the figures."""
    one = os.getloadavg()[0]
    result["load_1m"][phase] = round(one, 2)
    return f" [load {one:.2f} on {os.cpu_count()} cores]"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cases(column_sql: str, shares: list, sql_value=lambda v: "NULL" if v is None else f"'{v}'") -> str:
    """CASE over a uniform random column giving each value its share."""
    parts, edge = [], 0.0
    for value, share in shares[:-1]:
        edge += share
        parts.append(f"WHEN {column_sql} < {edge:.4f} THEN {sql_value(value)}")
    return f"CASE {' '.join(parts)} ELSE {sql_value(shares[-1][0])} END"


def pick(r: float, shares: list):
    edge = 0.0
    for value, share in shares:
        edge += share
        if r < edge:
            return value
    return shares[-1][0]


def resolve_url(work: Path) -> tuple[str, str | None]:
    from sqlalchemy import create_engine, text

    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    if url.startswith("postgres://") or url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("postgresql"):
        return url, None
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return url, None
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: fall back
        fallback = f"sqlite:///{work / 'bench.db'}"
        return fallback, f"PostgreSQL at {url} did not answer ({type(exc).__name__}); using SQLite {fallback}"


# --- the data set ----------------------------------------------------------------------------------


def rebuild_schema(url: str) -> None:
    from sqlalchemy import text

    from mailer.db import Database
    from mailer.schema import init_database

    db = Database(url)
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    db.dispose()
    init_database(url)


def generate(db, n: int) -> dict:
    """Fill an empty, migrated schema with n subscribers, their subscriptions and some suppressions."""
    from sqlalchemy import select

    from mailer.models import Topic

    with db.sessions() as s:
        topic_ids = list(s.scalars(select(Topic.id).order_by(Topic.position)))
    assert len(topic_ids) == 5, topic_ids
    if db.dialect == "postgresql":
        _generate_postgresql(db, n, topic_ids)
    else:
        _generate_sqlite(db, n, topic_ids)
    from sqlalchemy import func

    from mailer.models import Subscriber, Subscription, Suppression

    with db.sessions() as s:
        return {
            "subscribers": s.scalar(select(func.count()).select_from(Subscriber)),
            "active": s.scalar(select(func.count()).select_from(Subscriber).where(Subscriber.status == "active")),
            "subscriptions": s.scalar(select(func.count()).select_from(Subscription)),
            "open_subscriptions": s.scalar(
                select(func.count()).select_from(Subscription).where(Subscription.ended_at.is_(None))
            ),
            "suppressions": s.scalar(select(func.count()).select_from(Suppression)),
        }


def summary_backfill() -> str:
    """Migration 0005's one-pass UPDATE of every subscriber's topic_mask / frequency_mask."""
    import importlib.util

    path = ROOT / "migrations" / "versions" / "0005_subscription_summary.py"
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BACKFILL


# Imports hash each address with this key. The generated people carry bare SHA-256 instead (SQL has no HMAC
# without pgcrypto): stand-ins of the same length and spread, compared only with each other.
BENCH_EMAIL_HASH_KEY = "bench-email-hash-key-0123456789abcdef"


def _generate_postgresql(db, n: int, topic_ids: list[int]) -> None:
    from sqlalchemy import text

    now = "(now() AT TIME ZONE 'utc')"
    status = cases("rd", STATUS_SHARES)
    services = (
        f"CASE WHEN rc < {NO_SERVICES} THEN 0 ELSE 1 + floor((rc - {NO_SERVICES}) / {1 - NO_SERVICES} * 7)::int END"
    )
    subscribers = f"""
        INSERT INTO subscribers (id, email, email_key, email_hash, name, area, audience, services, status,
                                 created_at, subscribed_at, confirmed_at, unsubscribed_at)
        SELECT n, e, e, encode(sha256(convert_to(e, 'UTF8')), 'hex'), 'Reader ' || n,
               {cases("ra", AREA_SHARES)}, {cases("rb", AUDIENCE_SHARES)}, {services}, {status},
               joined, joined,
               CASE WHEN {status} <> 'pending' THEN joined + rf * interval '2 hours' END,
               CASE WHEN {status} IN ('unsubscribed', 'bounced') THEN joined + rf * ({now} - joined) END
        FROM (
            SELECT n, 'p' || n || '@bench.invalid' AS e, random() AS ra, random() AS rb, random() AS rc,
                   random() AS rd, random() AS rf, {now} - random() * interval '1095 days' AS joined
            FROM generate_series(1, :n) AS n
        ) g
    """
    topics = "ARRAY[" + ",".join(str(int(t)) for t in topic_ids) + "]"
    first = cases("rt", FIRST_TOPIC_SHARES, str)
    subscriptions = f"""
        INSERT INTO subscriptions (subscriber_id, topic_id, frequency, source, started_at, ended_at, ended_reason)
        SELECT s.id, ({topics})[1 + (s.first + g.j * s.step) % 5], {cases("g.rq", FREQUENCY_SHARES)}, 'bench',
               s.subscribed_at,
               CASE WHEN s.status = 'unsubscribed' THEN s.unsubscribed_at
                    WHEN s.status = 'bounced' THEN s.unsubscribed_at
                    WHEN g.rx < {ENDED} THEN s.subscribed_at + g.rq * ({now} - s.subscribed_at) END,
               CASE WHEN s.status = 'unsubscribed' THEN 'unsubscribed' WHEN s.status = 'bounced' THEN 'bounced'
                    WHEN g.rx < {ENDED} THEN 'unsubscribed' END
        FROM (
            SELECT id, status, subscribed_at, unsubscribed_at,
                   1 + (random() < 0.40)::int + (random() < 0.15)::int AS k,
                   {first} AS first, 1 + (random() < 0.5)::int AS step
            FROM (SELECT id, status, subscribed_at, unsubscribed_at, random() AS rt FROM subscribers) x
        ) s
        CROSS JOIN LATERAL (
            SELECT j, random() AS rq, random() AS rx FROM generate_series(0, s.k - 1) AS j
        ) g
    """
    suppressions = f"""
        INSERT INTO suppressions (email_hash, reason, created_at)
        SELECT email_hash, CASE WHEN status = 'bounced' THEN 'bounced' WHEN random() < 0.5 THEN 'complained'
                                ELSE 'erased' END, {now}
        FROM subscribers WHERE random() < {SUPPRESSED}
    """
    with db.engine.begin() as conn:
        # Generated rows are consistent by construction: skip the FK triggers while loading.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        for label, sql, params in (
            ("subscribers", subscribers, {"n": n}),
            ("subscriptions", subscriptions, {}),
            ("suppressions", suppressions, {}),
        ):
            t = time.perf_counter()
            rows = conn.execute(text(sql), params).rowcount
            print(f"  {label}: {rows:,} rows in {time.perf_counter() - t:.1f} s", flush=True)
        # Replica mode skipped the trigger that keeps each subscriber's summary of their subscriptions too:
        # fill it in one pass, as migration 0005 does for an existing database.
        t = time.perf_counter()
        rows = conn.execute(text(summary_backfill())).rowcount
        print(f"  subscription summaries: {rows:,} subscribers in {time.perf_counter() - t:.1f} s", flush=True)
        for table in ("subscribers", "subscriptions", "suppressions"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
            )
    t = time.perf_counter()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # The summaries' UPDATE left a dead copy of nearly every subscriber row: rewrite the table, as a
        # database whose summaries grew with its subscriptions (and autovacuum) would not carry double.
        conn.execute(text("VACUUM FULL subscribers"))
        conn.execute(text("VACUUM ANALYZE"))
    print(f"  VACUUM FULL subscribers, VACUUM ANALYZE in {time.perf_counter() - t:.1f} s", flush=True)


def _generate_sqlite(db, n: int, topic_ids: list[int]) -> None:
    import hashlib

    from sqlalchemy import text

    rng = random.Random(20261124)
    now = datetime.now(UTC).replace(tzinfo=None)

    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    subs_sql = text(
        "INSERT INTO subscribers (id, email, email_key, email_hash, name, area, audience, services, status, "
        "created_at, subscribed_at, confirmed_at, unsubscribed_at) VALUES (:id, :e, :e, :h, :name, :area, "
        ":audience, :services, :status, :joined, :joined, :confirmed, :left)"
    )
    open_sql = text(
        "INSERT INTO subscriptions (subscriber_id, topic_id, frequency, source, started_at, ended_at, ended_reason) "
        "VALUES (:s, :t, :f, 'bench', :joined, :ended, :reason)"
    )
    supp_sql = text("INSERT INTO suppressions (email_hash, reason, created_at) VALUES (:h, :reason, :at)")
    chunk = 50_000
    t = time.perf_counter()
    for start in range(1, n + 1, chunk):
        people, subs, supps = [], [], []
        for i in range(start, min(n, start + chunk - 1) + 1):
            e = f"p{i}@bench.invalid"
            joined = now - timedelta(days=1095 * rng.random())
            status = pick(rng.random(), STATUS_SHARES)
            rf = rng.random()
            left = joined + rf * (now - joined) if status in ("unsubscribed", "bounced") else None
            rc = rng.random()
            h = hashlib.sha256(e.encode()).hexdigest()
            people.append(
                {
                    "id": i,
                    "e": e,
                    "h": h,
                    "name": f"Reader {i}",
                    "area": pick(rng.random(), AREA_SHARES),
                    "audience": pick(rng.random(), AUDIENCE_SHARES),
                    "services": 0 if rc < NO_SERVICES else 1 + int((rc - NO_SERVICES) / (1 - NO_SERVICES) * 7),
                    "status": status,
                    "joined": stamp(joined),
                    "confirmed": None if status == "pending" else stamp(joined + rf * timedelta(hours=2)),
                    "left": stamp(left) if left else None,
                }
            )
            k = 1 + (rng.random() < 0.40) + (rng.random() < 0.15)
            first, step = pick(rng.random(), FIRST_TOPIC_SHARES), 1 + (rng.random() < 0.5)
            for j in range(k):
                rq, rx = rng.random(), rng.random()
                ended, reason = None, None
                if status in ("unsubscribed", "bounced"):
                    ended, reason = left, status
                elif rx < ENDED:
                    ended, reason = joined + rq * (now - joined), "unsubscribed"
                subs.append(
                    {
                        "s": i,
                        "t": topic_ids[(first + j * step) % 5],
                        "f": pick(rq, FREQUENCY_SHARES),
                        "joined": stamp(joined),
                        "ended": stamp(ended) if ended else None,
                        "reason": reason,
                    }
                )
            if rng.random() < SUPPRESSED:
                supps.append(
                    {
                        "h": h,
                        "at": stamp(now),
                        "reason": "bounced" if status == "bounced" else rng.choice(["complained", "erased"]),
                    }
                )
        with db.engine.begin() as conn:
            conn.execute(subs_sql, people)
            conn.execute(open_sql, subs)
            if supps:
                conn.execute(supp_sql, supps)
        print(f"  {min(n, start + chunk - 1):,} subscribers ({time.perf_counter() - t:.0f} s)", flush=True)
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


# --- segments and planning -------------------------------------------------------------------------


def time_segments(db, rules_by_name: dict, topic_id: int, repeat: int, kinds=("count", "topic")) -> dict:
    from mailer.audience.segments import audience_size, check_rules, count, segment_audience

    out = {}
    for name, raw in rules_by_name.items():
        row = {}
        for kind in kinds:
            times, size = [], None
            for i in range(repeat + 1):  # the first is a warm-up
                with db.sessions() as s:
                    t = time.perf_counter()
                    rules = check_rules(s, raw)
                    if kind == "count":
                        size = count(s, segment_audience(rules))
                    else:
                        size = audience_size(s, topic_id, rules)
                    ms = (time.perf_counter() - t) * 1000
                if i:
                    times.append(ms)
            row[kind] = {
                "rows": size,
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(pct(times, 0.95), 1),
                "max_ms": round(max(times), 1),
                "_times": times,
            }
        out[name] = row
        print(
            f"  {name:28s} "
            + " | ".join(
                f"{'count' if kind == 'count' else TOPIC} {row[kind]['rows']:>9,}  p50 {row[kind]['p50_ms']:7.1f}  "
                f"p95 {row[kind]['p95_ms']:7.1f}  max {row[kind]['max_ms']:7.1f} ms"
                for kind in kinds
            ),
            flush=True,
        )
    return out


def summarise(timings: dict) -> dict:
    kinds = [kind for kind in ("count", "topic") if kind in next(iter(timings.values()))]
    times = {kind: [t for row in timings.values() for t in row[kind]["_times"]] for kind in kinds}
    slowest = max(((name, kind) for name in timings for kind in kinds), key=lambda nk: timings[nk[0]][nk[1]]["p95_ms"])
    for row in timings.values():
        for kind in kinds:
            row[kind].pop("_times")
    return {
        **{f"{kind}_p95_ms": round(pct(times[kind], 0.95), 1) for kind in kinds},
        "all_p95_ms": round(pct([t for kind in kinds for t in times[kind]], 0.95), 1),
        "slowest": f"{slowest[0]}/{slowest[1]}",
        "per_segment": timings,
    }


def explain(db, rules: dict, kind: str, topic_id: int) -> str:
    from sqlalchemy import func, select, text

    from mailer.audience.segments import check_rules, segment_audience, topic_audience

    with db.sessions() as s:
        rules = check_rules(s, rules)
        query = segment_audience(rules) if kind == "count" else topic_audience(topic_id, rules)
        stmt = select(func.count()).select_from(query.subquery())
        sql = str(stmt.compile(dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True}))
        plan = s.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars().all()
    return sql + "\n" + "\n".join(plan)


def time_plan(db, topic_id: int, rules: dict | None, label: str) -> dict:
    from mailer.audience.segments import check_rules, topic_audience
    from mailer.delivery import dispatch
    from mailer.models import Issue, utcnow

    with db.transaction() as s:
        if rules:
            rules = check_rules(s, rules)
        issue = Issue(
            subject=f"Bench: {label}",
            body="Hello",
            topic_id=topic_id,
            status="sending",
            audience_rules=rules,
            send_requested_at=utcnow(),
        )
        s.add(issue)
        s.flush()
        issue_id = issue.id
    t = time.perf_counter()
    ranges = dispatch.plan_issue(db, issue_id, lambda i: topic_audience(i.topic_id, i.audience_rules), 500)
    seconds = time.perf_counter() - t
    with db.sessions() as s:
        issue = s.get(Issue, issue_id)
        insert_seconds = (issue.planned_at - issue.send_requested_at).total_seconds()
        rows = issue.recipient_count
    with db.transaction() as s:  # leave nothing that looks like a send in progress
        s.get(Issue, issue_id).status = "cancelled"
    print(
        f"  plan {label}: {rows:,} rows in {seconds:.2f} s (INSERT … SELECT {insert_seconds:.2f} s, "
        f"{len(ranges)} batch ranges)",
        flush=True,
    )
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "insert_seconds": round(insert_seconds, 2),
        "ranges": len(ranges),
    }


# --- children: import and export, each measured on its own ----------------------------------------


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed (exit {proc.returncode})")
    lines = proc.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line)
    return json.loads(lines[-1])


def child_export(url: str, spec: str) -> None:
    from mailer.audience.export import export_audience, export_csv
    from mailer.db import Database

    db = Database(url)
    kwargs = json.loads(spec)
    with db.sessions() as s:  # connect and warm the imports, so the baseline includes them
        s.connection()
    baseline = proc_kb("VmRSS")
    t = time.perf_counter()
    rows = size = 0
    for chunk in export_csv(db, export_audience(**kwargs)):
        size += len(chunk.encode())
        rows += chunk.count("\n")
    seconds = time.perf_counter() - t
    print(
        json.dumps(
            {"rows": rows - 1, "bytes": size, "seconds": seconds, "baseline_kb": baseline, "peak_kb": proc_kb("VmHWM")}
        )
    )


def child_import(url: str, path: str, profile: str = "") -> None:
    from mailer.audience.importer import run_import
    from mailer.db import Database

    db = Database(url, email_hash_key=BENCH_EMAIL_HASH_KEY)
    with db.sessions() as s:
        s.connection()
    baseline = proc_kb("VmRSS")
    t = time.perf_counter()
    with open(path, "rb") as f:
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            report = prof.runcall(run_import, db, f, channel="api", filename=Path(path).name)
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
        else:
            report = run_import(db, f, channel="api", filename=Path(path).name)
    seconds = time.perf_counter() - t
    counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int)}
    print(
        json.dumps(
            {
                "seconds": seconds,
                "counts": counts,
                "baseline_kb": baseline,
                "peak_kb": proc_kb("VmHWM"),
                "first_errors": report.errors[:3],
            }
        )
    )


IMPORT_TOPICS = [
    "trust-matters",
    "trust-matters;project-fusion:monthly",
    "get-involved;trust-matters",
    "project-fusion",
    "careers;sustainability:weekly",
    "trust-matters:weekly",
]
IMPORT_AREAS = ["Isle of Wight", "hampshire", "Southampton", "portsmouth", "", ""]
IMPORT_AUDIENCES = ["carer", "patient", "Member of staff", "", "community-group"]
IMPORT_SERVICES = ["community;mental-health", "", "learning-disability", "Mental health services", ""]
IMPORT_DATES = ["2026-01-15", "15/01/2026", "2025-09-30", ""]


def write_csv(path: Path, n: int, prefix: str) -> int:
    """n rows of new people; every 100th is bad (alternately a bad address and an unknown topic)."""
    import csv

    rng = random.Random(n)
    bad = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "topics", "area", "audience", "services", "consent_source", "consent_date"])
        for i in range(n):
            email, topics = f"{prefix}{i}@Import.Bench.example.org", rng.choice(IMPORT_TOPICS)
            if i % 100 == 99:
                bad += 1
                if (i // 100) % 2:
                    email = f"{prefix}{i} at bench.example.org"
                else:
                    topics = "trust-matters;no-such-topic"
            w.writerow(
                [
                    email,
                    f"Reader {prefix}{i}",
                    topics,
                    rng.choice(IMPORT_AREAS),
                    rng.choice(IMPORT_AUDIENCES),
                    rng.choice(IMPORT_SERVICES),
                    "Community event, Newport, January 2026",
                    rng.choice(IMPORT_DATES),
                ]
            )
    return bad


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child-export":
        return child_export(*sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "child-import":
        return child_import(*sys.argv[2:])

    n = int(os.environ.get("BENCH_SUBSCRIBERS", "1000000"))
    import_rows = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))
    profile = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
    work = Path(tempfile.mkdtemp(prefix="mailer-audience-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # so the temporary files go too
    started = time.perf_counter()
    try:
        result = run(n, import_rows, profile, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    load(result, "end")
    print(f"total {result['total_seconds']:.0f} s")
    print(json.dumps(result))


def run(n: int, import_rows: int, profile: bool, work: Path) -> dict:
    from sqlalchemy import select

    from mailer.db import Database
    from mailer.models import Topic

    url, note = resolve_url(work)
    if note:
        print(note, flush=True)
    dialect = url.split(":")[0].split("+")[0]
    repeat = int(os.environ.get("BENCH_REPEAT", "20" if dialect == "postgresql" else "5"))
    result: dict = {"database": dialect, "subscribers": n, "repeat": repeat, "load_1m": {}}
    if note:
        result["note"] = note

    print(
        f"1. segments over {n:,} subscribers ({dialect}; schema dropped and rebuilt){load(result, 'segments')}",
        flush=True,
    )
    t = time.perf_counter()
    rebuild_schema(url)
    db = Database(url)
    result["dataset"] = generate(db, n)
    result["dataset"]["seconds"] = round(time.perf_counter() - t, 1)
    print(f"  data set in {result['dataset']['seconds']:.0f} s: {result['dataset']}", flush=True)
    with db.sessions() as s:
        topic_ids = dict(s.execute(select(Topic.slug, Topic.id)).all())
    topic_id = topic_ids[TOPIC]
    rules = segments(datetime.now(UTC))

    def measure() -> dict:
        print(f"  counts, {repeat} runs each after a warm-up; times include check_rules:", flush=True)
        summary = summarise(time_segments(db, rules, topic_id, repeat))
        print(
            f"  p95 over all: counts {summary['count_p95_ms']:.0f} ms (target < 500 ms), {TOPIC} "
            f"{summary['topic_p95_ms']:.0f} ms, both {summary['all_p95_ms']:.0f} ms; slowest {summary['slowest']}",
            flush=True,
        )
        if dialect == "postgresql":
            name, kind = summary["slowest"].split("/")
            print(f"  EXPLAIN (ANALYZE, BUFFERS) of the slowest, {summary['slowest']}:", flush=True)
            print("    " + explain(db, rules[name], kind, topic_id).replace("\n", "\n    "), flush=True)
        summary["plan_topic"] = time_plan(db, topic_id, None, f"{TOPIC}, everyone")
        summary["plan_segment"] = time_plan(db, topic_id, rules["fusion_in_cities"], f"{TOPIC} + fusion_in_cities")
        return summary

    result["segments"] = measure()
    # The peer: the same counts compiled as before migration 0005 (EXISTS per topic/frequency condition).
    print("  the same counts compiled as before migration 0005 (a correlated EXISTS per topic/frequency rule):")
    with compiled_as_before_0005():
        before = summarise(time_segments(db, rules, topic_id, repeat, kinds=("count",)))
    ratio = before["count_p95_ms"] / max(result["segments"]["count_p95_ms"], 0.1)
    print(
        f"  p95 over all counts: {before['count_p95_ms']:.0f} ms before, {result['segments']['count_p95_ms']:.0f} ms "
        f"with the summary columns ({ratio:.1f}x faster)",
        flush=True,
    )
    result["segments_before_0005"] = {"count_p95_ms": before["count_p95_ms"], "per_segment": before["per_segment"]}
    result["segments"]["count_speedup_vs_before_0005"] = round(ratio, 2)

    print(f"2. export ({dialect}, the data set above), each in a child process{load(result, 'export')}", flush=True)
    exports = {}
    with db.sessions() as s:
        from mailer.audience.export import export_audience
        from mailer.audience.segments import count

        specs = {
            "topic": {"topic_id": topic_id},
            "area": {"rules": {"all": [{"field": "area", "op": "is", "value": "isle-of-wight"}]}},
        }
        expected = {k: count(s, export_audience(**v)) for k, v in specs.items()}
    for key, spec in specs.items():
        r = run_child("child-export", url, json.dumps(spec))
        rate = r["rows"] / r["seconds"]
        exports[key] = {
            "rows": r["rows"],
            "expected": expected[key],
            "mb": round(r["bytes"] / 1e6, 1),
            "seconds": round(r["seconds"], 1),
            "rows_per_s": round(rate),
            "peak_rss_mb": round(r["peak_kb"] / 1024, 1),
            "baseline_rss_mb": round(r["baseline_kb"] / 1024, 1),
        }
        print(
            f"  export {key}: {r['rows']:,} rows (expected {expected[key]:,}), {r['bytes'] / 1e6:.1f} MB in "
            f"{r['seconds']:.1f} s = {rate:,.0f} rows/s; peak RSS {r['peak_kb'] / 1024:.0f} MB "
            f"(after start-up {r['baseline_kb'] / 1024:.0f} MB)",
            flush=True,
        )
    exports["rss_ratio"] = round(exports["topic"]["peak_rss_mb"] / exports["area"]["peak_rss_mb"], 2)
    exports["rows_ratio"] = round(exports["topic"]["rows"] / max(exports["area"]["rows"], 1), 1)
    print(f"  {exports['rows_ratio']}x the rows, {exports['rss_ratio']}x the peak RSS", flush=True)
    result["export"] = exports

    print(
        f"3. import into the same database, after the {n:,} generated people, each in a child process"
        f"{load(result, 'import')}",
        flush=True,
    )
    imports = {}
    small = min(10_000, import_rows)
    runs = [("small", small, "a"), ("large", import_rows, "b")]
    for key, rows, prefix in runs:
        path = work / f"import-{rows}.csv"
        bad = write_csv(path, rows, prefix)
        r = run_child("child-import", url, str(path), "1" if (profile and key == "small") else "")
        c = r["counts"]
        imports[key] = {
            "rows": rows,
            "bad_rows": bad,
            "seconds": round(r["seconds"], 1),
            "rows_per_s": round(rows / r["seconds"]),
            "peak_rss_mb": round(r["peak_kb"] / 1024, 1),
            "baseline_rss_mb": round(r["baseline_kb"] / 1024, 1),
            "counts": c,
        }
        print(
            f"  import {rows:,} rows ({bad} bad): {r['seconds']:.1f} s = {rows / r['seconds']:,.0f} rows/s; "
            f"peak RSS {r['peak_kb'] / 1024:.0f} MB (after start-up {r['baseline_kb'] / 1024:.0f} MB); "
            f"imported {c['imported']:,}, unchanged {c['unchanged']:,}, errors {c['error_count']:,}"
            f"{' e.g. ' + str(r['first_errors'][:2]) if r['first_errors'] else ''}",
            flush=True,
        )
        if key == "large":
            r = run_child("child-import", url, str(path), "")
            c = r["counts"]
            imports["again"] = {
                "rows": rows,
                "seconds": round(r["seconds"], 1),
                "rows_per_s": round(rows / r["seconds"]),
                "peak_rss_mb": round(r["peak_kb"] / 1024, 1),
                "counts": c,
            }
            print(
                f"  the same {rows:,} rows again: {r['seconds']:.1f} s = {rows / r['seconds']:,.0f} rows/s; "
                f"peak RSS {r['peak_kb'] / 1024:.0f} MB; unchanged {c['unchanged']:,}, imported "
                f"{c['imported']:,}, updated {c['updated']:,}, errors {c['error_count']:,}",
                flush=True,
            )
    imports["rss_ratio"] = round(imports["large"]["peak_rss_mb"] / imports["small"]["peak_rss_mb"], 2)
    print(
        f"  peak RSS {imports['large']['rows']:,} rows / {imports['small']['rows']:,} rows: {imports['rss_ratio']}x",
        flush=True,
    )
    result["import"] = imports
    db.dispose()
    return result


if __name__ == "__main__":
    main()
