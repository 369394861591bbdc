"""/healthz: 503 when the database or Redis does not answer; `degraded` (200, or 503 with ?strict=1) when beat is
late or never seen or a queue has tasks no worker takes; beat's and the workers' marks left by real processes."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine

from conftest import free_port, wait_until
from mailer.config import ROOT
from mailer.models import utcnow
from mailer.ops import beacons
from mailer.tasks import enqueue, send_confirmation, sweep
from mailer.web import create_app
from support.private_redis import PrivateRedis


@pytest.fixture()
def private_redis():
    server = PrivateRedis(free_port()).start()
    yield server
    server.stop()


def _client(settings, **changes):
    app = create_app(settings.with_overrides(**changes))
    app.config["TESTING"] = True
    return app.test_client()


def _beat_just_ran(redis_client):
    redis_client.set(beacons.BEAT, repr(utcnow().timestamp()))


def test_healthz_is_503_only_when_the_database_or_redis_does_not_answer(settings):
    down = _client(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    answer = down.get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json()["status"] == "unavailable"
    assert answer.get_json()["checks"] == {"database": "ok", "redis": "error: ConnectionError"}
    assert answer.headers["Cache-Control"] == "no-store"


def test_healthz_is_degraded_until_beat_is_seen_and_then_ok(settings, private_redis):
    client = _client(settings, redis_url=private_redis.url)
    answer = client.get("/healthz")
    assert answer.status_code == 200  # the site works: keep it in rotation
    body = answer.get_json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "redis": "ok", "beat": "not seen", "queues": "ok"}
    assert client.get("/healthz?strict=1").status_code == 503  # but an uptime monitor hears of it

    _beat_just_ran(private_redis.client())
    answer = client.get("/healthz?strict=1")
    assert answer.status_code == 200 and answer.get_json()["status"] == "ok"
    assert answer.get_json()["beat"]["last_sent_seconds_ago"] < 60
    with time_machine.travel(utcnow() + timedelta(minutes=3)):  # HEALTH_BEAT_SECONDS is 120
        late = client.get("/healthz").get_json()
    assert late["status"] == "degraded" and late["checks"]["beat"] == "late"


def test_a_queue_whose_tasks_no_worker_takes_is_stuck(settings, private_redis):
    client = _client(settings, redis_url=private_redis.url)  # no worker on this broker
    _beat_just_ran(private_redis.client())
    assert enqueue(send_confirmation, 1)
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"  # just queued: not stuck yet
    assert body["queues"]["transactional"]["waiting"] == 1
    with time_machine.travel(utcnow() + timedelta(minutes=11)):  # HEALTH_QUEUE_SECONDS is 600
        _beat_just_ran(private_redis.client())
        stuck = client.get("/healthz?strict=1")
    assert stuck.status_code == 503
    assert stuck.get_json()["checks"]["queues"] == "stuck: transactional"
    assert stuck.get_json()["queues"]["transactional"]["state"] == "stuck"
    assert stuck.get_json()["queues"]["bulk"] == {
        "state": "ok",
        "waiting": 0,
        "oldest_seconds": None,
        "last_started_seconds_ago": None,
    }
    # A worker that started one of its tasks a moment ago: busy, not stuck.
    with time_machine.travel(utcnow() + timedelta(minutes=11)):
        private_redis.client().set(beacons.STARTED + "transactional", repr(utcnow().timestamp()))
        _beat_just_ran(private_redis.client())
        assert client.get("/healthz?strict=1").status_code == 200


def test_a_real_beat_marks_that_it_runs(settings, test_env, private_redis, tmp_path):
    env = {**test_env, "REDIS_URL": private_redis.url, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "beat.log", "w")  # noqa: SIM115 - closed below
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "beat", "--schedule", str(tmp_path / "schedule")],
        cwd=ROOT,
        env={**env, "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: private_redis.client().get(beacons.BEAT), 60, message="beat's mark")
        assert beat.poll() is None, (tmp_path / "beat.log").read_text()
    finally:
        beat.terminate()
        beat.wait(20)
        log.close()
    answer = _client(settings, redis_url=private_redis.url).get("/healthz").get_json()
    assert answer["checks"]["beat"] == "ok"
    assert "component=beat" not in (tmp_path / "beat.log").read_text()  # text lines: no such field
    assert " INFO celery.beat: beat: Starting..." in (tmp_path / "beat.log").read_text()  # our format, not Celery's


def test_a_real_worker_marks_the_queue_it_takes_from(settings, celery_workers, redis_url):
    client = _client(settings)
    assert enqueue(sweep)  # on the bulk queue
    started = wait_until(
        lambda: client.get("/healthz").get_json()["queues"]["bulk"]["last_started_seconds_ago"] is not None,
        message="the bulk worker's mark",
    )
    assert started
