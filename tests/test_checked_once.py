"""Inputs are checked once: topics when the input is parsed (with the database's topics), and the command takes
the parsed model without checking it again; the admin reads a page of deliveries with the API's model."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from conftest import csrf_from
from mailer.accounts import create_token
from mailer.audience import commands, rules
from mailer.audience.inputs import ImportUpload, NewSubscriber, RulesOnly, SegmentInput, SignUp
from mailer.audience.lookups import parse_in
from mailer.audit import SYSTEM
from mailer.compose.inputs import IssueInput
from mailer.errors import InvalidInput
from mailer.inputs import parse
from mailer.models import Delivery, Issue, Segment, Subscriber, Topic
from support.flows import sign_in

ACTIVE = {"status": "active", "services": 0}
CAREERS = {"all": [{"field": "topic", "op": "is", "value": "careers"}]}


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (SignUp, {"email": "a@example.org", "topics": ["careers"]}),
        (NewSubscriber, {"email": "a@example.org", "subscriptions": ["careers"], "consent": {"source": "x"}}),
        (RulesOnly, {"rules": CAREERS}),
        (IssueInput, {"subject": "Hi", "body": "B", "topic": "careers"}),
    ],
)
def test_an_input_naming_topics_cannot_be_parsed_without_the_databases_topics(model, data):
    # Were it parsed without them, its command (which trusts the model) would get topics nobody checked.
    with pytest.raises(RuntimeError, match="parse_in"):
        parse(model, data)


def test_parse_in_reports_an_unknown_topic_with_the_other_mistakes(db):
    with db.transaction() as s, pytest.raises(InvalidInput) as caught:
        parse_in(s, IssueInput, {"subject": "", "body": "B", "topic": "nope"})
    assert caught.value.errors["topic"] == "Unknown topic: nope"
    assert "subject" in caught.value.errors


def test_save_segment_takes_the_parsed_rules_without_parsing_them_again(db, monkeypatch):
    with db.transaction() as s:
        data = parse_in(s, SegmentInput, {"name": "Careers", "rules": CAREERS})

    def parsed_again(*_args, **_kwargs):
        raise AssertionError("the rules were parsed again")

    monkeypatch.setattr(rules, "parse_with_topics", parsed_again)
    monkeypatch.setattr(RulesOnly, "model_validate", parsed_again)
    with db.transaction() as s:
        segment_id = commands.save_segment(s, data, SYSTEM).id
    with db.transaction() as s:
        assert s.get(Segment, segment_id).rules == CAREERS


def test_the_api_checks_a_segments_topics_once_when_it_parses_the_body(client, db, monkeypatch):
    with db.transaction() as s:
        token = create_token(s, "t", role="editor")[1]
    headers = {"Authorization": f"Bearer {token}"}
    bad = {"name": "X", "rules": {"all": [{"field": "topic", "op": "is", "value": "nope"}]}}
    refused = client.post("/api/v1/segments", json=bad, headers=headers)
    assert refused.status_code == 400 and "rules.all[0].value" in refused.get_json()["fields"]
    made = client.post("/api/v1/segments", json={"name": "Careers", "rules": CAREERS}, headers=headers)
    assert made.status_code == 201, made.get_json()
    monkeypatch.setattr(rules, "parse_with_topics", lambda *a, **k: pytest.fail("the rules were parsed again"))
    counted = client.post("/api/v1/segments/count", json={"rules": CAREERS}, headers=headers)
    assert counted.status_code == 200 and counted.get_json() == {"count": 0}


def _sent_issue(db) -> int:
    with db.transaction() as s:
        topic = s.scalar(select(Topic).where(Topic.slug == "careers"))
        issue = Issue(subject="Hi", topic_id=topic.id, status="sent", body="Hello")
        s.add(issue)
        s.flush()
        return issue.id


@pytest.mark.parametrize(
    ("query", "said"),
    [("status=bogus", b"status"), ("after=x", b"after"), ("after=-1", b"after")],
)
def test_the_admin_recipients_page_reads_its_query_with_the_apis_model(client, db, query, said):
    issue_id = _sent_issue(db)
    sign_in(client, db, role="publisher", email="pub@hiow.nhs.uk")
    for path in (f"/admin/issues/{issue_id}/recipients?{query}", f"/admin/issues/{issue_id}/recipients.csv?{query}"):
        response = client.get(path)
        assert response.status_code == 400 and said in response.data, path


def test_the_admin_recipients_page_filters_and_pages(client, db):
    issue_id = _sent_issue(db)
    sign_in(client, db, role="publisher", email="pub@hiow.nhs.uk")
    with db.transaction() as s:
        people = [  # (services: none in particular)
            Subscriber(email=f"p{i}@example.org", email_key=f"p{i}@example.org", email_hash=f"h{i}", **ACTIVE)
            for i in range(3)
        ]
        s.add_all(people)
        s.flush()
        s.add_all(
            Delivery(issue_id=issue_id, subscriber_id=p.id, status="failed" if i else "sent", last_error="")
            for i, p in enumerate(people)
        )
    page = client.get(f"/admin/issues/{issue_id}/recipients?status=failed")
    assert page.status_code == 200
    assert b"p1@example.org" in page.data and b"p2@example.org" in page.data and b"p0@example.org" not in page.data


def test_a_digest_run_for_an_unknown_frequency_is_the_admins_error_message_not_a_400_page(client, db):
    sign_in(client, db, role="publisher", email="pub@hiow.nhs.uk")
    page = client.get("/admin/updates")
    response = client.post("/admin/digests/run", data={"csrf_token": csrf_from(page.data), "frequency": "daily"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/admin/updates")
    assert b"Choose the weekly or the monthly digest." in client.get("/admin/updates").data


def test_the_import_upload_is_described_with_its_413_and_read_as_a_lax_query(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    upload = doc["paths"]["/subscribers/import"]["post"]
    assert "413" in upload["responses"]
    assert ImportUpload.model_config["strict"] is False  # like every query model (web.api.spec.Query)


def test_the_description_says_what_the_server_accepts_and_answers(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    refs = {"#/components/schemas/AllOf", "#/components/schemas/AnyOf"}
    assert {choice["$ref"] for choice in schemas["Segment"]["properties"]["rules"]["anyOf"]} == refs
    fields = schemas["NewSubscriber"]["properties"]
    services = fields["services"]["anyOf"]
    assert {"type": "string"}.items() <= services[1].items()  # "community;mental-health"
    assert services[0]["type"] == "array" and len(services[0]["items"]["anyOf"]) == 2  # slugs or labels
    area = fields["area"]["anyOf"]
    # Areas are the database's (migration 0016): a slug or a name, as GET /areas lists them.
    assert area[0]["type"] == "string" and "GET /areas" in area[0]["description"]
    assert {"type": "null"} in area


def test_what_the_description_allows_for_a_new_subscriber_is_accepted(client, db):
    with db.transaction() as s:
        token = create_token(s, "t", role="publisher")[1]
    person = {
        "email": "label@example.org",
        "subscriptions": ["careers"],
        "area": "Isle of Wight",
        "services": "community;Mental health services",
        "consent": {"source": "Paper form", "collected": True},
    }
    response = client.post("/api/v1/subscribers", json=person, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 201), response.get_json()
    with db.transaction() as s:
        saved = s.scalar(select(Subscriber).where(Subscriber.email_key == "label@example.org"))
        assert saved.area == "isle-of-wight"
