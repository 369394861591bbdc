"""The audience API end to end: CSV import, one subscriber (add, look up, subject access, erase), segments
and exports, and retention, all against the real database, Flask's test client and, for mail, real workers."""

from __future__ import annotations

import codecs
import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from conftest import wait_until
from mailer.accounts import create_token
from mailer.audience import importer
from mailer.audience.importer import _SeenRows
from mailer.audience.retention import anonymise_ended, delete_unconfirmed
from mailer.audience.subscriptions import request_subscription, unsubscribe
from mailer.audience.suppression import suppress
from mailer.models import (
    Base,
    ConsentEvent,
    Delivery,
    Import,
    Segment,
    Subscriber,
    Subscription,
    Suppression,
    Topic,
    utcnow,
)
from mailer.tasks import run_import_task
from support.flows import api_send, confirm, path_of

# --- helpers -----------------------------------------------------------------------------------------


class Api:
    """The JSON API as one token holder sees it."""

    def __init__(self, client, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path):
        return self.client.get(f"/api/v1{path}", headers=self.headers)

    def post(self, path, json=None, **kw):
        return self.client.post(f"/api/v1{path}", json=json, headers=self.headers, **kw)

    def delete(self, path):
        return self.client.delete(f"/api/v1{path}", headers=self.headers)

    def upload_csv(self, body: str | bytes, content_type: str = "text/csv", query: str = ""):
        data = body.encode() if isinstance(body, str) else body
        return self.post(f"/subscribers/import{query}", data=data, content_type=content_type)

    def import_csv(self, body: str | bytes, content_type: str = "text/csv", query: str = ""):
        """Upload, run the queued import here as a worker would, and answer what polling it then answers."""
        response = self.upload_csv(body, content_type, query)
        if response.status_code != 202:
            return response
        run_import_task(response.get_json()["id"])  # or a worker took it first: then wait for it to end
        location = response.headers["Location"].removeprefix("/api/v1")
        return wait_until(
            lambda: (r := self.get(location)).get_json()["status"] in ("finished", "failed") and r,
            message="the import to end",
        )


def _hashed(db, address: str) -> str:
    """The keyed hash the database keeps for `address` (its EMAIL_HASH_KEY)."""
    from mailer.audience.emails import hash_address

    with db.sessions() as session:
        return hash_address(session, address)


def _api(client, db, role: str) -> Api:
    with db.transaction() as s:
        _row, secret = create_token(s, f"{role} client", role=role)
    return Api(client, secret)


@pytest.fixture()
def admin(client, db):
    return _api(client, db, "admin")


@pytest.fixture()
def publisher(client, db):
    return _api(client, db, "publisher")


def add(api: Api, email: str, *topics, collected: bool = True, **attributes) -> dict:
    """Add someone through the API; topics are slugs or (slug, frequency)."""
    subscriptions = [
        {"topic": t[0], "frequency": t[1]} if isinstance(t, tuple) else {"topic": t}
        for t in (topics or ("trust-matters",))
    ]
    response = api.post(
        "/subscribers",
        json={
            "email": email,
            "subscriptions": subscriptions,
            "consent": {"source": "Stall at Ryde summer fair", "collected": collected},
            **attributes,
        },
    )
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def person(db, email: str) -> Subscriber | None:
    with db.sessions() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email_key == email.lower()))


def person_by_id(db, subscriber_id: int) -> Subscriber | None:
    with db.sessions() as s:
        return s.get(Subscriber, subscriber_id)


def count(db, model, *where) -> int:
    with db.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def open_topics(db, subscriber_id: int) -> dict[str, str]:
    """slug → frequency of someone's open subscriptions."""
    with db.sessions() as s:
        return dict(
            s.execute(
                select(Topic.slug, Subscription.frequency)
                .join(Topic, Topic.id == Subscription.topic_id)
                .where(Subscription.subscriber_id == subscriber_id, Subscription.ended_at.is_(None))
            ).all()
        )


def leave(db, email: str, topic: str | None = None) -> None:
    """Unsubscribe as the person would from a link: one topic, or everything."""
    with db.transaction() as s:
        subscriber = s.scalar(select(Subscriber).where(Subscriber.email_key == email.lower()))
        topic_id = s.scalar(select(Topic.id).where(Topic.slug == topic)) if topic else None
        unsubscribe(s, subscriber.id, topic_id)


def errors_by_row(report: dict) -> dict[int, str]:
    return {e["row"]: e["error"] for e in report["errors"]}


def skips_by_row(report: dict) -> dict[int, str]:
    return {e["row"]: e["reason"] for e in report["skipped_rows"]}


def rows_mentioning(db, text: str) -> list[tuple[str, int, str, object]]:
    """(table, row id, column, value) for every column of every row holding `text` (any case), JSON included."""
    found = []
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for column, value in row._mapping.items():
                    if text.lower() in repr(value).lower():
                        found.append((table.name, row._mapping.get("id"), column, value))
    return found


def parse_csv(response) -> list[list[str]]:
    """The rows of a CSV download, which starts with a byte order mark so Excel reads it as UTF-8."""
    body = response.get_data()
    assert body.startswith(codecs.BOM_UTF8) and response.mimetype_params.get("charset") == "utf-8"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


HEADER = "email,name,topics,area,consent_source,consent_date"


# --- import: bad rows ----------------------------------------------------------------------------------


def test_import_reports_each_bad_row_by_number_and_keeps_the_good_ones(publisher, db):
    huge = "x" * (10 * 1024 * 1024)
    body = "\n".join(
        [
            HEADER,
            "good1@example.org,Good One,trust-matters,,Ryde fair,2026-01-10",  # 2
            "not-an-email,Bad Email,trust-matters,,Ryde fair,",  # 3
            "unknown-topic@example.org,,no-such-topic,,Ryde fair,",  # 4
            "bad-date@example.org,,trust-matters,,Ryde fair,2026-13-45",  # 5
            "GOOD1@example.org,Again,trust-matters,,Ryde fair,",  # 6
            "short@example.org,trust-matters",  # 7
            f"long@example.org,{huge},trust-matters,,Ryde fair,",  # 8
            "good2@example.org,Good Two,careers,,Ryde fair,",  # 9
        ]
    )
    response = publisher.import_csv(body + "\n")
    assert response.status_code == 200, response.get_json()
    report = response.get_json()

    errors = errors_by_row(report)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8]
    assert "correct format" in errors[3]
    assert "Unknown topic: no-such-topic" in errors[4]
    assert "2026-13-45" in errors[5]
    assert errors[6].startswith("Duplicate of row 2")
    assert "2 cells" in errors[7] and "6 columns" in errors[7]
    assert "longer than 64 KB" in errors[8]
    assert report["error_count"] == 6
    assert report["imported"] == 2 and report["skipped"] == 0 and report["rows"] == 8

    for email, name in (("good1@example.org", "Good One"), ("good2@example.org", "Good Two")):
        shown = publisher.get(f"/subscribers/{email}")
        assert shown.status_code == 200
        assert shown.get_json()["status"] == "active" and shown.get_json()["name"] == name
    assert publisher.get("/subscribers/long@example.org").status_code == 404
    assert publisher.get("/subscribers/bad-date@example.org").status_code == 404
    with db.sessions() as s:
        assert sorted(s.scalars(select(Subscriber.email))) == ["good1@example.org", "good2@example.org"]


def test_the_duplicate_check_remembers_every_row_as_its_table_grows():
    """The in-file duplicate table starts at 1,024 slots and doubles at half full: rows seen before and
    after each growth are still found, with the row they were first seen on, whatever their case."""
    seen = _SeenRows()
    for row in range(2, 5002):
        key = seen.key(f"person{row}@example.org")
        assert seen.get(key) is None
        seen.add(key, row)
    for row in (2, 513, 1024, 2049, 5001):
        assert seen.get(seen.key(f"Person{row}@EXAMPLE.org")) == row
    assert seen.get(seen.key("nobody@example.org")) is None
    assert len(seen._keys) == 16384  # 5,000 rows, at most half full


class _Deadlock(Exception):
    sqlstate = "40P01"  # what psycopg's DeadlockDetected carries


@pytest.mark.parametrize("deadlocks", [1, 3])
def test_an_import_batch_that_loses_a_deadlock_is_rolled_back_and_tried_again(db, monkeypatch, deadlocks):
    """PostgreSQL breaks a deadlock by rolling one transaction back; the batch is tried again (three tries
    in all), and only a batch that loses every time fails the import, with nothing of it written."""
    real_load, calls = importer.Known.load, []

    def load(session, addresses):
        calls.append(len(addresses))
        if len(calls) <= deadlocks:
            raise OperationalError("SELECT ...", {}, _Deadlock("deadlock detected"))
        return real_load(session, addresses)

    monkeypatch.setattr(importer.Known, "load", load)
    body = "email,topics,consent_source\nann@example.org,careers,Fair\nbob@example.org,careers,Fair\n"
    succeeds = deadlocks < importer.BATCH_ATTEMPTS
    report = importer.run_import(db, io.BytesIO(body.encode()), channel="api")
    assert report.status == ("finished" if succeeds else "failed")
    if succeeds:
        assert report.imported == 2 and calls == [2] * (deadlocks + 1)
    else:
        assert report.imported == 0 and calls == [2] * importer.BATCH_ATTEMPTS
        assert "Nothing from the file was written" in report.failure
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == (2 if succeeds else 0)


def test_import_handles_a_byte_order_mark_and_windows_line_endings(publisher, db):
    body = (
        "\ufeffEmail,Topics,Consent Source\r\nann@example.org,trust-matters,Event\r\nbob@example.org,careers,Event\r\n"
    )
    report = publisher.import_csv(body.encode("utf-8")).get_json()
    assert report["errors"] == [] and report["imported"] == 2
    assert open_topics(db, person(db, "ann@example.org").id) == {"trust-matters": "immediately"}
    assert open_topics(db, person(db, "bob@example.org").id) == {"careers": "immediately"}


def test_import_reads_quoted_cells_with_commas_and_newlines_and_counts_rows_after_them(publisher, db):
    body = (
        "email,name,topics,consent_source\n"
        'jo@example.org,"Smith, Jo",trust-matters,"Stall, Ryde\nsummer fair"\n'  # 2 (two physical lines)
        'sam@example.org,"Sam\nTwo Lines",trust-matters,Event\n'  # 3
        "not-an-email,,trust-matters,Event\n"  # 4
        "pat@example.org,Pat,trust-matters,Event\n"  # 5
    )
    report = publisher.import_csv(body).get_json()
    assert list(errors_by_row(report)) == [4]
    assert report["imported"] == 3
    assert person(db, "jo@example.org").name == "Smith, Jo"
    assert person(db, "sam@example.org").name == "Sam Two Lines"
    with db.sessions() as s:
        event = s.scalar(select(ConsentEvent).where(ConsentEvent.subscriber_id == person(db, "pat@example.org").id))
    assert event.details["row"] == 5


def test_a_file_saved_as_windows_1252_is_read_as_such(publisher, db):
    """Excel's plain "CSV" on a UK machine saves Windows-1252: bytes that are not UTF-8 and hold no UTF-8."""
    body = "email,name,topics,consent_source\nann@example.org,Ann,trust-matters,Event\n"
    body += "renee@example.org,Renée O’Brien,trust-matters,Café stall – Ryde\ncat@example.org,Cat,trust-matters,Event\n"
    report = publisher.import_csv(body.encode("cp1252")).get_json()
    assert report["errors"] == [] and report["imported"] == 3 and report["encoding"] == "Windows-1252"
    assert person(db, "renee@example.org").name == "Renée O’Brien"
    with db.sessions() as s:
        sources = set(s.scalars(select(ConsentEvent.details["source"].as_string())))
    assert sources == {"Event", "Café stall – Ryde"}


def test_a_utf8_file_with_a_row_that_is_not_reports_that_row_and_imports_the_others(publisher, db):
    """Rows pasted together from two programs: the file is UTF-8 (Siân), so the Latin-1 row is the odd one."""
    body = (
        "email,name,topics,consent_source\nsian@example.org,Siân,trust-matters,Event\n".encode()
        + b"renee@example.org,Ren\xe9e,trust-matters,Event\n"  # 3: Latin-1
        + b"cat@example.org,Cat,trust-matters,Event\n"
    )
    report = publisher.import_csv(body).get_json()
    assert list(errors_by_row(report)) == [3] and "UTF-8" in errors_by_row(report)[3]
    assert report["imported"] == 2 and report["encoding"] == "UTF-8"
    assert person(db, "renee@example.org") is None
    assert person(db, "sian@example.org").name == "Siân" and person(db, "cat@example.org") is not None


@pytest.mark.parametrize(
    "long_cell",
    ["\n".join("y" * 1000 for _ in range(100)), "z" * 70_000 + "\nsecond line"],
    ids=["100-short-lines", "long-first-line"],
)
def test_rows_after_an_overlong_quoted_multiline_cell_keep_their_numbers(publisher, db, long_cell):
    body = (
        "email,name,topics,consent_source\n"
        f'long@example.org,"{long_cell}",trust-matters,Event\n'  # 2: one spreadsheet row, over 64 KB
        "not-an-email,,trust-matters,Event\n"  # 3
        "after@example.org,After,trust-matters,Event\n"  # 4
    )
    report = publisher.import_csv(body).get_json()
    assert sorted(errors_by_row(report)) == [2, 3], report["errors"][:5]
    assert report["imported"] == 1 and person(db, "after@example.org") is not None
    assert person(db, "long@example.org") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("email,topics,consent_source,favourite_colour\na@example.org,careers,Event,red\n", "favourite_colour"),
        ("name,topics,consent_source\nAnn,careers,Event\n", "'email'"),
        ("", "empty"),
    ],
    ids=["unknown-column", "no-email-column", "empty-body"],
)
def test_an_unusable_file_is_400_naming_the_problem_and_writes_nothing(publisher, db, body, message):
    response = publisher.import_csv(body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert count(db, Subscriber) == 0
    assert count(db, Import) == 0
    assert count(db, ConsentEvent) == 0


def test_import_with_another_content_type_is_415(publisher, db):
    response = publisher.import_csv('{"email": "a@example.org"}', content_type="application/json")
    assert response.status_code == 415
    assert count(db, Subscriber) == 0


# --- import: idempotent, refusals, attributes, consent ------------------------------------------------

SAME_FILE = (
    "email,name,topics,area,services,consent_source,consent_date\n"
    "ann@example.org,Ann Example,trust-matters;project-fusion:monthly,Isle of Wight,community,Ryde fair,31/01/2026\n"
    "bob@example.org,,careers,hampshire,,Ryde fair,\n"
    "cat@example.org,Cat,get-involved:weekly,,mental-health;community,Ryde fair,2026-02-01\n"
)


def test_reimporting_the_same_file_changes_nothing(publisher, db):
    first = publisher.import_csv(SAME_FILE).get_json()
    assert first["imported"] == 3 and first["errors"] == []
    subscriptions, events = count(db, Subscription), count(db, ConsentEvent)
    assert (subscriptions, events) == (4, 3)

    again = publisher.import_csv(SAME_FILE).get_json()
    assert (again["imported"], again["updated"], again["unchanged"], again["skipped"]) == (0, 0, 3, 0)
    assert again["errors"] == [] and again["import"] != first["import"]
    assert count(db, Subscriber) == 3
    assert count(db, Subscription) == subscriptions
    assert count(db, ConsentEvent) == events


def test_import_skips_addresses_that_unsubscribed_with_a_reason(publisher, client, db):
    add(publisher, "left@example.org")
    leave(db, "left@example.org")
    clicked = add(publisher, "clicked@example.org")
    links = client.application.extensions["mailer"].links
    with db.transaction() as s:
        public_id = s.get(Subscriber, clicked["id"]).public_id
    one_click = client.post(path_of(links.unsubscribe_url(public_id, None)), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200

    report = publisher.import_csv(
        "email,topics,consent_source\n"
        "left@example.org,trust-matters,Old list\n"
        "Clicked@Example.org,trust-matters,Old list\n"
        "new@example.org,trust-matters,Old list\n"
    ).get_json()
    skips = skips_by_row(report)
    assert sorted(skips) == [2, 3] and report["skipped"] == 2
    assert "unsubscribed" in skips[2] and "unsubscribed" in skips[3]
    assert report["imported"] == 1
    assert person(db, "left@example.org").status == "unsubscribed"
    assert person(db, "clicked@example.org").status == "unsubscribed"
    assert open_topics(db, clicked["id"]) == {}


def test_an_erased_address_stays_out_when_imported_again(admin, db):
    add(admin, "forget-me@example.org", name="Forget Me")
    assert admin.delete("/subscribers/forget-me@example.org").status_code == 204

    report = admin.import_csv("email,name,topics,consent_source\nForget-Me@example.org,Forget Me,careers,List\n")
    assert report.get_json()["imported"] == 0
    assert "erased" in skips_by_row(report.get_json())[2]
    assert person(db, "forget-me@example.org") is None
    with db.sessions() as s:
        statuses = list(
            s.scalars(select(Subscriber.status).where(Subscriber.email_hash == _hashed(db, "forget-me@example.org")))
        )
    assert statuses == ["erased"]
    assert admin.get("/subscribers/forget-me@example.org").status_code == 404


def test_a_hard_bounced_address_is_skipped_on_import(publisher, db):
    added = add(publisher, "bounced@example.org")
    with db.transaction() as s:
        suppress(s, [added["id"]], "bounced", "550 5.1.1 No such user")

    report = publisher.import_csv("email,topics,consent_source\nbounced@example.org,trust-matters,List\n").get_json()
    assert report["skipped"] == 1 and "bounced" in skips_by_row(report)[2]
    assert person(db, "bounced@example.org").status == "bounced"
    assert open_topics(db, added["id"]) == {}


def test_import_does_not_readd_a_topic_someone_left_but_keeps_the_other(publisher, db):
    added = add(publisher, "choosy@example.org", "trust-matters", "careers")
    leave(db, "choosy@example.org", "careers")

    report = publisher.import_csv(
        "email,topics,consent_source\nchoosy@example.org,trust-matters;careers,Old list\n"
    ).get_json()
    assert report["errors"] == [] and report["skipped"] == 0
    assert "careers" in skips_by_row(report)[2] and "unsubscribed" in skips_by_row(report)[2]
    assert open_topics(db, added["id"]) == {"trust-matters": "immediately"}
    assert person(db, "choosy@example.org").status == "active"


def test_import_reads_frequencies_services_area_labels_and_uk_dates(publisher, db):
    report = publisher.import_csv(SAME_FILE).get_json()
    assert report["errors"] == []
    ann = publisher.get("/subscribers/ann@example.org").get_json()
    assert {s["topic"]: s["frequency"] for s in ann["subscriptions"]} == {
        "trust-matters": "immediately",
        "project-fusion": "monthly",
    }
    assert ann["area"] == "isle-of-wight"
    assert ann["services"] == ["community"]
    assert ann["subscribed_at"].startswith("2026-01-31")
    cat = publisher.get("/subscribers/cat@example.org").get_json()
    assert cat["services"] == ["community", "mental-health"]
    assert {s["topic"]: s["frequency"] for s in cat["subscriptions"]} == {"get-involved": "weekly"}


def test_import_records_consent_with_channel_import_id_and_row(admin, db):
    report = admin.import_csv(SAME_FILE + "dan@example.org,,careers,,,Ryde fair,\n").get_json()
    assert report["imported"] == 4
    with db.sessions() as s:
        events = list(s.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))
        record = s.get(Import, report["import"])
    assert [(e.kind, e.channel, e.import_id, e.details["row"]) for e in events] == [
        ("subscribe", "import", report["import"], row) for row in (2, 3, 4, 5)
    ]
    assert events[0].details["source"] == "Ryde fair"
    assert record.status == "finished" and record.channel == "api" and record.counts["imported"] == 4

    export = admin.get("/subscribers/bob@example.org/export").get_json()
    [consent] = export["consent"]
    assert consent["kind"] == "subscribe" and consent["channel"] == "import"
    assert consent["import_id"] == report["import"] and consent["details"]["row"] == 3


# --- one subscriber ------------------------------------------------------------------------------------


def test_adding_with_consent_collected_is_201_active_with_frequencies_and_a_consent_record(publisher):
    response = publisher.post(
        "/subscribers",
        json={
            "email": "Jo.Bloggs@Example.org",
            "name": "Jo Bloggs",
            "area": "portsmouth",
            "subscriptions": [{"topic": "trust-matters"}, {"topic": "careers", "frequency": "weekly"}],
            "consent": {"source": "Paper form, Portsmouth open day", "date": "2026-03-01", "collected": True},
        },
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "active" and body["email"] == "Jo.Bloggs@example.org"
    assert {s["topic"]: s["frequency"] for s in body["subscriptions"]} == {
        "trust-matters": "immediately",
        "careers": "weekly",
    }
    [event] = body["consent"]
    assert event["kind"] == "subscribe" and event["channel"] == "api"
    assert event["details"]["source"] == "Paper form, Portsmouth open day"
    assert event["details"]["api_token"] == "publisher client"
    assert response.headers["Location"].endswith("/api/v1/subscribers/Jo.Bloggs@example.org")


def test_adding_without_collected_consent_sends_a_confirmation_and_waits_for_it(
    publisher, client, db, smtp_server, celery_workers
):
    response = publisher.post(
        "/subscribers",
        json={
            "email": "waiting@example.org",
            "subscriptions": [{"topic": "project-fusion", "frequency": "monthly"}, "get-involved"],
            "consent": {"source": "Asked at reception"},
        },
    )
    assert response.status_code == 201
    assert response.get_json()["status"] == "pending" and response.get_json()["subscriptions"] == []

    [mail] = smtp_server.wait_for("waiting@example.org")
    assert mail.message["Subject"] == "Confirm your subscription"
    assert publisher.get("/subscribers/waiting@example.org").get_json()["status"] == "pending"

    assert confirm(client, mail).status_code == 200
    shown = publisher.get("/subscribers/waiting@example.org").get_json()
    assert shown["status"] == "active"
    assert {s["topic"]: s["frequency"] for s in shown["subscriptions"]} == {
        "project-fusion": "monthly",
        "get-involved": "immediately",
    }
    assert [(e["kind"], e["channel"]) for e in shown["consent"]] == [
        ("subscribe_requested", "api"),
        ("confirm", "email"),
    ]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"consent": None}, "consent", "'consent' is required"),
        ({"colour": "red"}, "colour", "Unknown field(s): colour"),
        ({"subscriptions": [{"topic": "nope"}]}, "subscriptions", "Unknown topic: nope"),
        ({"subscriptions": [{"topic": "careers", "frequency": "daily"}]}, "subscriptions", "Unknown frequency"),
        ({"area": "Narnia"}, "area", "area:"),
    ],
    ids=["missing-consent", "unknown-field", "unknown-topic", "unknown-frequency", "unknown-area"],
)
def test_bad_subscriber_input_is_400_naming_the_field(publisher, db, changes, field, message):
    body = {
        "email": "someone@example.org",
        "subscriptions": [{"topic": "careers"}],
        "consent": {"source": "Form", "collected": True},
        **changes,
    }
    body = {k: v for k, v in body.items() if v is not None}
    response = publisher.post("/subscribers", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert field in response.get_json()["fields"]
    assert count(db, Subscriber) == 0


def test_adding_someone_who_unsubscribed_is_409(publisher, db):
    add(publisher, "left@example.org")
    leave(db, "left@example.org")
    response = publisher.post(
        "/subscribers",
        json={
            "email": "left@example.org",
            "subscriptions": ["trust-matters"],
            "consent": {"source": "Form", "collected": True},
        },
    )
    assert response.status_code == 409 and "unsubscribed" in response.get_json()["error"]
    assert person(db, "left@example.org").status == "unsubscribed"


def test_looking_up_an_unknown_address_is_404(publisher):
    assert publisher.get("/subscribers/nobody@example.org").status_code == 404
    assert publisher.get("/subscribers/not-an-address").status_code == 404


def test_looking_up_ignores_case(publisher):
    added = add(publisher, "mixed.case@example.org")
    shown = publisher.get("/subscribers/MIXED.Case@EXAMPLE.org")
    assert shown.status_code == 200 and shown.get_json()["id"] == added["id"]


def test_subject_access_needs_an_admin_token(publisher):
    add(publisher, "private@example.org")
    response = publisher.get("/subscribers/private@example.org/export")
    assert response.status_code == 403


def test_subject_access_holds_every_consent_event_subscription_and_email_sent(admin, db):
    added = add(admin, "sar@example.org", "trust-matters", "careers", name="Sar Person")
    add(admin, "sar@example.org", "project-fusion")  # a change: another topic
    leave(db, "sar@example.org", "careers")
    issue = admin.post("/issues", json={"subject": "November news", "body": "Hello", "topic": "trust-matters"})
    issue_id = issue.get_json()["id"]
    with db.transaction() as s:
        s.add(Delivery(issue_id=issue_id, subscriber_id=added["id"], status="sent", attempts=1, sent_at=utcnow()))

    response = admin.get("/subscribers/sar@example.org/export")
    assert response.status_code == 200
    export = response.get_json()
    with db.sessions() as s:
        stored = [
            (e.id, e.kind, e.channel)
            for e in s.scalars(
                select(ConsentEvent).where(ConsentEvent.subscriber_id == added["id"]).order_by(ConsentEvent.id)
            )
        ]
    assert [(e["id"], e["kind"], e["channel"]) for e in export["consent"]] == stored
    assert [kind for _id, kind, _channel in stored] == ["subscribe", "change", "unsubscribe"]
    subscriptions = {s["topic"]: s for s in export["subscriptions"]}
    assert set(subscriptions) == {"trust-matters", "careers", "project-fusion"}
    assert subscriptions["careers"]["ended_at"] and subscriptions["careers"]["ended_reason"] == "unsubscribed"
    assert subscriptions["trust-matters"]["ended_at"] is None
    [sent] = export["emails_sent"]
    assert sent["issue"] == issue_id and sent["subject"] == "November news" and sent["status"] == "sent"
    assert export["name"] == "Sar Person" and export["email"] == "sar@example.org"


def test_erasing_removes_the_person_keeps_a_hash_and_the_ledger(admin, publisher, db):
    added = add(admin, "erase@example.org", "trust-matters", name="Erin Erase", area="hampshire")
    issue_id = admin.post("/issues", json={"subject": "Hi", "body": "Text", "topic": "trust-matters"}).get_json()["id"]
    with db.transaction() as s:
        s.add(Delivery(issue_id=issue_id, subscriber_id=added["id"], status="sent", attempts=1, sent_at=utcnow()))

    assert publisher.delete("/subscribers/erase@example.org").status_code == 403
    response = admin.delete("/subscribers/erase@example.org")
    assert response.status_code == 204

    row = person_by_id(db, added["id"])
    assert row.email is None and row.email_key is None and row.name is None and row.area is None
    assert row.status == "erased" and row.anonymised_at is not None
    with db.sessions() as s:
        [suppression] = s.scalars(select(Suppression))
    assert suppression.reason == "erased" and suppression.email_hash == _hashed(db, "erase@example.org")
    assert count(db, Delivery, Delivery.subscriber_id == added["id"]) == 1
    assert open_topics(db, added["id"]) == {}
    assert admin.get("/subscribers/erase@example.org").status_code == 404
    assert admin.delete("/subscribers/erase@example.org").status_code == 404


def test_erasing_leaves_the_address_nowhere_in_the_database(admin, db, smtp_server, celery_workers):
    address = "refused.reader@example.org"
    add(admin, address, "trust-matters", name="Rita Refused")
    # Real servers often name the address in a refusal (Postfix: "<addr>: Recipient address rejected").
    smtp_server.refuse(address, f"550 5.1.1 <{address}>: Recipient address rejected: User unknown")
    issue_id = admin.post("/issues", json={"subject": "Hi", "body": "Text", "topic": "trust-matters"}).get_json()["id"]
    assert api_send(admin.post, issue_id).status_code == 202
    wait_until(lambda: admin.get(f"/issues/{issue_id}").get_json()["status"] == "sent", message="issue to be sent")
    assert person(db, address).status == "bounced"

    assert admin.delete(f"/subscribers/{address}").status_code == 204
    assert rows_mentioning(db, "Rita Refused") == []
    assert rows_mentioning(db, address) == []


# --- segments --------------------------------------------------------------------------------------------

HAMPSHIRE_READERS = {
    "all": [
        {"field": "area", "op": "is", "value": "hampshire"},
        {"field": "topic", "op": "is", "value": "trust-matters"},
    ]
}


def test_a_segment_is_created_with_its_count_and_counted_again_on_request(publisher, db):
    for email in ("h1@example.org", "h2@example.org", "h3@example.org"):
        add(publisher, email, "trust-matters", area="hampshire")
    add(publisher, "weekly@example.org", ("trust-matters", "weekly"), area="hampshire")  # still matches the rules
    add(publisher, "portsmouth@example.org", "trust-matters", area="portsmouth")
    add(publisher, "careers-only@example.org", "careers", area="hampshire")
    add(publisher, "left@example.org", "trust-matters", area="hampshire")
    leave(db, "left@example.org")

    response = publisher.post("/segments", json={"name": "Hampshire readers", "rules": HAMPSHIRE_READERS})
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["id"] and created["count"] == 4
    counted = publisher.get(f"/segments/{created['id']}/count")
    assert counted.status_code == 200 and counted.get_json()["count"] == 4


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"field": "colour", "op": "is", "value": "red"}, "rules.all[1].field"),
        ({"field": "area", "op": "contains", "value": "hamp"}, "rules.all[1].op"),
        ({"field": "area", "op": "is", "value": "narnia"}, "rules.all[1].value"),
        (
            {
                "any": [
                    {"field": "area", "op": "is", "value": "hampshire"},
                    {"field": "topic", "op": "in", "value": ["nope"]},
                ]
            },
            "rules.all[1].any[1].value",
        ),
    ],
    ids=["field", "op", "value", "nested-value"],
)
def test_a_bad_rule_is_400_with_its_path(publisher, db, bad, path):
    rules = {"all": [{"field": "topic", "op": "is", "value": "careers"}, bad]}
    response = publisher.post("/segments", json={"name": "Bad", "rules": rules})
    assert response.status_code == 400
    assert path in response.get_json()["fields"]
    assert count(db, Segment) == 0


def test_a_segment_name_is_unique(publisher):
    assert publisher.post("/segments", json={"name": "Carers", "rules": HAMPSHIRE_READERS}).status_code == 201
    again = publisher.post("/segments", json={"name": "Carers", "rules": HAMPSHIRE_READERS})
    assert again.status_code == 409 and "Carers" in again.get_json()["error"]
    assert len(publisher.get("/segments").get_json()) == 1


def test_nested_any_and_all_rules_count_the_right_people(publisher):
    add(publisher, "wight@example.org", "trust-matters", area="Isle of Wight")
    add(publisher, "mh@example.org", "trust-matters", area="portsmouth", services=["mental-health"])
    add(publisher, "both@example.org", "trust-matters", area="isle-of-wight", services=["mental-health", "community"])
    add(publisher, "neither@example.org", "trust-matters", area="portsmouth", services=["community"])
    add(publisher, "other-topic@example.org", "careers", area="isle-of-wight")
    rules = {
        "all": [
            {"field": "topic", "op": "is", "value": "trust-matters"},
            {
                "any": [
                    {"field": "area", "op": "is", "value": "isle-of-wight"},
                    {"field": "service", "op": "in", "value": ["mental-health"]},
                ]
            },
        ]
    }
    created = publisher.post("/segments", json={"name": "Wight or mental health", "rules": rules}).get_json()
    assert created["count"] == 3
    assert publisher.get(f"/segments/{created['id']}/count").get_json()["count"] == 3


def test_a_segment_an_issue_uses_cannot_be_deleted(publisher):
    used = publisher.post("/segments", json={"name": "Used", "rules": HAMPSHIRE_READERS}).get_json()["id"]
    unused = publisher.post("/segments", json={"name": "Unused", "rules": HAMPSHIRE_READERS}).get_json()["id"]
    issue = publisher.post("/issues", json={"subject": "Hi", "body": "Text", "topic": "trust-matters", "segment": used})
    assert issue.status_code == 201 and issue.get_json()["segment"] == used

    refused = publisher.delete(f"/segments/{used}")
    assert refused.status_code == 409 and str(issue.get_json()["id"]) in refused.get_json()["error"]
    assert publisher.get(f"/segments/{used}").status_code == 200
    assert publisher.delete(f"/segments/{unused}").status_code == 204
    assert publisher.get(f"/segments/{unused}").status_code == 404


def test_an_issue_to_a_segment_reaches_only_matching_people_who_want_it_now(publisher, smtp_server, celery_workers):
    add(publisher, "reader1@example.org", "trust-matters", area="hampshire")
    add(publisher, "reader2@example.org", "trust-matters", "careers", area="hampshire")
    add(publisher, "portsmouth@example.org", "trust-matters", area="portsmouth")
    add(publisher, "digest@example.org", ("trust-matters", "weekly"), area="hampshire")
    add(publisher, "monthly@example.org", ("trust-matters", "monthly"), "careers", area="hampshire")
    add(publisher, "careers@example.org", "careers", area="hampshire")
    segment = publisher.post(
        "/segments", json={"name": "Hampshire", "rules": {"all": [{"field": "area", "op": "is", "value": "hampshire"}]}}
    ).get_json()

    created = publisher.post(
        "/issues",
        json={"subject": "Hampshire news", "body": "Hello.", "topic": "trust-matters", "segment": segment["id"]},
    )
    assert created.status_code == 201
    issue_id = created.get_json()["id"]
    assert api_send(publisher.post, issue_id).status_code == 202

    final = wait_until(
        lambda: (body := publisher.get(f"/issues/{issue_id}").get_json())["status"] == "sent" and body,
        message="issue to be sent",
    )
    assert final["recipients"] == 2 and final["counts"]["sent"] == 2
    for email in ("reader1@example.org", "reader2@example.org"):
        [mail] = smtp_server.wait_for(email)
        assert mail.message["Subject"] == "Hampshire news"
    for email in ("portsmouth@example.org", "digest@example.org", "monthly@example.org", "careers@example.org"):
        assert smtp_server.messages_to(email) == []


def test_segment_and_topic_exports_stream_csv_with_a_row_per_person(publisher, db):
    add(publisher, "h1@example.org", "trust-matters", area="hampshire", name="Smith, Jo")
    add(publisher, "h2@example.org", ("trust-matters", "weekly"), area="hampshire", services=["community"])
    add(publisher, "p1@example.org", "trust-matters", area="portsmouth")
    add(publisher, "careers@example.org", "careers", area="hampshire")
    add(publisher, "left@example.org", "trust-matters", area="hampshire")
    leave(db, "left@example.org")
    segment = publisher.post("/segments", json={"name": "Hampshire readers", "rules": HAMPSHIRE_READERS}).get_json()

    response = publisher.get(f"/segments/{segment['id']}/export")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    header, *rows = parse_csv(response)
    assert header == ["email", "name", "topics", "area", "audience", "services", "subscribed_at", "confirmed_at"]
    assert sorted(r[0] for r in rows) == ["h1@example.org", "h2@example.org"]
    by_email = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    assert by_email["h1@example.org"]["name"] == "Smith, Jo"
    assert by_email["h2@example.org"]["topics"] == "trust-matters:weekly"
    assert by_email["h2@example.org"]["services"] == "community"

    topic = publisher.get("/topics/trust-matters/export")
    assert topic.status_code == 200
    header, *rows = parse_csv(topic)
    assert header[0] == "email"
    assert sorted(r[0] for r in rows) == ["h1@example.org", "h2@example.org", "p1@example.org"]
    assert publisher.get("/topics/nope/export").status_code == 404


# --- retention -----------------------------------------------------------------------------------------


def test_a_sign_up_never_confirmed_is_deleted_with_its_consent_events_after_seven_days(db):
    with db.transaction() as s:
        outcome = request_subscription(s, email="never@example.org", topic_slugs=["trust-matters"])
    with db.transaction() as s:
        assert delete_unconfirmed(s, 7, now=utcnow() + timedelta(days=6)) == 0
    with db.transaction() as s:
        assert delete_unconfirmed(s, 7, now=utcnow() + timedelta(days=8)) == 1
    assert person(db, "never@example.org") is None
    assert count(db, ConsentEvent, ConsentEvent.subscriber_id == outcome.subscriber_id) == 0


def test_a_sign_up_asked_for_again_recently_is_kept(db):
    with db.transaction() as s:
        request_subscription(s, email="again@example.org", topic_slugs=["careers"])
        request_subscription(s, email="stale@example.org", topic_slugs=["careers"])
    long_ago = utcnow() - timedelta(days=30)
    with db.transaction() as s:
        s.execute(update(Subscriber).values(created_at=long_ago))
        s.execute(update(ConsentEvent).values(created_at=long_ago))
    with db.transaction() as s:
        request_subscription(s, email="again@example.org", topic_slugs=["careers"])  # asked again today

    with db.transaction() as s:
        assert delete_unconfirmed(s, 7) == 1
    assert person(db, "again@example.org").status == "pending"
    assert person(db, "stale@example.org") is None


def test_an_active_subscriber_is_never_deleted_or_anonymised(publisher, db):
    added = add(publisher, "loyal@example.org", name="Loyal Reader")
    with db.transaction() as s:
        s.execute(update(Subscriber).values(created_at=utcnow() - timedelta(days=3000)))
    far_future = utcnow() + timedelta(days=3000)
    with db.transaction() as s:
        assert delete_unconfirmed(s, 7, now=far_future) == 0
        assert anonymise_ended(s, 730, now=far_future) == 0
    row = person_by_id(db, added["id"])
    assert row.status == "active" and row.email == "loyal@example.org" and row.name == "Loyal Reader"


def test_someone_who_left_long_ago_is_anonymised_and_not_imported_again(publisher, db):
    added = add(publisher, "gone@example.org", name="Gone Person")
    leave(db, "gone@example.org")
    with db.transaction() as s:
        assert anonymise_ended(s, 730, now=utcnow() + timedelta(days=729)) == 0
    with db.transaction() as s:
        assert anonymise_ended(s, 730, now=utcnow() + timedelta(days=731)) == 1

    row = person_by_id(db, added["id"])
    assert row.email is None and row.email_key is None and row.name is None
    assert row.anonymised_at is not None and row.email_hash == _hashed(db, "gone@example.org")

    report = publisher.import_csv("email,topics,consent_source\nGone@example.org,trust-matters,Old list\n").get_json()
    assert report["imported"] == 0 and report["skipped"] == 1
    assert "unsubscribed" in skips_by_row(report)[2]
    assert count(db, Subscriber, Subscriber.email_hash == _hashed(db, "gone@example.org")) == 1
    assert publisher.get("/subscribers/gone@example.org").status_code == 404


def test_anonymising_someone_who_left_removes_their_name_and_address_from_consent_records_too(publisher, db):
    add(publisher, "nadia@example.org", name="Nadia Named")
    add(publisher, "nadia@example.org", "careers", name="Nadia Renamed")
    leave(db, "nadia@example.org")
    with db.transaction() as s:
        assert anonymise_ended(s, 730, now=utcnow() + timedelta(days=731)) == 1
    assert rows_mentioning(db, "nadia@example.org") == []
    assert rows_mentioning(db, "Nadia") == []


# --- what spreadsheets and people actually send ---------------------------------------------------------


def test_a_header_with_empty_columns_after_the_last_is_accepted(publisher, db):
    body = "email,topics,consent_source,,\r\nexcel@example.org,careers,Stall at Ryde,,\r\n"
    report = publisher.import_csv(body).get_json()
    assert report["imported"] == 1 and report["errors"] == []


def test_a_corrected_copy_of_a_bad_row_later_in_the_file_is_imported(publisher, db):
    body = (
        "email,topics,consent_source\r\n"
        "fix@example.org,no-such-topic,Stall\r\n"  # row 2: wrong, nothing written
        "fix@example.org,careers,Stall\r\n"  # row 3: the corrected row
    )
    report = publisher.import_csv(body).get_json()
    assert errors_by_row(report).keys() == {2}
    assert report["imported"] == 1
    assert open_topics(db, person(db, "fix@example.org").id) == {"careers": "immediately"}


def test_an_unknown_consent_key_is_named_with_its_path(publisher):
    response = publisher.post(
        "/subscribers",
        json={
            "email": "k@example.org",
            "subscriptions": [{"topic": "careers"}],
            "consent": {"source": "x", "when": "yesterday"},
        },
    )
    assert response.status_code == 400
    assert "consent.when" in response.get_json()["fields"]


def test_the_api_cannot_be_used_to_flood_an_inbox_with_confirmations(publisher, db, smtp_server, celery_workers):
    for _ in range(5):
        add(publisher, "flood@example.org", "careers", collected=False)
    smtp_server.wait_for("flood@example.org", count=3)
    import time

    time.sleep(1.5)  # room for a fourth, were it sent
    assert len(smtp_server.messages_to("flood@example.org")) == 3
    assert count(db, ConsentEvent, ConsentEvent.kind == "subscribe_requested") == 5  # each request recorded


def test_an_earlier_consent_date_is_a_recorded_change(publisher, db):
    first = "email,topics,consent_source,consent_date\r\nd@example.org,careers,Stall,2026-05-01\r\n"
    publisher.import_csv(first)
    report = publisher.import_csv(first.replace("2026-05-01", "2026-02-01")).get_json()
    assert report["updated"] == 1
    assert person(db, "d@example.org").subscribed_at.date().isoformat() == "2026-02-01"


def test_one_consent_source_can_stand_for_the_whole_file(publisher, db):
    body = "email,topics,consent_source\r\nall@example.org,careers,\r\nown@example.org,careers,Own stall\r\n"
    without = publisher.import_csv("email,topics\r\nx@example.org,careers\r\n")
    assert without.status_code == 400 and "consent_source" in without.get_json()["error"]
    response = publisher.import_csv(body, query="?consent_source=Sign-up%20sheet,%20Newport")
    assert response.get_json()["imported"] == 2
    with db.transaction() as s:
        sources = {
            e.subscriber_id: e.details["source"]
            for e in s.scalars(select(ConsentEvent).where(ConsentEvent.kind == "subscribe"))
        }
    assert sorted(sources.values()) == ["Own stall", "Sign-up sheet, Newport"]
