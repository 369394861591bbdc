"""The Celery tasks that act for the public or the team are adapters too: acting on a queued request, starting the
scheduled issues whose time has come and running a digest each call the room's command (the one the sweeper, the
admin or the CLI also reach), and that command queues the follow-up tasks once its unit of work has committed, never
when it rolls back. And a digest requested while the queue is not answering is neither recorded nor reported as
being sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from conftest import csrf_from
from mailer import tasks
from mailer.accounts import create_token
from mailer.audience import commands as audience_commands
from mailer.audience.inputs import ManageLinkRequest, NewSubscriber, SignUp
from mailer.audience.lookups import parse_in
from mailer.audit import SYSTEM, Actor
from mailer.compose import commands, digests
from mailer.compose.inputs import DigestRunInput
from mailer.compose.issues import schedule_issue
from mailer.compose.updates import create_update, publish_update
from mailer.models import AuditEvent, Issue, PublicRequest, utcnow
from mailer.runtime import runtime
from support.flows import approve_for_sending, issue_input, sign_in, update_input


def parse(model, data):
    """As an adapter parses an input: checked with this database's topics."""
    with runtime().db.sessions() as session:
        return parse_in(session, model, data)


WHO = Actor("user", None, "someone")


def _spy(monkeypatch, module, name: str) -> list[tuple]:
    """Record each call of `module.name` (its positional arguments after the first) and let it run."""
    calls: list[tuple] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def _count(db, model, *where) -> int:
    with db.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


# --- a queued sign-up or link request ---------------------------------------------------------------------------


@pytest.fixture()
def mailed(monkeypatch, db) -> list[tuple]:
    """What the audience commands queue, as (task name, *arguments, requests still waiting as another connection
    sees them): nothing is published, and the count shows whether the unit of work had committed."""
    held: list[tuple] = []

    def hold(task, *args, **_):
        held.append((task.name, *args, _count(db, PublicRequest)))
        return True

    monkeypatch.setattr(tasks, "enqueue", hold)
    return held


def _queued(db, data) -> int:
    with db.transaction() as s:
        if isinstance(data, SignUp):
            return audience_commands.subscribe(s, data)
        return audience_commands.request_manage_link(s, data)


def test_the_act_on_request_task_calls_the_audience_command_and_queues_the_mail_after_its_commit(
    app, db, mailed, monkeypatch
):
    calls = _spy(monkeypatch, audience_commands, "act_on_request")
    request_id = _queued(db, parse(SignUp, {"email": "new@example.org", "topics": ["careers"]}))
    assert mailed == [("mailer.act_on_request", request_id, 1)]
    assert tasks.act_on_request(request_id) == "done"
    assert [args[0] for args in calls] == [request_id]
    # Queued once the request was gone for every other connection: the unit of work had committed.
    [(task, confirmation, waiting)] = mailed[1:]
    assert (task, waiting) == ("mailer.send_confirmation", 0) and confirmation
    assert tasks.act_on_request(request_id) == "already done" and len(mailed) == 2  # a repeated task: nothing more

    with db.transaction() as s:
        person = audience_commands.add_subscriber(
            s,
            parse(
                NewSubscriber,
                {
                    "email": "known@example.org",
                    "subscriptions": ["careers"],
                    "consent": {"source": "test", "collected": True},
                },
            ),
            SYSTEM,
        ).subscriber
    link_request = _queued(db, parse(ManageLinkRequest, {"email": "known@example.org"}))
    assert tasks.act_on_request(link_request) == "done"
    assert mailed[-1] == ("mailer.send_manage_link", person.id, 0)


def test_a_request_acted_on_in_a_unit_of_work_that_rolls_back_queues_nothing_and_stays_waiting(app, db, mailed):
    request_id = _queued(db, parse(SignUp, {"email": "later@example.org", "topics": ["careers"]}))
    mailed.clear()
    with pytest.raises(RuntimeError), db.transaction() as s:
        followup = audience_commands.act_on_request(s, request_id, lambda _address: True)
        assert followup.confirmation and mailed == []  # not yet: nothing has committed
        raise RuntimeError("something after the command failed")
    assert mailed == [] and _count(db, PublicRequest, PublicRequest.id == request_id) == 1
    # The sweeper's way in is the same task body: it takes the request up and queues the mail once committed.
    assert tasks._act_on_request(request_id) == "done"
    assert [(task, waiting) for task, _, waiting in mailed] == [("mailer.send_confirmation", 0)]


# --- beat's schedule ----------------------------------------------------------------------------------------------


@pytest.fixture()
def planned(monkeypatch, db) -> list[tuple]:
    """What the compose commands queue, as (task name, *arguments, the issue's status as another connection sees
    it), held here instead of published."""
    held: list[tuple] = []

    def hold(task, *args, **_):
        with db.sessions() as s:
            held.append((task.name, *args, s.get(Issue, args[0]).status))
        return True

    monkeypatch.setattr(commands, "enqueue", hold)
    return held


def _due_issue(db) -> int:
    with db.transaction() as s:
        issue_id = commands.create_issue(s, issue_input(s, subject="Due", topic="careers", body="B"), WHO).id
        approve_for_sending(s, issue_id)
        schedule_issue(s, issue_id, utcnow() + timedelta(hours=1), WHO)
    with db.transaction() as s:
        s.execute(update(Issue).where(Issue.id == issue_id).values(send_at=utcnow() - timedelta(seconds=1)))
    return issue_id


def test_the_sweep_starts_a_due_issue_through_the_compose_command_and_plans_it_after_the_commit(
    app, db, planned, monkeypatch
):
    issue_id = _due_issue(db)
    calls = _spy(monkeypatch, commands, "start_scheduled")
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args, **kw: True)  # the sweep's own steps: not the point
    report = tasks.sweep()
    assert report["started"] == [issue_id] and len(calls) == 1
    assert planned == [("mailer.plan_issue", issue_id, "sending")]  # queued once "sending" had committed
    assert tasks.sweep()["started"] == [] and len(planned) == 1  # started once however many beats fire


def test_a_start_whose_unit_of_work_rolls_back_queues_nothing_and_the_issue_stays_scheduled(app, db, planned):
    issue_id = _due_issue(db)
    with pytest.raises(RuntimeError), db.transaction() as s:
        assert commands.start_scheduled(s, None) == [issue_id]
        assert planned == []
        raise RuntimeError("something after the command failed")
    assert planned == []
    with db.sessions() as s:
        assert s.get(Issue, issue_id).status == "scheduled"
    assert tasks.sweep()["started"] == [issue_id]
    assert planned == [("mailer.plan_issue", issue_id, "sending")]


# --- digests -------------------------------------------------------------------------------------------------------


def _news(db) -> None:
    with db.transaction() as s:
        audience_commands.add_subscriber(
            s,
            parse(
                NewSubscriber,
                {
                    "email": "weekly@example.org",
                    "subscriptions": ["project-fusion:weekly"],
                    "consent": {"source": "test", "collected": True},
                },
            ),
            SYSTEM,
        )
        update_ = create_update(s, update_input(s, title="Ward move", topic="project-fusion", summary="Agreed."))
        publish_update(s, update_.id, WHO)


def _digest_emails(db) -> list[tuple[int, str]]:
    with db.sessions() as s:
        return list(s.execute(select(Issue.id, Issue.status).where(Issue.digest_run_id.is_not(None))))


def test_the_digest_task_runs_the_compose_command_and_plans_its_emails_after_the_commit(app, db, planned, monkeypatch):
    _news(db)
    planned.clear()  # the update's own as-it-happens email
    calls = _spy(monkeypatch, commands, "run_digest")
    before = _count(db, AuditEvent)
    report = tasks.run_digest_task("weekly")
    assert len(calls) == 1 and calls[0][1] is None  # the command, with no actor: beat's run is no request
    [(email, status)] = _digest_emails(db)
    assert report["emails"] == 1 and status == "sending"
    assert planned == [("mailer.plan_issue", email, "sending")]
    with db.sessions() as s:
        assert list(s.scalars(select(AuditEvent.action).where(AuditEvent.id > before))) == ["digest.run"]
    assert tasks.run_digest_task("weekly")["processed"] == 0  # again in the period: nobody new
    assert planned[1:] == [("mailer.plan_issue", email, "sending")]  # its email is still sending: planned again


def test_a_digest_run_whose_last_unit_of_work_rolls_back_queues_nothing(app, db, planned, monkeypatch):
    _news(db)
    planned.clear()
    real = digests.run_digest

    def failing_at_the_end(db_, frequency, at=None, settings=None, then=None):
        def then_fail(session, report):
            then(session, report)
            raise RuntimeError("the commit that starts the emails failed")

        return real(db_, frequency, at, settings=settings, then=then_fail)

    monkeypatch.setattr(digests, "run_digest", failing_at_the_end)
    with pytest.raises(RuntimeError):
        tasks.run_digest_task("weekly")
    assert planned == []
    [(email, status)] = _digest_emails(db)
    assert status == "draft"  # placed, but not started: the retry (or the sweeper) carries it on
    monkeypatch.setattr(digests, "run_digest", real)
    tasks.run_digest_task("weekly")
    assert planned == [("mailer.plan_issue", email, "sending")]


def test_the_cli_digest_run_reports_the_emails_the_queue_did_not_take(app, db, monkeypatch):
    _news(db)
    monkeypatch.setattr(commands, "enqueue", lambda task, *args: False)
    data = parse(DigestRunInput, {"frequency": "weekly"})
    report, unsent = commands.run_digest(db, data, Actor("system", None, "mailer digests run"), runtime().settings)
    assert unsent == report.emails and len(unsent) == 1


# --- a digest asked for while the queue is down -------------------------------------------------------------------


def _requests(db) -> int:
    return _count(db, AuditEvent, AuditEvent.action == "digest.request")


def test_the_admin_says_the_queue_is_not_answering_and_records_no_request(client, db, monkeypatch):
    monkeypatch.setattr(commands, "enqueue", lambda task, *args: False)
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    for _ in range(2):  # and trying again adds nothing either
        csrf = csrf_from(client.get("/admin/updates").data)
        form = {"csrf_token": csrf, "frequency": "weekly"}
        page = client.post("/admin/digests/run", data=form, follow_redirects=True)
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and "the queue is not answering" in html and 'role="alert"' in html
        assert "is being sent" not in html
    assert _requests(db) == 0

    monkeypatch.setattr(commands, "enqueue", lambda task, *args: True)
    csrf = csrf_from(client.get("/admin/updates").data)
    html = client.post(
        "/admin/digests/run", data={"csrf_token": csrf, "frequency": "weekly"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "is being sent" in html and 'role="alert"' not in html
    assert _requests(db) == 1


def test_the_api_answers_503_and_records_no_request_while_the_queue_is_down(client, db, monkeypatch):
    monkeypatch.setattr(commands, "enqueue", lambda task, *args: False)
    with db.transaction() as s:
        secret = create_token(s, "p", role="publisher")[1]
    headers = {"Authorization": f"Bearer {secret}"}
    for _ in range(2):
        response = client.post("/api/v1/digests/run", json={"frequency": "weekly"}, headers=headers)
        assert response.status_code == 503
    assert _requests(db) == 0
    monkeypatch.setattr(commands, "enqueue", lambda task, *args: True)
    assert client.post("/api/v1/digests/run", json={"frequency": "weekly"}, headers=headers).status_code == 202
    assert _requests(db) == 1
