"""End-to-end send benchmark: one issue to BENCH_RECIPIENTS people, against the wire's own limit.

Everything real: the database (SQLite file, or BENCH_DATABASE_URL), a redis-server, Celery worker
processes, MJML rendering and SMTP into Postfix's smtp-sink on localhost. In the same run, Postfix's
smtp-source sends as many messages of the same size to the same sink over reused connections: that is the
limit on this machine, and `ratio` is our rate over it. Missing and duplicate recipients are counted from
what the sink wrote (its -D dump through a FIFO, one X-Rcpt-Args line per recipient), not from our ledger.

Environment: BENCH_RECIPIENTS (default 100000), BENCH_DATABASE_URL, BENCH_CONCURRENCY (worker processes,
default: the number of cores), BENCH_SESSIONS (smtp-source sessions, default the same).
Prints progress, then one JSON line last.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
LIMIT_RCPT = b"limit@bench.invalid"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_postfix_tools() -> None:
    if os.path.exists(SINK) and os.path.exists(SOURCE):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Postfix's smtp-sink and smtp-source (Debian package postfix)…", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
            shell=True, check=False,
        )
        subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], env=env, check=False)
    if not (os.path.exists(SINK) and os.path.exists(SOURCE)):
        sys.exit("This benchmark needs Postfix's smtp-sink and smtp-source: sudo apt-get install postfix "
                 "(choose 'No configuration'; no mail server is started).")


class SinkCounter(threading.Thread):
    """Reads the sink's dump FIFO and counts recipients. Opened read-write, so it never sees EOF."""

    def __init__(self, fifo: Path):
        super().__init__(daemon=True)
        self.fd = os.open(fifo, os.O_RDWR)
        self.counts: collections.Counter = collections.Counter()
        self.total = 0
        self.bytes = 0

    def run(self) -> None:
        tag = b"\nX-Rcpt-Args: <"
        tail = b""
        while True:
            data = os.read(self.fd, 1 << 20)
            if not data:
                return
            self.bytes += len(data)
            buf = tail + data
            start = 0
            while True:
                i = buf.find(tag, start)
                if i < 0:
                    break
                j = buf.find(b">", i + len(tag))
                if j < 0:
                    break
                self.counts[buf[i + len(tag) : j]] += 1
                self.total += 1
                start = j
            tail = buf[max(start, len(buf) - 256) :]


def wait_quiet(counter: SinkCounter, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline:
        if counter.total >= expected:
            time.sleep(0.5)
            return
        if counter.total == last:
            still += 1
            if still > 20:
                return
        else:
            last, still = counter.total, 0
        time.sleep(0.1)


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir() if Path(f"/proc/{pid}/task").exists() else []:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


@dataclasses.dataclass
class Rig:
    settings: object
    env: dict
    work: Path
    counter: SinkCounter
    sink_port: int


@contextlib.contextmanager
def bench_rig(prefix: str, database_url: str | None, started: list[subprocess.Popen]):
    """smtp-sink (counted through its dump FIFO) and a redis-server on free ports, in a scratch directory;
    stops them, every process in `started` and removes the directory afterwards, also on SIGTERM."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    os.chmod(work, 0o777)
    fifo = work / "dump.fifo"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)  # the sink drops to user nobody before it opens the dump
    counter = SinkCounter(fifo)
    counter.start()
    sink_port = free_port()
    sink_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen([SINK, *sink_user, "-D", str(fifo), f"127.0.0.1:{sink_port}", "1024"])
    time.sleep(0.3)
    if sink.poll() is not None:
        sys.exit("smtp-sink did not start (see its message above)")

    from mailer.config import load_settings
    from mailer.dev.redis_server import server_args

    redis_port = free_port()
    redis_args = server_args(redis_port, work / "redis")
    redis_args[redis_args.index("--appendonly") + 1] = "no"
    redis_proc = subprocess.Popen(redis_args, stdout=subprocess.DEVNULL)

    env = {
        "DATABASE_URL": database_url or f"sqlite:///{work / 'bench.db'}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "SMTP_URL": f"smtp://127.0.0.1:{sink_port}",
        "BASE_URL": "https://mailer.example.nhs.uk",
        "SECRET_KEY": "bench",
        "MAIL_FROM": "Trust Matters <trust-matters@example.nhs.uk>",
        "VAR_DIR": str(work / "var"),
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    try:
        yield Rig(load_settings(env), env, work, counter, sink_port)
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        for proc in (sink, redis_proc):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    n = int(os.environ.get("BENCH_RECIPIENTS", "100000"))
    cores = os.cpu_count() or 2
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", str(cores)))
    sessions = int(os.environ.get("BENCH_SESSIONS", str(cores)))
    ensure_postfix_tools()
    with bench_rig("mailer-bench-", os.environ.get("BENCH_DATABASE_URL"), STARTED) as rig:
        _workers, result = run(
            n, rig.settings, rig.env, rig.work, rig.counter, rig.sink_port, concurrency, sessions
        )
    print(json.dumps(result))


def prepare_database(settings, n: int) -> None:
    from sqlalchemy import insert, literal, select, text

    from mailer.db import Database
    from mailer.models import Subscriber, Subscription, Topic, email_hash
    from mailer.schema import init_database

    db = Database(settings.database_url)
    key = settings.email_hash_key
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    init_database(settings.database_url)
    with db.transaction() as s:
        topic_id = s.scalar(select(Topic.id).where(Topic.slug == "trust-matters"))
        for start in range(0, n, 20000):
            emails = [f"reader{i:07d}@bench.example" for i in range(start, min(n, start + 20000))]
            s.execute(
                insert(Subscriber),
                [{"email": e, "email_key": e, "email_hash": email_hash(e, key), "status": "active"} for e in emails],
            )
        s.execute(
            insert(Subscription).from_select(
                ["subscriber_id", "topic_id", "source"],
                select(Subscriber.id, literal(topic_id), literal("bench")),
            )
        )
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    db.dispose()


STARTED: list[subprocess.Popen] = []


def counting_worker(queues: str, concurrency: int, renders_log: Path) -> list[str]:
    """The Celery worker of `celery -A worker worker`, with every MJML render its processes make written to
    `renders_log` (one line each: the process id). A send started with its email frozen needs none."""
    shim = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
import worker
import mailer.render.email as email
fd = os.open({str(renders_log)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
mjml2html = email.mjml2html
def counted(*args, **kwargs):
    os.write(fd, f"{{os.getpid()}}\\n".encode())
    return mjml2html(*args, **kwargs)
email.mjml2html = counted
worker.app.worker_main(["worker", "--queues", {queues!r}, "--concurrency", "{concurrency}", "--loglevel", "WARNING",
                        "--without-mingle", "--without-gossip"])
"""
    return [sys.executable, "-c", shim]


def renders_in(renders_log: Path) -> list[str]:
    """The process ids of every MJML render the workers made."""
    return renders_log.read_text().split() if renders_log.exists() else []


def run(n, settings, env, work, counter, sink_port, concurrency, sessions):
    from mailer.audience.lookups import parse_in
    from mailer.compose.inputs import IssueInput
    from mailer.compose.issues import approve_issue, create_issue, request_send, submit_issue
    from mailer.compose.mail import compile_issue
    from mailer.db import Database
    from mailer.models import Issue

    t = time.perf_counter()
    prepare_database(settings, n)
    print(f"database ({settings.database_url.split(':')[0]}): {n:,} subscribers in {time.perf_counter() - t:.1f} s",
          flush=True)

    log = open(work / "worker.log", "w")  # noqa: SIM115 - the process outlives this function's frames
    renders_log = work / "renders.log"
    workers = subprocess.Popen(
        counting_worker("bulk", concurrency, renders_log),
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    STARTED.append(workers)
    from mailer.runtime import Runtime, set_runtime
    from mailer.tasks import configure_celery, enqueue, plan_issue

    set_runtime(Runtime.build(settings))
    configure_celery(settings)
    db = Database(settings.database_url)
    body = "\n\n".join(
        f"## Update {i}\n\nProject Fusion brings community, mental health and learning disability services "
        f"together. Read [the plan, part {i}](https://example.nhs.uk/plan/{i}) and tell us what you think.\n\n"
        "* Community services\n* Mental health services\n* Learning disability services"
        for i in range(40)
    )
    with db.transaction() as s:
        written = {"subject": "Trust Matters: November", "body": body, "topic": "trust-matters"}
        issue = create_issue(s, parse_in(s, IssueInput, written))
        sample = compile_issue(issue, settings).fill(
            {"to": "reader0000000@bench.example", "date": "Mon, 23 Nov 2026 10:00:00 +0000",
             "message_id": "x@y", "list_unsubscribe": "https://mailer.example.nhs.uk/u/" + "x" * 60,
             "unsubscribe_url": "https://mailer.example.nhs.uk/u/" + "x" * 60}
        )
        issue_id = issue.id
    time.sleep(3)  # let the workers finish starting before the clock runs

    peak_total, peak_child = 0, 0
    with db.transaction() as s:
        submit_issue(s, issue_id)
        approve_issue(s, issue_id)
    # As the admin and the API start a send: with the settings, so the email is rendered and frozen here.
    t = time.perf_counter()
    with db.transaction() as s:
        request_send(s, issue_id, settings=settings)
    send_start_ms = (time.perf_counter() - t) * 1000
    start = time.perf_counter()
    enqueue(plan_issue, issue_id)
    status, planned = "sending", None
    progress, progress_at = -1, time.perf_counter()
    while status == "sending":
        time.sleep(0.2)
        if counter.total != progress:
            progress, progress_at = counter.total, time.perf_counter()
        elif time.perf_counter() - progress_at > 120:
            raise SystemExit(f"no message reached the sink for 2 minutes: see {work / 'worker.log'}")
        pids = children(workers.pid)
        sizes = [rss_kb(p) for p in pids]
        peak_total = max(peak_total, rss_kb(workers.pid) + sum(sizes))
        peak_child = max([peak_child, *sizes])
        with db.transaction() as s:
            issue = s.get(Issue, issue_id)
            status = issue.status
            if planned is None and issue.planned_at is not None:
                planned = (issue.planned_at - issue.send_requested_at).total_seconds()
        if time.perf_counter() - start > 1800:
            raise SystemExit("the send did not finish within 30 minutes")
        if workers.poll() is not None:
            log_tail = (work / "worker.log").read_text()[-3000:]  # the scratch folder goes with the run
            raise SystemExit(f"the workers stopped:\n{log_tail}")
    seconds = time.perf_counter() - start
    wait_quiet(counter, n)
    ours = {k: v for k, v in counter.counts.items() if k != LIMIT_RCPT}
    expected = {f"reader{i:07d}@bench.example".encode() for i in range(n)}
    missing = len(expected - set(ours))
    duplicates = sum(v - 1 for v in ours.values() if v > 1)
    rate = n / seconds
    renders = renders_in(renders_log)
    print(f"ours: {n:,} messages ({len(sample) / 1024:.1f} KB each) in {seconds:.1f} s = {rate:,.0f} msg/s; "
          f"planning {planned or 0:.2f} s; missing {missing}, duplicates {duplicates}; starting the send took "
          f"{send_start_ms:.0f} ms; the workers rendered MJML {len(renders)} times in "
          f"{len(set(renders))} processes", flush=True)

    # The wire's limit: the same count and size, smtp-source over reused connections into the same sink.
    before = counter.total
    payload = max(len(sample) - 600, 1000)
    t = time.perf_counter()
    subprocess.run([SOURCE, "-d", "-s", str(sessions), "-m", str(n), "-l", str(payload), "-f",
                    "bench@example.nhs.uk", "-t", LIMIT_RCPT.decode(), f"127.0.0.1:{sink_port}"], check=True)
    limit_seconds = time.perf_counter() - t
    wait_quiet(counter, before + n)
    limit = n / limit_seconds
    print(f"limit: smtp-source {n:,} messages in {limit_seconds:.1f} s = {limit:,.0f} msg/s "
          f"({sessions} sessions)", flush=True)
    print(f"worker memory: peak {peak_total / 1024:.0f} MB over {concurrency} processes and the parent, "
          f"largest process {peak_child / 1024:.0f} MB", flush=True)
    return workers, {
        "recipients": n,
        "seconds": round(seconds, 2),
        "msgs_per_s": round(rate),
        "limit_msgs_per_s": round(limit),
        "ratio": round(rate / limit, 3),
        "missing": missing,
        "duplicates": duplicates,
        "peak_worker_rss_mb": round(peak_total / 1024, 1),
        "plan_seconds": round(planned or 0, 2),
        "send_start_ms": round(send_start_ms, 1),
        "worker_renders": len(renders),
        "message_kb": round(len(sample) / 1024, 1),
        "concurrency": concurrency,
        "database": settings.database_url.split(":")[0].split("+")[0],
    }


if __name__ == "__main__":
    main()
