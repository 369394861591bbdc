"""What /healthz answers: whether this process can work (the database and Redis answer) and whether the work
behind it moves (beat has sent its tasks lately; no queue has tasks waiting that no worker takes).

Status: 503 `unavailable` when the database or Redis does not answer (take this process out of rotation);
200 `degraded` when they do but beat is late or not seen, or a queue is stuck (an operator should look: pages
work, mail waits); 200 `ok` otherwise. With `strict`, degraded is a 503 too (for an uptime monitor).
No personal data: counts and ages only.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from ..config import Operations
from ..db import Database
from . import beacons
from .figures import Machinery, Queue, machinery


@dataclass(frozen=True)
class Health:
    status: str  # ok, degraded, unavailable
    body: dict

    def http_status(self, strict: bool = False) -> int:
        if self.status == "unavailable" or (strict and self.status != "ok"):
            return 503
        return 200


def queue_state(queue: Queue, stuck_after: float) -> str:
    """`stuck` when tasks wait, the oldest for longer than `stuck_after`, and no worker has started one of the
    queue's tasks for as long (a queue that is busy with long tasks still starts one now and then)."""
    if not queue.waiting:
        return "ok"
    known = [s for s in (queue.oldest_seconds, queue.last_started_seconds) if s is not None]
    return "stuck" if known and min(known) > stuck_after else "ok"


def beat_state(found: Machinery, late_after: float) -> str:
    if found.beat_seconds is None:
        return "not seen"
    return "ok" if found.beat_seconds <= late_after else "late"


def service_health(db: Database, redis_url: str, operations: Operations) -> Health:
    checks = {"database": db.ping()}
    body: dict = {"checks": checks}
    try:
        found = machinery(beacons.client(redis_url))
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
        found = None
    if found is not None:
        checks["beat"] = beat_state(found, operations.beat_late_seconds)
        states = {q.name: queue_state(q, operations.queue_stuck_seconds) for q in found.queues}
        stuck = sorted(name for name, state in states.items() if state != "ok")
        checks["queues"] = f"stuck: {', '.join(stuck)}" if stuck else "ok"
        body["beat"] = {"last_sent_seconds_ago": _rounded(found.beat_seconds)}
        body["queues"] = {
            q.name: {
                "state": states[q.name],
                "waiting": q.waiting,
                "oldest_seconds": _rounded(q.oldest_seconds),
                "last_started_seconds_ago": _rounded(q.last_started_seconds),
            }
            for q in found.queues
        }
    if checks["database"] != "ok" or checks["redis"] != "ok":
        status = "unavailable"
    elif any(v != "ok" for v in checks.values()):
        status = "degraded"
    else:
        status = "ok"
    return Health(status, {"status": status, **body})


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
