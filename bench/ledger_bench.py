"""How a chunk's results are written to the ledger: one statement per call against one UPDATE per row.

A worker claims 100 rows at a time and records their outcomes in one transaction (delivery/sender.py). Sent rows
were always one UPDATE; temporary failures (`mark_retry`) and refusals (`mark_failed`) each carry their own values
(the server's reply, a backoff), and were written one UPDATE per row. This times, on the same data in the same
run, each way of writing a chunk with per-row values:

- `per_row`: one UPDATE per row (the ledger before issue 14, kept here as the peer);
- `case`: one UPDATE whose SET picks each row's value with `CASE id WHEN … THEN … END`;
- `values`: one UPDATE … FROM a `VALUES` list named by a CTE (`WITH v(id, …) AS (VALUES …)`);
- `ledger`: what `mailer.delivery.ledger` does now: one UPDATE statement executed with every row's parameters
  (the driver's executemany: one pipeline on psycopg, a loop in C in sqlite3).

Each variant takes `BENCH_CHUNKS` (default 200) chunks of `BENCH_CHUNK` rows (default 100; the ledger's claim
size) out of a ledger of `BENCH_ROWS` (default 100,000), puts them in `sending` under a token, then times
`mark_retry` for the chunk in a transaction of its own (as the sender does), then the same for `mark_failed`.
Prints a table and, last, one JSON line. `BENCH_DATABASE_URL=postgresql+psycopg://…` runs it on PostgreSQL (its
public schema is dropped and rebuilt); otherwise a SQLite file in a scratch directory (WAL, as the workers use it).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, case, column, insert, literal, select, text, update, values

from mailer.db import Database
from mailer.delivery import ledger
from mailer.delivery.ledger import MAX_ATTEMPTS, Claimed, backoff
from mailer.models import Delivery, Issue, utcnow
from mailer.models.base import UTCDateTime
from mailer.schema import init_database

TABLE = Delivery.__table__


def _held(ids, token):
    return and_(Delivery.id.in_(ids), Delivery.status == "sending", Delivery.claim_token == token)


def _retry_values(retries, now):
    """Each row's new values, as the ledger computes them: gave up (failed) or back to pending with a backoff."""
    rows = []
    for claim, error in retries:
        if claim.attempts >= MAX_ATTEMPTS:
            rows.append((claim.delivery_id, "failed", f"gave up after {claim.attempts} attempts: {error}", None))
        else:
            rows.append((claim.delivery_id, "pending", error, now + backoff(claim.attempts)))
    return rows


# --- mark_retry, four ways --------------------------------------------------------------------------


def retry_per_row(session, retries, token, now):
    for delivery_id, status, error, next_at in _retry_values(retries, now):
        values_ = {"status": status, "last_error": error, "lease_until": None}
        if next_at is not None:
            values_["next_attempt_at"] = next_at
        session.execute(
            update(Delivery)
            .where(_held([delivery_id], token))
            .values(**values_)
            .execution_options(synchronize_session=False)
        )


def retry_case(session, retries, token, now):
    rows = _retry_values(retries, now)
    ids = [r[0] for r in rows]

    def by_id(index, type_=None, keep=None):
        whens = {
            r[0]: literal(r[index], type_) if type_ is not None else r[index] for r in rows if r[index] is not None
        }
        return case(whens, value=Delivery.id, else_=keep)

    session.execute(
        update(Delivery)
        .where(_held(ids, token))
        .values(
            status=by_id(1),
            last_error=by_id(2),
            next_attempt_at=by_id(3, UTCDateTime(), Delivery.next_attempt_at),
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )


def retry_values(session, retries, token, now):
    rows = _retry_values(retries, now)
    given = (
        values(
            column("id", Delivery.id.type),
            column("status", Delivery.status.type),
            column("error", Delivery.last_error.type),
            column("next_at", UTCDateTime()),
            name="v",
        )
        .data(rows)
        .cte("v")
    )
    session.execute(
        update(TABLE)
        .where(TABLE.c.id == given.c.id, TABLE.c.status == "sending", TABLE.c.claim_token == token)
        .values(
            status=given.c.status,
            last_error=given.c.error,
            next_attempt_at=case((given.c.next_at.is_(None), TABLE.c.next_attempt_at), else_=given.c.next_at),
            lease_until=None,
        )
    )


def retry_ledger(session, retries, token, now):
    ledger.mark_retry(session, retries, token, now)


RETRY = {
    "per_row": retry_per_row,
    "case": retry_case,
    "values": retry_values,
    "ledger": retry_ledger,
}


# --- mark_failed, four ways -------------------------------------------------------------------------


def failed_per_row(session, failures, token):
    for claim, status, error in failures:
        session.execute(
            update(Delivery)
            .where(_held([claim.delivery_id], token))
            .values(status=status, last_error=error, lease_until=None)
            .execution_options(synchronize_session=False)
        )


def failed_case(session, failures, token):
    ids = [c.delivery_id for c, _s, _e in failures]
    session.execute(
        update(Delivery)
        .where(_held(ids, token))
        .values(
            status=case({c.delivery_id: s for c, s, _e in failures}, value=Delivery.id),
            last_error=case({c.delivery_id: e for c, _s, e in failures}, value=Delivery.id),
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )


def failed_values(session, failures, token):
    given = (
        values(
            column("id", Delivery.id.type),
            column("status", Delivery.status.type),
            column("error", Delivery.last_error.type),
            name="v",
        )
        .data([(c.delivery_id, s, e) for c, s, e in failures])
        .cte("v")
    )
    session.execute(
        update(TABLE)
        .where(TABLE.c.id == given.c.id, TABLE.c.status == "sending", TABLE.c.claim_token == token)
        .values(status=given.c.status, last_error=given.c.error, lease_until=None)
    )


def failed_ledger(session, failures, token):
    ledger.mark_failed(session, failures, token)


FAILED = {
    "per_row": failed_per_row,
    "case": failed_case,
    "values": failed_values,
    "ledger": failed_ledger,
}


# --- the run ----------------------------------------------------------------------------------------


def prepare(db: Database, url: str, rows: int) -> int:
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    init_database(url)
    with db.transaction() as s:
        issue = Issue(subject="Ledger bench", body="", topic_id=1, status="sending")
        s.add(issue)
        s.flush()
        for start in range(0, rows, 20000):
            s.execute(
                insert(Delivery),
                [
                    {
                        "issue_id": issue.id,
                        "subscriber_id": i + 1,
                        "status": "pending",
                        "attempts": 1 + i % MAX_ATTEMPTS,
                    }
                    for i in range(start, min(rows, start + 20000))
                ],
            )
        issue_id = issue.id
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return issue_id


def take_chunk(db: Database, issue_id: int, first_id: int, size: int, token: str) -> list[Claimed]:
    """Rows first_id … first_id+size-1 in `sending` under `token`, as claim_batch leaves them."""
    with db.transaction() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.id.between(first_id, first_id + size - 1))
            .values(status="sending", claim_token=token, lease_until=utcnow() + timedelta(minutes=5))
            .execution_options(synchronize_session=False)
        )
        got = s.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.attempts)
            .where(Delivery.id.between(first_id, first_id + size - 1))
            .order_by(Delivery.id)
        ).all()
    return [Claimed(i, sub, attempts, f"r{sub}@bench.example", None) for i, sub, attempts in got]


def check(db: Database, claims: list[Claimed], expected: dict[int, tuple]) -> None:
    """Every variant must leave the same rows: status, error, and a backoff (or the old value) in next_attempt_at."""
    with db.sessions() as s:
        got = {
            row.id: (row.status, row.last_error, row.next_attempt_at is not None, row.lease_until)
            for row in s.execute(
                select(
                    Delivery.id, Delivery.status, Delivery.last_error, Delivery.next_attempt_at, Delivery.lease_until
                ).where(Delivery.id.in_([c.delivery_id for c in claims]))
            )
        }
    assert got == expected, "a variant wrote different values"


def run(db: Database, issue_id: int, chunks: int, size: int) -> dict:
    results: dict[str, dict[str, float]] = {}
    first = 1
    for name in RETRY:
        times_retry, times_failed = [], []
        for n in range(chunks):
            token = f"{name}-{n}"
            claims = take_chunk(db, issue_id, first, size, token)
            retries = [(c, f"451 try later ({c.delivery_id})") for c in claims]
            now = utcnow()
            t0 = time.perf_counter()
            with db.transaction() as s:
                RETRY[name](s, retries, token, now)
            times_retry.append(time.perf_counter() - t0)
            if n == 0:
                check(
                    db,
                    claims,
                    {
                        c.delivery_id: (
                            "failed" if c.attempts >= MAX_ATTEMPTS else "pending",
                            (f"gave up after {c.attempts} attempts: " if c.attempts >= MAX_ATTEMPTS else "") + e,
                            c.attempts < MAX_ATTEMPTS,
                            None,
                        )
                        for c, e in retries
                    },
                )
            token = f"{name}-{n}-failed"
            claims = take_chunk(db, issue_id, first, size, token)
            failures = [
                (c, "bounced" if c.delivery_id % 2 else "failed", f"550 no such user ({c.delivery_id})") for c in claims
            ]
            t0 = time.perf_counter()
            with db.transaction() as s:
                FAILED[name](s, failures, token)
            times_failed.append(time.perf_counter() - t0)
            if n == 0:
                check(
                    db,
                    claims,
                    {c.delivery_id: (s, e, c.attempts < MAX_ATTEMPTS, None) for c, s, e in failures},
                )
            first += size
        results[name] = {
            "mark_retry_ms": round(statistics.median(times_retry) * 1000, 2),
            "mark_failed_ms": round(statistics.median(times_failed) * 1000, 2),
        }
    return results


def main() -> None:
    rows = int(os.environ.get("BENCH_ROWS", "100000"))
    chunks = int(os.environ.get("BENCH_CHUNKS", "200"))
    size = int(os.environ.get("BENCH_CHUNK", "100"))
    rows = max(rows, chunks * size * len(RETRY))
    url = os.environ.get("BENCH_DATABASE_URL")
    work = Path(tempfile.mkdtemp(prefix="mailer-ledger-bench-"))
    try:
        url = url or f"sqlite:///{work / 'bench.db'}"
        db = Database(url)
        issue_id = prepare(db, url, rows)
        results = run(db, issue_id, chunks, size)
        db.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{db.dialect}: {rows:,} ledger rows, {chunks} chunks of {size}, median ms per chunk's transaction")
    print(f"{'variant':<12} {'mark_retry':>11} {'mark_failed':>12}")
    for name, figures in results.items():
        print(f"{name:<12} {figures['mark_retry_ms']:>11} {figures['mark_failed_ms']:>12}")
    print(json.dumps({"database": db.dialect, "rows": rows, "chunks": chunks, "chunk": size, "results": results}))


if __name__ == "__main__":
    main()
