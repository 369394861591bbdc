"""Every compose command, through every adapter that offers it (the admin, the API, the CLI): each writes its audit
row, whoever called it, and queues its follow-up task once its unit of work has committed, not before and not
when it fails. And the compose room's views run no queries of their own: they call the room's read functions."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import func, select

from conftest import csrf_from
from mailer.accounts import create_admin, create_token
from mailer.cli import main
from mailer.compose import commands
from mailer.models import AuditEvent, Issue, utcnow
from support.flows import sign_in

ROOT = Path(__file__).resolve().parent.parent
PUBLISHER = "publisher@hiow.nhs.uk"


@pytest.fixture()
def queued(monkeypatch) -> list[tuple]:
    """What the commands enqueue, as (task name, *arguments), instead of publishing it: nothing reaches a worker,
    so each step finds the issue where the last one left it."""
    sent: list[tuple] = []
    monkeypatch.setattr(commands, "enqueue", lambda task, *args: sent.append((task.name, *args)) or True)
    return sent


def _events(db, after: int = 0) -> list[tuple]:
    """(action, actor type, actor label, target type, target id) of the audit rows after the row `after`."""
    with db.sessions() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id))
        return [(e.action, e.actor_type, e.actor_label, e.target_type, e.target_id) for e in rows]


def _last_id(db) -> int:
    with db.sessions() as s:
        return s.scalar(select(func.max(AuditEvent.id))) or 0


NEW = object()  # a target id: the row the call made, whatever its id
SYSTEM = ("system", "system")


class Steps:
    """Runs one adapter call at a time and checks what it left in the audit log and the queue."""

    def __init__(self, db, queued, actor: tuple[str, str]):
        self.db, self.queued, self.actor = db, queued, actor

    def expect(self, call, *audit: tuple, then: list[tuple] = ()):
        """Run `call`; the audit rows it wrote must be `audit`, each (action, target type, target id), by this
        adapter's actor unless a fourth item names another; and it must have queued `then`."""
        before, already = _last_id(self.db), len(self.queued)
        result = call()
        written = _events(self.db, before)
        assert len(written) == len(audit), (written, audit)
        for (action, actor_type, label, target_type, target_id), wanted in zip(written, audit, strict=True):
            name, kind, number, *by = wanted
            assert (action, target_type) == (name, kind), (written, audit)
            assert number is NEW or target_id == number, (written, audit)
            assert (actor_type, label) == (by[0] if by else self.actor), (written, audit)
        assert self.queued[already:] == list(then)
        return result


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 94, 184)).save(out, "PNG")
    return out.getvalue()


def _status(db, issue_id: int) -> str:
    with db.sessions() as s:
        return s.get(Issue, issue_id).status


# --- the admin ------------------------------------------------------------------------------------------------


def _post(client, page: str, path: str, data=None, **kw):
    response = client.post(path, data={"csrf_token": csrf_from(client.get(page).data), **(data or {})}, **kw)
    assert response.status_code in (200, 303), (path, response.status_code, response.data[:500])
    return response


def test_every_compose_command_through_the_admin_writes_its_audit_row(client, db, queued):
    sign_in(client, db, email=PUBLISHER, role="publisher")
    steps = Steps(db, queued, ("user", PUBLISHER))
    form = {"subject": "November", "topic": "careers", "block-0-type": "text", "block-0-markdown": "Hello."}

    created = steps.expect(
        lambda: _post(client, "/admin/issues/new", "/admin/issues/new", form | {"action": "save"}),
        ("issue.create", "issue", NEW),
    )
    issue_id = int(created.headers["Location"].rsplit("/", 1)[1])
    page, edit = f"/admin/issues/{issue_id}", f"/admin/issues/{issue_id}/edit"
    image = {"block-1-type": "image", "block-1-alt": "The hub", "action": "save"}
    steps.expect(
        lambda: _post(
            client,
            edit,
            edit,
            form | image | {"block-1-file": (io.BytesIO(_png()), "hub.png")},
            content_type="multipart/form-data",
        ),
        ("media.upload", "media", NEW),
        ("issue.edit", "issue", issue_id),
    )
    steps.expect(
        lambda: _post(client, page, f"{page}/test", {"to": "me@hiow.nhs.uk"}),
        ("issue.test", "issue", issue_id),
        then=[("mailer.send_test", issue_id, ["me@hiow.nhs.uk"])],
    )
    for action, data in [("submit", {}), ("return", {"note": "Add the date"}), ("submit", {}), ("approve", {})]:
        steps.expect(
            lambda a=action, d=data: _post(client, page, f"{page}/{a}", d), (f"issue.{action}", "issue", issue_id)
        )
    when = (utcnow() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    steps.expect(
        lambda: _post(client, page, f"{page}/schedule", {"send_at": when}), ("issue.schedule", "issue", issue_id)
    )
    steps.expect(lambda: _post(client, page, f"{page}/unschedule"), ("issue.unschedule", "issue", issue_id))
    steps.expect(
        lambda: _post(client, page, f"{page}/send"),
        ("issue.send", "issue", issue_id),
        then=[("mailer.plan_issue", issue_id)],
    )
    steps.expect(lambda: _post(client, page, f"{page}/pause"), ("issue.pause", "issue", issue_id))
    steps.expect(
        lambda: _post(client, page, f"{page}/resume"),
        ("issue.resume", "issue", issue_id),
        then=[("mailer.plan_issue", issue_id)],
    )
    steps.expect(lambda: _post(client, page, f"{page}/cancel"), ("issue.cancel", "issue", issue_id))
    assert _status(db, issue_id) == "cancelled"

    update = {"title": "Ward move agreed", "topic": "project-fusion", "summary": "Agreed.", "body": "More."}
    made = steps.expect(
        lambda: _post(client, "/admin/updates/new", "/admin/updates/new", update), ("update.create", "update", NEW)
    )
    update_page = made.headers["Location"].removeprefix("http://localhost")
    update_id = int(update_page.rsplit("/", 1)[1])
    steps.expect(
        lambda: _post(client, update_page, update_page, update | {"summary": "Agreed today."}),
        ("update.edit", "update", update_id),
    )
    steps.expect(
        lambda: _post(client, update_page, f"{update_page}/publish"),
        ("update.publish", "update", update_id),
        then=[("mailer.plan_issue", issue_id + 1)],
    )
    steps.expect(
        lambda: _post(client, "/admin/updates", "/admin/digests/run", {"frequency": "weekly"}),
        ("digest.request", None, None),
        then=[("mailer.run_digest", "weekly")],
    )


def test_a_refused_admin_command_writes_nothing_and_queues_nothing(client, db, queued):
    sign_in(client, db, email=PUBLISHER, role="publisher")
    form = {"subject": "November", "topic": "careers", "body": "Hello."}
    created = _post(client, "/admin/issues/new", "/admin/issues/new", form)
    issue_id = int(created.headers["Location"].rsplit("/", 1)[1])
    before = _last_id(db)
    page = f"/admin/issues/{issue_id}"
    _post(client, page, f"{page}/send")  # a draft: it must be approved first
    _post(client, page, f"{page}/test", {"to": "not-an-address"})
    _post(client, page, f"{page}/schedule", {"send_at": "2020-01-01T09:00"})
    assert _events(db, before) == [] and queued == []
    assert _status(db, issue_id) == "draft"


# --- the API --------------------------------------------------------------------------------------------------


@pytest.fixture()
def api(client, db):
    with db.transaction() as s:
        owner = create_admin(s, PUBLISHER, "a long enough password", role="publisher")
        secret = create_token(s, "script", owner=owner)[1]
    headers = {"Authorization": f"Bearer {secret}"}

    def call(path: str, json=None):
        response = client.post(f"/api/v1{path}", json=json, headers=headers)
        assert response.status_code in (200, 201, 202), (path, response.get_json())
        return response.get_json()

    return call


def test_every_compose_command_through_the_api_writes_its_audit_row(api, db, queued):
    steps = Steps(db, queued, ("token", f"token script for {PUBLISHER}"))
    issue = steps.expect(
        lambda: api(
            "/issues",
            {
                "subject": "November",
                "topic": "careers",
                "blocks": [{"type": "divider"}, {"type": "text", "markdown": "Hello."}],
            },
        ),
        ("issue.create", "issue", NEW),
    )
    issue_id = issue["id"]
    steps.expect(
        lambda: api(f"/issues/{issue_id}/test", {"to": ["Me@HIOW.nhs.uk"]}),
        ("issue.test", "issue", issue_id),
        then=[("mailer.send_test", issue_id, ["Me@hiow.nhs.uk"])],
    )
    for action in ("submit", "approve"):
        steps.expect(lambda a=action: api(f"/issues/{issue_id}/{a}"), (f"issue.{action}", "issue", issue_id))
    when = (utcnow() + timedelta(days=2)).isoformat()
    scheduled = steps.expect(
        lambda: api(f"/issues/{issue_id}/schedule", {"send_at": when}), ("issue.schedule", "issue", issue_id)
    )
    assert scheduled["status"] == "scheduled" and scheduled["send_at"]
    steps.expect(lambda: api(f"/issues/{issue_id}/unschedule"), ("issue.unschedule", "issue", issue_id))
    steps.expect(
        lambda: api(f"/issues/{issue_id}/send"),
        ("issue.send", "issue", issue_id),
        then=[("mailer.plan_issue", issue_id)],
    )
    steps.expect(lambda: api(f"/issues/{issue_id}/pause"), ("issue.pause", "issue", issue_id))
    steps.expect(
        lambda: api(f"/issues/{issue_id}/resume"),
        ("issue.resume", "issue", issue_id),
        then=[("mailer.plan_issue", issue_id)],
    )
    steps.expect(lambda: api(f"/issues/{issue_id}/cancel"), ("issue.cancel", "issue", issue_id))

    draft = steps.expect(
        lambda: api("/updates", {"title": "Plan", "topic": "careers"}), ("update.create", "update", NEW)
    )
    assert draft["email_issue"] is None
    published = steps.expect(
        lambda: api(f"/updates/{draft['id']}/publish"),
        ("update.publish", "update", draft["id"]),
        then=[("mailer.plan_issue", issue_id + 1)],
    )
    live = steps.expect(
        lambda: api("/updates", {"title": "Plan 2", "topic": "careers", "publish": True}),
        ("update.create", "update", draft["id"] + 1),
        ("update.publish", "update", draft["id"] + 1),
        then=[("mailer.plan_issue", published["email_issue"] + 1)],
    )
    assert live["status"] == "published" and live["email_issue"] == published["email_issue"] + 1
    ran = steps.expect(
        lambda: api("/digests/run", {"frequency": "monthly"}),
        ("digest.request", None, None),
        then=[("mailer.run_digest", "monthly")],
    )
    assert ran["frequency"] == "monthly" and ran["queued"] is True


def test_a_digest_run_the_queue_does_not_take_is_a_503(client, db, monkeypatch):
    monkeypatch.setattr(commands, "enqueue", lambda task, *args: False)
    with db.transaction() as s:
        secret = create_token(s, "p", role="publisher")[1]
    response = client.post(
        "/api/v1/digests/run", json={"frequency": "weekly"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 503 and "try again" in response.get_json()["error"]


def test_a_command_whose_unit_of_work_fails_queues_nothing(db, queued, monkeypatch):
    """after_commit: the follow-up goes with the commit; a unit of work that rolls back drops it."""
    from mailer.audit import Actor
    from support.flows import approve_for_sending, issue_input

    who = Actor("user", None, "someone")
    with db.transaction() as s:
        issue_id = commands.create_issue(s, issue_input(s, subject="Hi", topic="careers", body="B"), who).id
        approve_for_sending(s, issue_id)
    with pytest.raises(RuntimeError), db.transaction() as s:
        commands.send_issue(s, issue_id, who, None)
        assert queued == []  # not yet: the unit of work has not committed
        raise RuntimeError("something after the command failed")
    assert queued == [] and _status(db, issue_id) == "approved"
    with db.transaction() as s:
        commands.send_issue(s, issue_id, who, None)
        assert queued == []
    assert queued == [("mailer.plan_issue", issue_id)]


# --- the CLI --------------------------------------------------------------------------------------------------


def test_every_compose_command_of_the_cli_writes_its_audit_row(test_env, db, queued):
    from mailer.audit import Actor
    from support.flows import approve_for_sending, issue_input

    with db.transaction() as s:
        issue_id = commands.create_issue(
            s, issue_input(s, subject="Hi", topic="careers", body="B"), Actor("user", None, "x")
        ).id
        approve_for_sending(s, issue_id)
        commands.send_issue(s, issue_id, Actor("user", None, "x"), None)
    queued.clear()

    def cli(*args):
        result = CliRunner().invoke(main, list(args), env=test_env)
        assert result.exit_code == 0, result.output
        return result.output

    for action, then in (("pause", []), ("resume", [("mailer.plan_issue", issue_id)]), ("cancel", [])):
        steps = Steps(db, queued, ("system", f"mailer issue {action}"))
        said = steps.expect(
            lambda a=action: cli("issue", a, str(issue_id)), (f"issue.{action}", "issue", issue_id), then=then
        )
        assert f"issue {issue_id} is" in said
    steps = Steps(db, queued, ("system", "mailer digests run"))
    said = steps.expect(
        lambda: cli("digests", "run", "weekly"), ("digest.request", None, None), ("digest.run", None, None, SYSTEM)
    )
    assert "weekly digest" in said
    refused = CliRunner().invoke(main, ["issue", "pause", str(issue_id)], env=test_env)
    assert refused.exit_code != 0 and "Only a sending issue can be paused" in refused.output


# That no view queries the database itself is tests/test_layers.py's (every module of mailer/web).
