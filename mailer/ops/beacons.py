"""Marks that beat and the workers leave in Redis, so that any web process can say whether they are working
(/healthz, /metrics) without asking them:

- beat, when it starts and each time it sends a task (the sweep goes every 30 s): when it last did (`BEAT`);
- a worker, each time it starts a task: when a task was last taken from that queue (`STARTED` + queue);
- every task message, in its headers: when it was published (`PUBLISHED_AT`), so the oldest waiting message
  of a queue tells how long it has waited.

A mark that cannot be written (Redis away) is skipped: it never holds up a task or beat.
"""

from __future__ import annotations

import logging
import os
import time

import redis
from celery.signals import after_task_publish, beat_init, before_task_publish, task_prerun

log = logging.getLogger(__name__)

BEAT = "mailer:ops:beat"
STARTED = "mailer:ops:started:"
PUBLISHED_AT = "mailer_published_at"
# At most one write a second per mark and process: a worker taking many short tasks costs Redis nothing.
EVERY = 1.0

_state = {"beat": False}
_written: dict[str, float] = {}
_clients: dict[tuple[int, str], redis.Redis] = {}


def client(url: str) -> redis.Redis:
    """A Redis client for this process (a forked child makes its own), quick to give up."""
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return _clients[key]


def _mark(key: str) -> None:
    now = time.time()
    if now - _written.get(key, 0.0) < EVERY:
        return
    _written[key] = now
    try:
        from ..runtime import runtime

        client(runtime().settings.redis_url).set(key, repr(now))
    except Exception as exc:  # Redis away or the settings unreadable: the next mark tries again
        log.debug("could not write %s: %s", key, exc)


@beat_init.connect
def _in_beat(**_):
    _state["beat"] = True
    _mark(BEAT)  # started: the sweep, its first task, goes 30 s later


@before_task_publish.connect
def _stamp(headers=None, **_):
    if headers is not None:
        headers.setdefault(PUBLISHED_AT, time.time())


@after_task_publish.connect
def _beat_sent(**_):
    if _state["beat"]:
        _mark(BEAT)


@task_prerun.connect
def _taken(task=None, **_):
    delivery = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    queue = delivery.get("routing_key")
    if queue:
        _mark(STARTED + queue)
