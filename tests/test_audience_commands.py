"""One door per use case: each audience command driven through every adapter that calls it (an admin page, an
API call, a `mailer` command), with the audit log read back each time; the public's commands, which the person's
consent history records instead of the team's audit log; and the audience's views, which run no query of their
own."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from conftest import csrf_from
from mailer import tasks
from mailer.accounts import create_token
from mailer.cli import main
from mailer.models import AuditEvent, ConsentEvent, Import, Segment, Subscriber, Topic
from support.flows import path_of, sign_in

ROOT = Path(__file__).resolve().parent.parent
HAMPSHIRE = {"all": [{"field": "area", "op": "is", "value": "hampshire"}]}
CSV = "email,topics,consent_source\r\nrow@example.org,careers,Paper form\r\n"


@pytest.fixture()
def queued(monkeypatch) -> list[tuple]:
    """The tasks the commands queue after their commits, held here instead of published."""
    held: list[tuple] = []
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args, **kw: held.append((task.name, *args)) or True)
    return held


@pytest.fixture()
def api(client, db):
    with db.transaction() as s:
        secret = create_token(s, "commands", role="admin")[1]
    headers = {"Authorization": f"Bearer {secret}"}

    def call(method: str, path: str, **kw):
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    return call


def cli(test_env, *args: str):
    result = CliRunner().invoke(main, list(args), env=test_env)
    assert result.exit_code == 0, result.output
    return result.output


def audit(db, action: str) -> list[tuple]:
    """(actor type, actor label, target id, details) of each audit row for `action`, oldest first."""
    with db.sessions() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return [(e.actor_type, e.actor_label, e.target_id, e.details) for e in rows]


def consent(db, email: str | None = None, subscriber_id: int | None = None) -> list[tuple[str, str]]:
    with db.sessions() as s:
        if subscriber_id is None:
            subscriber_id = s.scalar(select(Subscriber.id).where(Subscriber.email_key == email))
        rows = s.scalars(
            select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id).order_by(ConsentEvent.id)
        )
        return [(e.kind, e.channel) for e in rows]


def segment_id(db, name: str) -> int:
    with db.sessions() as s:
        return s.scalar(select(Segment.id).where(Segment.name == name))


def add(api, email: str, area: str = "hampshire") -> dict:
    body = {"email": email, "subscriptions": ["trust-matters"], "area": area}
    response = api("POST", "/subscribers", json=body | {"consent": {"source": "Stall", "collected": True}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# --- the team's commands --------------------------------------------------------------------------------------


def test_saving_a_segment_is_audited_from_the_admin_form_its_json_edit_and_the_api(client, db, api):
    sign_in(client, db, email="editor@hiow.nhs.uk", role="editor")
    form = {
        "csrf_token": csrf_from(client.get("/admin/segments/new").data),
        "name": "Hampshire",
        "match": "all",
        "field-0": "area",
        "op-0": "in",
        "value-0-area": ["hampshire"],
        "action": "save",
    }
    assert client.post("/admin/segments/new", data=form).status_code == 303
    made = segment_id(db, "Hampshire")
    page = client.get(f"/admin/segments/{made}")
    rules_json = '{"any": [{"all": [{"field": "area", "op": "is", "value": "portsmouth"}]}]}'
    edited = client.post(
        f"/admin/segments/{made}",
        data={"csrf_token": csrf_from(page.data), "name": "Portsmouth", "rules_json": rules_json},
    )
    assert edited.status_code == 303
    created = api("POST", "/segments", json={"name": "Everyone in Hampshire", "rules": HAMPSHIRE})
    assert created.status_code == 201, created.get_json()
    changed = api("PUT", f"/segments/{created.get_json()['id']}", json={"description": "For the fair"})
    assert changed.status_code == 200 and changed.get_json()["description"] == "For the fair"

    rows = audit(db, "segment.save")
    assert [(actor, target, details["name"]) for actor, _label, target, details in rows] == [
        ("user", made, "Hampshire"),
        ("user", made, "Portsmouth"),  # the JSON edit of a nested segment, once saved with no audit row
        ("token", created.get_json()["id"], "Everyone in Hampshire"),
        ("token", created.get_json()["id"], "Everyone in Hampshire"),
    ]
    assert rows[0][1] == "editor@hiow.nhs.uk" and rows[2][1].startswith("token commands")


def test_a_refused_segment_writes_neither_the_segment_nor_an_audit_row(client, db, api):
    api("POST", "/segments", json={"name": "Taken", "rules": HAMPSHIRE})
    again = api("POST", "/segments", json={"name": "Taken", "rules": HAMPSHIRE})
    unknown = api(
        "POST", "/segments", json={"name": "Odd", "rules": {"all": [{"field": "topic", "op": "is", "value": "nope"}]}}
    )
    other = api("POST", "/segments", json={"name": "Other", "rules": HAMPSHIRE}).get_json()["id"]
    renamed = api("PUT", f"/segments/{other}", json={"name": "Taken", "description": None, "rules": None})
    assert renamed.status_code == 409 and "Taken" in renamed.get_json()["error"]
    assert again.status_code == 409 and unknown.status_code == 400
    assert "unknown topic 'nope'" in unknown.get_json()["fields"]["rules.all[0].value"]
    assert [details["name"] for *_x, details in audit(db, "segment.save")] == ["Taken", "Other"]


def test_deleting_a_segment_is_audited_from_the_admin_and_the_api(client, db, api):
    first = api("POST", "/segments", json={"name": "First", "rules": HAMPSHIRE}).get_json()["id"]
    second = api("POST", "/segments", json={"name": "Second", "rules": HAMPSHIRE}).get_json()["id"]
    sign_in(client, db, role="editor")
    page = client.get(f"/admin/segments/{first}")
    assert client.post(f"/admin/segments/{first}/delete", data={"csrf_token": csrf_from(page.data)}).status_code == 303
    assert api("DELETE", f"/segments/{second}").status_code == 204
    assert [(actor, details) for actor, _l, _t, details in audit(db, "segment.delete")] == [
        ("user", {"segment": first}),
        ("token", {"segment": second}),
    ]


def test_adding_someone_is_audited_from_the_api_and_the_cli(db, api, test_env, queued):
    added = add(api, "api@example.org")
    out = cli(
        test_env,
        "subscribers",
        "add",
        "cli@example.org",
        "--topic",
        "careers:weekly",
        "--consent-source",
        "Paper form, Ryde",
        "--collected",
        "--area",
        "Isle of Wight",
    )
    assert "added cli@example.org: active" in out
    cli(test_env, "subscribers", "add", "asked@example.org", "--topic", "careers", "--consent-source", "Phone call")

    rows = audit(db, "subscriber.add")
    assert [(actor, label) for actor, label, _t, _d in rows] == [
        ("token", "token commands"),
        ("system", "mailer subscribers add"),
        ("system", "mailer subscribers add"),
    ]
    assert rows[0][2] == added["id"] and all(details == {"created": True} for *_x, details in rows)
    assert consent(db, "cli@example.org") == [("subscribe", "cli")]
    with db.sessions() as s:
        person = s.scalar(select(Subscriber).where(Subscriber.email_key == "cli@example.org"))
        assert (person.area, person.status) == ("isle-of-wight", "active")
    # Consent not collected elsewhere: a confirmation email is queued, after the commit.
    [(task, request_id)] = queued
    assert task == "mailer.send_confirmation" and consent(db, "asked@example.org") == [("subscribe_requested", "cli")]
    assert request_id


def test_the_cli_says_what_is_wrong_and_changes_nothing(db, test_env):
    result = CliRunner().invoke(
        main, ["subscribers", "add", "x@example.org", "--topic", "nope", "--consent-source", "Form"], env=test_env
    )
    assert result.exit_code != 0 and "Unknown topic: nope" in result.output
    result = CliRunner().invoke(main, ["subscribers", "erase", "nobody@example.org", "--yes"], env=test_env)
    assert result.exit_code != 0 and "No subscriber with that address" in result.output
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_erasing_someone_is_audited_from_the_admin_the_api_and_the_cli(client, db, api, test_env):
    by_admin, by_api, by_cli = (add(api, f"{who}@example.org")["id"] for who in ("admin", "api", "cli"))
    sign_in(client, db, email="dpo@hiow.nhs.uk", role="admin")
    page = client.get(f"/admin/subscribers/{by_admin}")
    form = {"csrf_token": csrf_from(page.data), "confirm": "erase"}
    assert client.post(f"/admin/subscribers/{by_admin}/erase", data=form).status_code == 303
    assert api("DELETE", "/subscribers/api@example.org").status_code == 204
    assert "erased cli@example.org" in cli(test_env, "subscribers", "erase", "cli@example.org", "--yes")

    rows = audit(db, "subscriber.erase")
    assert [(actor, details) for actor, _l, _t, details in rows] == [
        ("user", {"subscriber": by_admin}),
        ("token", {"subscriber": by_api}),
        ("system", {"subscriber": by_cli}),
    ]
    for who, channel in ((by_admin, "admin"), (by_api, "api"), (by_cli, "cli")):
        assert consent(db, subscriber_id=who) == [("erase", channel)]


def test_the_team_changing_choices_is_audited_and_the_person_changing_their_own_is_not(app, client, db, api):
    person = add(api, "choices@example.org")["id"]
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    page = client.get(f"/admin/subscribers/{person}")
    form = {
        "csrf_token": csrf_from(page.data),
        "topics": ["trust-matters"],
        "frequency-trust-matters": "weekly",
        "area": "portsmouth",
        "action": "save",
    }
    assert client.post(f"/admin/subscribers/{person}/preferences", data=form).status_code == 303
    assert [(actor, target) for actor, _l, target, _d in audit(db, "subscriber.change")] == [("user", person)]

    links = app.extensions["mailer"].links
    with db.sessions() as s:
        public_id = s.get(Subscriber, person).public_id
    path = path_of(links.manage_url(public_id))
    own = {"csrf_token": csrf_from(client.get(path).data), "topics": ["careers"], "action": "save"}
    assert client.post(path, data=own).status_code == 303
    assert len(audit(db, "subscriber.change")) == 1
    assert consent(db, subscriber_id=person) == [("subscribe", "api"), ("change", "admin"), ("change", "web")]


def test_an_upload_is_audited_and_its_import_queued_from_the_admin_the_api_and_the_cli(
    client, db, api, test_env, queued, tmp_path
):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    form = {"csrf_token": csrf_from(client.get("/admin/import").data), "file": (io.BytesIO(CSV.encode()), "fair.csv")}
    assert client.post("/admin/import", data=form, content_type="multipart/form-data").status_code == 303
    uploaded = api("POST", "/subscribers/import?filename=api.csv", data=CSV.encode(), content_type="text/csv")
    assert uploaded.status_code == 202, uploaded.get_json()
    (tmp_path / "cli.csv").write_text(CSV)
    assert "queued" in cli(test_env, "subscribers", "import", str(tmp_path / "cli.csv"))

    rows = audit(db, "import.upload")
    assert [(actor, details["filename"]) for actor, _l, _t, details in rows] == [
        ("user", "fair.csv"),
        ("token", "api.csv"),
        ("system", "cli.csv"),
    ]
    with db.sessions() as s:
        imports = list(s.scalars(select(Import).order_by(Import.id)))
    assert [i.channel for i in imports] == ["admin", "api", "cli"]
    assert queued == [("mailer.run_import", i.id) for i in imports]
    assert uploaded.get_json()["import"] == imports[1].id

    tasks.run_import_task(imports[2].id)  # what the worker does: the end of the run is audited too
    [(actor, label, target, details)] = audit(db, "import.run")
    assert (actor, label, target, details["imported"]) == ("system", "system", imports[2].id, 1)


def test_a_bad_upload_is_refused_before_anything_is_written(client, db, api, test_env, tmp_path):
    too_long = api(
        "POST", "/subscribers/import?consent_source=" + "x" * 501, data=CSV.encode(), content_type="text/csv"
    )
    assert too_long.status_code == 400 and "consent_source" in too_long.get_json()["fields"]
    (tmp_path / "bad.csv").write_text("name,topics\r\nAnn,careers\r\n")
    result = CliRunner().invoke(main, ["subscribers", "import", str(tmp_path / "bad.csv")], env=test_env)
    assert result.exit_code != 0 and "'email'" in result.output
    assert audit(db, "import.upload") == []


# --- the public's commands ---------------------------------------------------------------------------------------


def test_the_public_commands_are_recorded_as_consent_never_in_the_teams_audit_log(app, client, db, queued):
    form = {
        "csrf_token": csrf_from(client.get("/subscribe").data),
        "email": "me@example.org",
        "topics": ["careers", "trust-matters"],
        "area": "portsmouth",
        "frequency": "immediately",
    }
    assert client.post("/subscribe", data=form).status_code == 303
    [(task, queued_request)] = queued
    assert task == "mailer.act_on_request"
    tasks.act_on_request(queued_request)  # what the worker does with it
    [_, (task, request_id)] = queued
    assert task == "mailer.send_confirmation"

    links = app.extensions["mailer"].links
    with db.sessions() as s:
        person = s.scalar(select(Subscriber).where(Subscriber.email_key == "me@example.org"))
        careers = s.scalar(select(Topic.id).where(Topic.slug == "careers"))
    confirm_path = path_of(links.confirm_url(person.public_id, request_id))
    page = client.get(confirm_path)
    assert client.post(confirm_path, data={"csrf_token": csrf_from(page.data)}).status_code == 200
    leave = path_of(links.unsubscribe_url(person.public_id, careers))
    assert client.post(leave, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    manage = {"csrf_token": csrf_from(client.get("/manage").data), "email": "me@example.org"}
    assert client.post("/manage", data=manage).status_code == 200
    assert queued[-1][0] == "mailer.act_on_request"

    assert consent(db, subscriber_id=person.id) == [
        ("subscribe_requested", "web"),
        ("confirm", "email"),
        ("unsubscribe", "one-click"),
    ]
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 0


# That no view queries the database itself is tests/test_layers.py's (every module of mailer/web).
