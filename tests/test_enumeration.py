"""/subscribe and "email me my link" do the same work whoever the address belongs to, and lose no sign-up.

What a request does is observed where it happens: every SQL statement the app's engine runs, every Redis command
its clients send (the rate limiter's and the broker's) and every task it publishes. The lookups happen later, in
the worker, where their timing tells nobody anything. The figures are in bench/enumeration_bench.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from celery.signals import before_task_publish
from sqlalchemy import event, func, select, update

from conftest import csrf_from, free_port, wait_until
from mailer.audience import requests as public_requests
from mailer.audience.erasure import erase
from mailer.audience.inputs import SignUp
from mailer.audience.lookups import parse_in
from mailer.audience.subscriptions import confirm_subscription, request_subscription, unsubscribe
from mailer.models import ConsentEvent, PublicRequest, Subscriber, Suppression, utcnow
from support.flows import confirm_link, without_nonce

FORM = {"topics": ["trust-matters"], "area": "hampshire", "frequency": "immediately"}


class Observed:
    """Records what the app process does while `watching`: SQL (statement text, parameters aside), Redis
    command names, and tasks published (name and the types of their arguments)."""

    def __init__(self, app, monkeypatch):
        self.watching = False
        self.posts = 0
        self.sql: list[str] = []
        self.redis: list[str] = []
        self.tasks: list[tuple] = []
        event.listen(app.extensions["mailer"].db.engine, "before_cursor_execute", self._statement)
        pack = redis.connection.Connection.pack_command

        def spy(conn, *args):  # passes every command through unchanged
            if self.watching:
                self.redis.append(str(args[0]))
            return pack(conn, *args)

        monkeypatch.setattr(redis.connection.Connection, "pack_command", spy)
        before_task_publish.connect(self._published, weak=False)
        self._engine = app.extensions["mailer"].db.engine

    def _statement(self, _conn, _cursor, statement, *_rest):
        if self.watching:
            self.sql.append(statement)

    def _published(self, sender=None, body=None, **_kwargs):
        if self.watching:
            args = body[0] if isinstance(body, tuple | list) else []
            self.tasks.append((sender, tuple(type(a).__name__ for a in args)))

    def post(self, client, path, data) -> dict:
        self.sql, self.redis, self.tasks = [], [], []
        self.posts += 1
        self.watching = True
        try:
            # Each from its own client address: the per-address rate limits are not what is compared.
            response = client.post(path, data=data, environ_base={"REMOTE_ADDR": f"192.0.2.{self.posts}"})
        finally:
            self.watching = False
        return {
            "status": response.status_code,
            "location": response.headers.get("Location"),
            "body": without_nonce(response),  # the per-response CSP nonce is all that may differ
            "sql": self.sql,
            "redis": self.redis,
            "tasks": self.tasks,
        }

    def close(self):
        before_task_publish.disconnect(self._published)
        event.remove(self._engine, "before_cursor_execute", self._statement)


@pytest.fixture()
def observed(app, monkeypatch):
    watcher = Observed(app, monkeypatch)
    yield watcher
    watcher.close()


def _active(db, address: str) -> int:
    with db.transaction() as s:
        outcome = request_subscription(s, email=address, topic_slugs=["trust-matters"])
        confirm_subscription(s, outcome.request_id)
        return outcome.subscriber_id


def _people_in_every_state(db) -> list[str]:
    """Known addresses in each state that once made the request do more, or less, than for a stranger."""
    _active(db, "active@example.org")
    with db.transaction() as s:  # three confirmation mails this hour: no fourth
        for _ in range(3):
            request_subscription(s, email="capped@example.org", topic_slugs=["careers"])
    complained = _active(db, "complained@example.org")
    left = _active(db, "left@example.org")
    erased = _active(db, "erased@example.org")
    with db.transaction() as s:
        s.add(Suppression(email_hash=s.get(Subscriber, complained).email_hash, reason="complained"))
        unsubscribe(s, left, None)
        erase(s, s.get(Subscriber, erased), channel="admin")
    return [
        "active@example.org",
        "capped@example.org",
        "complained@example.org",
        "left@example.org",
        "erased@example.org",
    ]


def test_subscribe_does_the_same_work_for_a_known_address_as_for_an_unknown_one(client, db, observed):
    known = _people_in_every_state(db)
    csrf = csrf_from(client.get("/subscribe").data)
    observed.post(client, "/subscribe", {"csrf_token": csrf, "email": "warm-up@example.org", **FORM})  # connections

    stranger = observed.post(client, "/subscribe", {"csrf_token": csrf, "email": "stranger@example.org", **FORM})
    for address in known:
        work = observed.post(client, "/subscribe", {"csrf_token": csrf, "email": address, **FORM})
        assert work == stranger, address
    assert stranger["status"] == 303 and stranger["location"].endswith("/subscribe/check-your-email")
    assert stranger["tasks"] == [("mailer.act_on_request", ("int",))]
    assert not any("subscribers" in statement for statement in stranger["sql"])  # no lookup in the request

    # The work is done all the same, by the worker: the stranger is now a pending subscriber.
    with db.transaction() as s:
        waiting = list(s.scalars(select(PublicRequest.id).order_by(PublicRequest.id)))
    for request_id in waiting:
        with db.transaction() as s:
            public_requests.act_on(s, request_id, lambda _address: True)
    with db.sessions() as s:
        assert s.scalar(select(Subscriber.status).where(Subscriber.email_key == "stranger@example.org")) == "pending"
        assert s.scalar(select(func.count()).select_from(PublicRequest)) == 0


def test_email_me_my_link_does_the_same_work_for_a_known_address_as_for_an_unknown_one(client, db, observed, redis_url):
    known = _people_in_every_state(db)
    # One who has had their three links this hour.
    redis.Redis.from_url(redis_url).set("mailer:manage-link:active@example.org", 3, ex=60)
    csrf = csrf_from(client.get("/manage").data)
    observed.post(client, "/manage", {"csrf_token": csrf, "email": "warm-up@example.org"})

    stranger = observed.post(client, "/manage", {"csrf_token": csrf, "email": "stranger@example.org"})
    for address in [*known, "Active@Example.org"]:
        work = observed.post(client, "/manage", {"csrf_token": csrf, "email": address})
        assert work == stranger, address
    assert stranger["status"] == 200 and b"Check your email" in stranger["body"]
    assert stranger["tasks"] == [("mailer.act_on_request", ("int",))]


def test_a_request_is_acted_on_once_however_often_its_task_runs(db):
    with db.transaction() as s:
        sign_up = parse_in(s, SignUp, {"email": "twice@example.org", "topics": ["careers"]})
        request_id = public_requests.queue_subscription(s, sign_up)
    with db.transaction() as s:
        first = public_requests.act_on(s, request_id, lambda _address: True)
    with db.transaction() as s:
        again = public_requests.act_on(s, request_id, lambda _address: True)
    assert first.confirmation is not None and again is None
    with db.sessions() as s:
        kinds = list(s.scalars(select(ConsentEvent.kind)))
    assert kinds == ["subscribe_requested"]


def test_a_sign_up_posted_while_the_broker_is_down_is_not_lost(settings, db, smtp_server, celery_workers):
    from mailer.tasks import sweep
    from mailer.web import create_app

    down = create_app(settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    down.config["TESTING"] = True
    client = down.test_client()
    csrf = csrf_from(client.get("/subscribe").data)
    response = client.post("/subscribe", data={"csrf_token": csrf, "email": "patient@example.org", **FORM})
    assert response.status_code == 303  # the same answer: nothing says the broker is down
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(PublicRequest)) == 1
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0
        # A minute later, with no task to act on it, the sweeper takes it up.
        s.execute(update(PublicRequest).values(created_at=utcnow() - timedelta(minutes=2)))

    create_app(settings)  # the broker is back; beat's sweep runs in this process's runtime
    assert sweep()["public_requests"] == 1
    [mail] = smtp_server.wait_for("patient@example.org")
    assert "/confirm/" in confirm_link(mail)
    with db.sessions() as s:
        person = s.scalar(select(Subscriber).where(Subscriber.email_key == "patient@example.org"))
        assert person.status == "pending"
        assert s.scalar(select(func.count()).select_from(PublicRequest)) == 0
    wait_until(lambda: _confirm_sent(db, "patient@example.org"), message="the confirmation recorded as sent")


def _confirm_sent(db, address: str) -> bool:
    with db.sessions() as s:
        return s.scalar(select(Subscriber.confirm_sent_at).where(Subscriber.email_key == address)) is not None


def test_a_request_that_cannot_be_acted_on_holds_up_neither_the_others_nor_the_rest_of_the_sweep(
    settings, db, monkeypatch
):
    from mailer import tasks
    from mailer.audience import requests as public_requests
    from mailer.web import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    client = app.test_client()
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args, **kw: True)  # as if every task were lost
    for address in ("broken@example.org", "patient@example.org"):
        csrf = csrf_from(client.get("/subscribe").data)
        assert client.post("/subscribe", data={"csrf_token": csrf, "email": address, **FORM}).status_code == 303
    with db.transaction() as s:
        s.execute(update(PublicRequest).values(created_at=utcnow() - timedelta(minutes=2)))
    real = public_requests.request_subscription

    def breaks_on_one(session, **kw):
        if kw["email"] == "broken@example.org":
            raise RuntimeError("a bug that only this request meets")
        return real(session, **kw)

    monkeypatch.setattr(public_requests, "request_subscription", breaks_on_one)
    imports_checked = []
    monkeypatch.setattr(tasks.importer, "stalled_imports", lambda *a, **kw: imports_checked.append(1) or [])

    report = tasks.sweep()
    assert (report["public_requests"], report["public_requests_failed"]) == (2, 1)
    assert imports_checked == [1]  # the steps after it still ran
    with db.sessions() as s:
        assert s.scalar(select(Subscriber.email).where(Subscriber.email_key == "patient@example.org"))
        # The broken one is kept (rolled back whole), for the next sweep once the bug is fixed: never lost.
        [kept] = s.scalars(select(PublicRequest)).all()
        assert kept.payload["email"] == "broken@example.org"
