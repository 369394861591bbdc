"""Topics and areas the team manages: created, renamed, described, reordered, retired and restored from the
admin and the API, audited, and followed by the public form, the preference centre, sends, segments and imports."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from conftest import csrf_from, wait_until
from mailer.accounts import create_token
from mailer.audience import commands
from mailer.audience.inputs import TopicInput
from mailer.audience.segments import audience_size, segment_audience
from mailer.audit import SYSTEM
from mailer.errors import Conflict
from mailer.inputs import parse
from mailer.models import MAX_TOPIC_ID, Area, AuditEvent, Subscriber, Subscription, Topic
from mailer.tasks import run_import_task
from support.databases import database_of_its_own
from support.flows import confirm, path_of, sign_in, subscribe

# --- helpers -----------------------------------------------------------------------------------------------


class Api:
    """The JSON API as one token holder sees it."""

    def __init__(self, client, token: str):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def get(self, path):
        return self.client.get(f"/api/v1{path}", headers=self.headers)

    def post(self, path, json=None, **kw):
        return self.client.post(f"/api/v1{path}", json=json, headers=self.headers, **kw)

    def patch(self, path, json=None):
        return self.client.patch(f"/api/v1{path}", json=json, headers=self.headers)


def api_for(client, db, role: str) -> Api:
    with db.transaction() as s:
        return Api(client, create_token(s, f"{role} client", role=role)[1])


@pytest.fixture()
def admin_api(client, db):
    return api_for(client, db, "admin")


def audit_actions(db, target_type: str) -> list[str]:
    with db.sessions() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.target_type == target_type).order_by(AuditEvent.id))
        return [row.action for row in rows]


def offered_on_the_form(client) -> str:
    return client.get("/subscribe").get_data(as_text=True)


def subscriptions_to(db, slug: str) -> list[Subscription]:
    with db.sessions() as s:
        topic = s.scalar(select(Topic).where(Topic.slug == slug))
        return list(s.scalars(select(Subscription).where(Subscription.topic_id == topic.id)))


def topic_named(db, slug: str) -> Topic:
    with db.sessions() as s:
        return s.scalar(select(Topic).where(Topic.slug == slug))


# --- topics, as a comms officer would --------------------------------------------------------------------


def test_a_topic_made_in_the_admin_is_offered_joined_retired_and_restored(client, db, smtp_server, celery_workers):
    sign_in(client, db, role="admin")
    page = client.get("/admin/topics")
    created = client.post(
        "/admin/topics",
        data={
            "csrf_token": csrf_from(page.data),
            "name": "Name consultation",
            "description": "Help us choose the new trust's name.",
        },
    )
    assert created.status_code == 303, created.data
    topic = topic_named(db, "name-consultation")
    assert topic.name == "Name consultation" and topic.retired_at is None
    assert b"Name consultation" in client.get("/admin/topics").data

    form = offered_on_the_form(client)
    assert 'value="name-consultation"' in form and "Help us choose the new trust&#39;s name." in form

    # A member of the public subscribes to it and confirms.
    assert subscribe(client, "sam@example.org", topics=["name-consultation"]).status_code == 303
    [confirmation] = smtp_server.wait_for("sam@example.org")
    assert confirm(client, confirmation).status_code == 200
    [subscription] = subscriptions_to(db, "name-consultation")
    assert subscription.ended_at is None
    with db.sessions() as s:
        assert audience_size(s, topic.id) == 1

    # Retired: gone from the form, nobody to send to, the subscription kept as it was.
    page = client.get("/admin/topics")
    retired = client.post(f"/admin/topics/{topic.id}/retire", data={"csrf_token": csrf_from(page.data)})
    assert retired.status_code == 303
    assert 'value="name-consultation"' not in offered_on_the_form(client)
    assert b"name-consultation" not in client.get("/admin/issues/new").data  # the composer does not offer it
    with db.sessions() as s:
        assert audience_size(s, topic.id) == 0
    [kept] = subscriptions_to(db, "name-consultation")
    assert kept.ended_at is None and kept.id == subscription.id
    refused = subscribe(client, "late@example.org", topics=["name-consultation"])
    assert refused.status_code == 400 and b"retired" in refused.data

    # Restored: offered again and its subscriber back in its audience.
    page = client.get("/admin/topics")
    assert (
        client.post(f"/admin/topics/{topic.id}/restore", data={"csrf_token": csrf_from(page.data)}).status_code == 303
    )
    assert 'value="name-consultation"' in offered_on_the_form(client)
    with db.sessions() as s:
        assert audience_size(s, topic.id) == 1
    assert audit_actions(db, "topic") == ["topic.create", "topic.retire", "topic.restore"]


def test_an_issue_for_a_retired_topic_cannot_be_written_or_sent(client, db, admin_api):
    topic = admin_api.post("/topics", json={"name": "Name consultation"}).get_json()
    issue = admin_api.post(
        "/issues", json={"subject": "Have your say", "body": "# Our name", "topic": "name-consultation"}
    ).get_json()
    for action in ("submit", "approve"):
        assert admin_api.post(f"/issues/{issue['id']}/{action}").status_code == 200
    assert admin_api.post(f"/topics/{topic['id']}/retire").get_json()["retired"] is True

    sent = admin_api.post(f"/issues/{issue['id']}/send")
    assert sent.status_code == 409 and "retired topic" in sent.get_json()["error"]
    assert admin_api.get(f"/issues/{issue['id']}").get_json()["status"] == "approved"
    new = admin_api.post("/issues", json={"subject": "Again", "body": "# Our name", "topic": "name-consultation"})
    assert new.status_code == 400 and "retired" in new.get_json()["fields"]["topic"]
    update = admin_api.post("/updates", json={"title": "Name chosen", "topic": "name-consultation"})
    assert update.status_code == 400 and "retired" in update.get_json()["fields"]["topic"]


def test_the_preference_centre_hides_a_retired_topic_and_keeps_its_subscription(client, db, settings):
    from mailer.audience.subscriptions import confirm_subscription, request_subscription
    from mailer.links import Links

    with db.transaction() as s:
        outcome = request_subscription(s, email="kim@example.org", topic_slugs=["careers", "sustainability"])
        confirm_subscription(s, outcome.request_id)
        commands.retire_topic(s, topic_named(db, "sustainability").id, SYSTEM)
        public_id = s.get(Subscriber, outcome.subscriber_id).public_id
    path = path_of(Links(settings.secret_key, settings.base_url).manage_url(public_id))
    page = client.get(path)
    assert page.status_code == 200
    assert 'value="careers"' in page.get_data(as_text=True)
    assert 'value="sustainability"' not in page.get_data(as_text=True)
    saved = client.post(
        path,
        data={"csrf_token": csrf_from(page.data), "topics": ["careers"], "frequency-careers": "weekly", "area": ""},
    )
    assert saved.status_code in (200, 303), saved.data
    [kept] = subscriptions_to(db, "sustainability")
    assert kept.ended_at is None  # not offered, so not unticked: history, sent nothing
    [careers] = subscriptions_to(db, "careers")
    assert careers.frequency == "weekly"


def test_rename_describe_and_reorder_keep_the_slug_and_are_audited(client, db, admin_api):
    topics = {t["slug"]: t for t in admin_api.get("/topics").get_json()}
    careers = topics["careers"]
    renamed = admin_api.patch(
        f"/topics/{careers['id']}", json={"name": "Jobs and careers", "description": "Work with us.", "position": 1}
    )
    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json() | {"retired_at": None} == {
        "id": careers["id"],
        "slug": "careers",
        "name": "Jobs and careers",
        "description": "Work with us.",
        "position": 1,
        "retired": False,
        "retired_at": None,
    }
    order = [t["slug"] for t in admin_api.get("/topics").get_json()]
    assert order == ["careers", "trust-matters", "project-fusion", "get-involved", "sustainability"]
    assert [t["position"] for t in admin_api.get("/topics").get_json()] == [1, 2, 3, 4, 5]
    form = offered_on_the_form(client)
    assert form.index("Jobs and careers") < form.index("Project Fusion updates")

    # A publisher may rename and move; the same change again records nothing new.
    publisher = api_for(client, db, "publisher")
    assert publisher.patch(f"/topics/{careers['id']}", json={"position": 99}).get_json()["position"] == 5
    assert publisher.patch(f"/topics/{careers['id']}", json={"position": 5}).status_code == 200
    with db.sessions() as s:
        changes = [
            e.details
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "topic.change").order_by(AuditEvent.id))
        ]
    assert changes == [
        {
            "slug": "careers",
            "name": ["Careers", "Jobs and careers"],
            "description": ["Jobs, training and opportunities to work with us.", "Work with us."],
            "position": [4, 1],
        },
        {"slug": "careers", "position": [1, 5]},
    ]


def test_the_admin_moves_a_topic_up_and_renames_it(client, db):
    sign_in(client, db, role="publisher")
    sustainability = topic_named(db, "sustainability")
    page = client.get("/admin/topics")
    moved = client.post(
        f"/admin/topics/{sustainability.id}/move", data={"csrf_token": csrf_from(page.data), "direction": "up"}
    )
    assert moved.status_code == 303
    with db.sessions() as s:
        assert [t.slug for t in s.scalars(select(Topic).order_by(Topic.position))][-2:] == ["sustainability", "careers"]
    bad = client.post(
        f"/admin/topics/{sustainability.id}",
        data={"csrf_token": csrf_from(page.data), "name": "", "description": "x"},
    )
    assert bad.status_code == 400 and b"Enter a name for the topic" in bad.data
    good = client.post(
        f"/admin/topics/{sustainability.id}",
        data={"csrf_token": csrf_from(page.data), "name": "A greener NHS", "description": "x"},
    )
    assert good.status_code == 303 and topic_named(db, "sustainability").name == "A greener NHS"
    # Creating and retiring are an admin's.
    assert client.post("/admin/topics", data={"csrf_token": csrf_from(page.data), "name": "X"}).status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "field", "says"),
    [
        ({"name": ""}, 400, "name", "Enter a name for the topic"),
        ({"name": "   "}, 400, "name", "Enter a name for the topic"),
        ({"name": "x" * 121}, 400, "name", "120 characters or fewer"),
        ({"name": "Fine", "description": "y" * 1001}, 400, "description", "1,000 characters or fewer"),
        ({"name": "Fine", "slug": "Not A Slug"}, 400, "slug", "lower-case letters"),
        ({"name": "Fine", "colour": "red"}, 400, "colour", "Unknown field"),
        ({"name": 5}, 400, "name", "Enter a name"),
        ({"name": "Careers"}, 409, None, "already a topic with the slug 'careers'"),
        ({"name": "New", "slug": "trust-matters"}, 409, None, "already a topic with the slug 'trust-matters'"),
        ({"name": "!!!"}, 409, None, "Give the topic a slug"),
    ],
)
def test_bad_topic_input_is_a_clear_4xx_and_writes_nothing(admin_api, db, body, status, field, says):
    response = admin_api.post("/topics", json=body)
    assert response.status_code == status, response.get_json()
    answer = response.get_json()
    assert says in (answer["fields"][field] if field else answer["error"])
    assert len(admin_api.get("/topics").get_json()) == 5
    assert audit_actions(db, "topic") == []


def test_an_unknown_topic_id_is_a_404_everywhere(admin_api):
    for answer in (
        admin_api.get("/topics/999"),
        admin_api.patch("/topics/999", json={"name": "x"}),
        admin_api.post("/topics/999/retire"),
        admin_api.post("/topics/999/restore"),
        admin_api.get("/topics/2147483648"),
    ):
        assert answer.status_code == 404, answer.get_json()
    assert admin_api.get("/topics/999").get_json()["error"] == "There is no topic 999"


def test_an_editor_reads_topics_a_publisher_renames_only_an_admin_creates_or_retires(client, db):
    editor, publisher = api_for(client, db, "editor"), api_for(client, db, "publisher")
    assert editor.get("/topics").status_code == 200
    assert editor.patch("/topics/1", json={"name": "x"}).status_code == 403
    assert publisher.post("/topics", json={"name": "x"}).status_code == 403
    assert publisher.post("/topics/1/retire").status_code == 403


def test_a_slug_given_is_kept_and_one_made_from_the_name_drops_accents(admin_api):
    made = admin_api.post("/topics", json={"name": "Siân's café news"})
    assert made.status_code == 201 and made.get_json()["slug"] == "sian-s-cafe-news"
    assert made.headers["Location"].endswith(f"/api/v1/topics/{made.get_json()['id']}")
    given = admin_api.post("/topics", json={"name": "Estates", "slug": "estates-2027", "position": 1})
    assert given.get_json()["slug"] == "estates-2027" and given.get_json()["position"] == 1
    renamed = admin_api.patch(f"/topics/{given.get_json()['id']}", json={"name": "Buildings"}).get_json()
    assert renamed["slug"] == "estates-2027"


def test_the_63rd_topic_is_refused_saying_why(admin_api, db):
    with db.transaction() as s:
        for n in range(6, MAX_TOPIC_ID + 1):
            commands.create_topic(s, parse(TopicInput, {"name": f"Topic {n}"}), SYSTEM)
    with db.transaction() as s:
        commands.retire_topic(s, MAX_TOPIC_ID, SYSTEM)  # a retired topic keeps its id
    refused = admin_api.post("/topics", json={"name": "One too many"})
    assert refused.status_code == 409
    assert "at most 62 topics, retired ones included" in refused.get_json()["error"]
    with db.transaction() as s, pytest.raises(Conflict):
        commands.create_topic(s, parse(TopicInput, {"name": "Another"}), SYSTEM)


def test_an_import_into_a_retired_topic_is_a_row_error(client, db):
    publisher = api_for(client, db, "publisher")
    with db.transaction() as s:
        commands.retire_topic(s, topic_named(db, "sustainability").id, SYSTEM)
    body = (
        b"email,topics,area,consent_source\n"
        b"one@example.org,careers,hampshire,Paper form\n"
        b"two@example.org,sustainability,hampshire,Paper form\n"
        b"three@example.org,careers;sustainability,Portsmouth,Paper form\n"
    )
    upload = publisher.post("/subscribers/import", data=body, content_type="text/csv")
    assert upload.status_code == 202, upload.get_json()
    run_import_task(upload.get_json()["id"])  # or a worker took it first: then wait for it to end
    location = upload.headers["Location"].removeprefix("/api/v1")
    report = wait_until(
        lambda: (r := publisher.get(location).get_json())["status"] in ("finished", "failed") and r,
        message="the import to end",
    )
    assert report["status"] == "finished" and report["imported"] == 1
    assert {e["row"]: e["error"] for e in report["errors"]} == {
        3: "Topic sustainability is retired: it takes no new subscriptions",
        4: "Topic sustainability is retired: it takes no new subscriptions",
    }


def test_a_segment_may_still_name_a_retired_topic(admin_api, db):
    from mailer.audience.subscriptions import confirm_subscription, request_subscription

    with db.transaction() as s:
        outcome = request_subscription(s, email="lee@example.org", topic_slugs=["careers"])
        confirm_subscription(s, outcome.request_id)
        commands.retire_topic(s, topic_named(db, "careers").id, SYSTEM)
    rules = {"all": [{"field": "topic", "op": "is", "value": "careers"}]}
    made = admin_api.post("/segments", json={"name": "Once interested in careers", "rules": rules})
    assert made.status_code == 201 and made.get_json()["count"] == 1
    with db.sessions() as s:
        assert len(s.execute(segment_audience(rules)).all()) == 1


# --- areas -----------------------------------------------------------------------------------------------


def test_an_area_is_created_offered_renamed_reordered_retired_and_restored(client, db, admin_api):
    made = admin_api.post("/areas", json={"name": "Winchester"})
    assert made.status_code == 201, made.get_json()
    area = made.get_json()
    assert area["slug"] == "winchester" and area["position"] == 6
    assert '<option value="winchester"' in offered_on_the_form(client)

    moved = admin_api.patch(f"/areas/{area['id']}", json={"name": "Winchester and district", "position": 2})
    assert moved.get_json()["name"] == "Winchester and district" and moved.get_json()["slug"] == "winchester"
    assert [a["slug"] for a in admin_api.get("/areas").get_json()][:3] == ["isle-of-wight", "winchester", "hampshire"]

    # Someone who chose it keeps it after it is retired; the public can no longer choose it.
    with db.transaction() as s:
        from mailer.audience.subscriptions import confirm_subscription, request_subscription

        outcome = request_subscription(
            s, email="ali@example.org", topic_slugs=["careers"], area="Winchester and district"
        )
        confirm_subscription(s, outcome.request_id)
    assert admin_api.post(f"/areas/{area['id']}/retire").get_json()["retired"] is True
    assert '<option value="winchester"' not in offered_on_the_form(client)
    refused = subscribe(client, "new@example.org", topics=["careers"], area="winchester")
    assert refused.status_code == 400 and b"no longer on the list" in refused.data
    with db.sessions() as s:
        assert s.get(Subscriber, outcome.subscriber_id).area == "winchester"
    rules = {"all": [{"field": "area", "op": "is", "value": "winchester"}]}
    counted = admin_api.post("/segments/count", json={"rules": rules})
    assert counted.status_code == 200 and counted.get_json()["count"] == 1

    assert admin_api.post(f"/areas/{area['id']}/restore").get_json()["retired"] is False
    assert '<option value="winchester"' in offered_on_the_form(client)
    assert audit_actions(db, "area") == ["area.create", "area.change", "area.retire", "area.restore"]


@pytest.mark.parametrize(
    ("body", "status", "field", "says"),
    [
        ({"name": ""}, 400, "name", "Enter a name for the area"),
        ({"name": "x" * 121}, 400, "name", "120 characters or fewer"),
        ({"name": "Fine", "slug": "x" * 33}, 400, "slug", "32 characters or fewer"),
        ({"name": "Hampshire"}, 409, None, "already a area with the slug 'hampshire'"),
    ],
)
def test_bad_area_input_is_a_clear_4xx_and_writes_nothing(admin_api, db, body, status, field, says):
    response = admin_api.post("/areas", json=body)
    assert response.status_code == status, response.get_json()
    answer = response.get_json()
    assert says in (answer["fields"][field] if field else answer["error"])
    assert len(admin_api.get("/areas").get_json()) == 5
    assert audit_actions(db, "area") == []


def test_an_unknown_area_id_is_a_404(admin_api):
    assert admin_api.get("/areas/999").status_code == 404
    assert admin_api.patch("/areas/999", json={"name": "x"}).status_code == 404
    assert admin_api.post("/areas/999/retire").status_code == 404


def test_the_admin_adds_and_retires_an_area(client, db):
    sign_in(client, db, role="admin")
    page = client.get("/admin/areas")
    assert page.status_code == 200 and b"Isle of Wight" in page.data
    assert client.post("/admin/areas", data={"csrf_token": csrf_from(page.data), "name": ""}).status_code == 400
    assert client.post("/admin/areas", data={"csrf_token": csrf_from(page.data), "name": "Fareham"}).status_code == 303
    with db.sessions() as s:
        fareham = s.scalar(select(Area).where(Area.slug == "fareham"))
    assert (
        client.post(f"/admin/areas/{fareham.id}/retire", data={"csrf_token": csrf_from(page.data)}).status_code == 303
    )
    assert b"Retired" in client.get("/admin/areas").data
    assert '<option value="fareham"' not in offered_on_the_form(client)


# --- migration 0017 ------------------------------------------------------------------------------------------

MIGRATION_SCHEMA = "managed_lists_0017"


@pytest.fixture()
def own_database(tmp_path):
    with database_of_its_own(tmp_path, MIGRATION_SCHEMA) as url:
        yield url


def test_migration_0017_seeds_the_areas_people_hold_and_goes_down_and_up_again(own_database):
    from alembic import command
    from sqlalchemy import create_engine, text

    from mailer.schema import alembic_config, migrate

    key = "test-email-hash-key-not-for-production-0123456789"
    migrate(own_database, "0016", email_hash_key=key)
    engine = create_engine(own_database)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO topics (id, slug, name, description, position) VALUES (1, 't', 'T', '', 0)"))
        for n, area in enumerate(["portsmouth", "elsewhere", None, "gosport"], start=1):
            conn.execute(
                text(
                    "INSERT INTO subscribers (public_id, email, email_key, email_hash, area, status, created_at) "
                    "VALUES (:p, :e, :e, :h, :a, 'active', :at)"
                ),
                {"p": f"{n:032x}", "e": f"p{n}@example.org", "h": f"{n:064x}", "a": area, "at": datetime(2026, 1, 1)},
            )
    migrate(own_database, "0017", email_hash_key=key)
    with engine.connect() as conn:
        areas = conn.execute(text("SELECT slug, name, retired_at IS NOT NULL FROM areas ORDER BY position")).all()
        retired = conn.execute(text("SELECT retired_at FROM topics")).scalar()
    assert [tuple(a) for a in areas] == [
        ("isle-of-wight", "Isle of Wight", False),
        ("hampshire", "Hampshire", False),
        ("southampton", "Southampton", False),
        ("portsmouth", "Portsmouth", False),
        ("elsewhere", "Somewhere else", False),
        ("gosport", "gosport", True),  # held by someone, never on the list: kept valid, not offered
    ]
    assert retired is None

    command.downgrade(alembic_config(own_database, key), "0016")
    with engine.connect() as conn:
        tables = set(
            conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
                if engine.dialect.name == "sqlite"
                else text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
        )
        assert "areas" not in tables
        assert conn.execute(text("SELECT count(*) FROM subscribers")).scalar() == 4
    migrate(own_database, "0017", email_hash_key=key)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM areas")).scalar() == 6
        # PostgreSQL's sequence starts after the seeded ids: the next area gets an id of its own.
        conn.execute(text("INSERT INTO areas (slug, name, position) VALUES ('fareham', 'Fareham', 7)"))
    engine.dispose()
