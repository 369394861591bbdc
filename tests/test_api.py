"""The JSON API: tokens, validation, and a send followed to the end through real workers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

import mailer.web.api
from conftest import wait_until
from mailer.accounts import create_token
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.models import Issue
from support.flows import api_send


@pytest.fixture()
def token(db):
    with db.transaction() as s:
        _row, secret = create_token(s, "test client")
    return secret


@pytest.fixture()
def api(client, token):
    headers = {"Authorization": f"Bearer {token}"}

    class Api:
        def get(self, path):
            return client.get(f"/api/v1{path}", headers=headers)

        def post(self, path, json=None, **kw):
            return client.post(f"/api/v1{path}", json=json, headers=headers, **kw)

    return Api()


def test_no_token_is_401_json(client):
    response = client.get("/api/v1/topics")
    assert response.status_code == 401
    assert response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_token_is_401(client):
    response = client.get("/api/v1/topics", headers={"Authorization": "Bearer tm_not-a-real-token"})
    assert response.status_code == 401 and "not valid" in response.get_json()["error"]


def test_topics_lists_seeded_slugs(api):
    response = api.get("/topics")
    assert response.status_code == 200
    assert [t["slug"] for t in response.get_json()] == [
        "trust-matters",
        "project-fusion",
        "get-involved",
        "careers",
        "sustainability",
    ]


def test_unknown_topic_is_400_and_nothing_is_written(api, db):
    response = api.post("/issues", json={"subject": "Hi", "body": "Text", "topic": "nope"})
    assert response.status_code == 400
    assert response.get_json()["fields"] == {"topic": "Unknown topic: nope"}
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"body": "Text", "topic": "careers"}, "'subject' is required"),
        ({"subject": 5, "body": "Text", "topic": "careers"}, "'subject' must be a string"),
        ({"subject": "Hi", "body": "Text", "topic": "careers", "colour": "red"}, "Unknown field(s): colour"),
        ({"subject": "", "body": "Text", "topic": "careers"}, "subject: Enter a subject"),
        ({"subject": "Hi\r\nBcc: x@y.z", "body": "Text", "topic": "careers"}, "Subject must be one line"),
    ],
)
def test_bad_issue_input_is_400_naming_the_problem(api, body, message):
    response = api.post("/issues", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_non_json_body_is_415(api):
    response = api.post("/issues", data="subject=Hi", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_malformed_json_is_400(api):
    response = api.post("/issues", data="{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]


def test_unknown_issue_is_404_json(api):
    assert api.get("/issues/999").status_code == 404
    assert api.post("/issues/999/send").status_code == 404


def test_openapi_document_lists_every_route(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    routes = {
        re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        for rule in client.application.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
    }
    documented = {
        p if not p.endswith(("/pause", "/resume", "/cancel")) else p.rsplit("/", 1)[0] + "/{action}"
        for p in doc["paths"]
    }
    assert routes == documented


def test_create_send_and_follow_an_issue_to_sent(api, db, smtp_server, celery_workers):
    people = [f"reader{i}@example.org" for i in range(7)]
    with db.transaction() as s:
        for email in people:
            confirm_subscription(s, request_subscription(s, email=email, topic_slugs=["get-involved"]).request_id)
        # Subscribed to another topic only: must not get this issue.
        confirm_subscription(s, request_subscription(s, email="other@example.org", topic_slugs=["careers"]).request_id)

    created = api.post(
        "/issues", json={"subject": "Community conversations", "body": "Come along.", "topic": "get-involved"}
    )
    assert created.status_code == 201
    issue_id = created.get_json()["id"]
    assert created.get_json()["status"] == "draft"

    assert api.post(f"/issues/{issue_id}/send").status_code == 409  # a draft: it must be approved first
    assert api_send(api.post, issue_id).status_code == 202
    assert api.post(f"/issues/{issue_id}/send").status_code == 409  # already sending or sent

    final = wait_until(
        lambda: (body := api.get(f"/issues/{issue_id}").get_json())["status"] == "sent" and body,
        message="issue to be sent",
    )
    assert final["counts"]["sent"] == 7 and final["counts"]["pending"] == 0 and final["recipients"] == 7
    for email in people:
        [mail] = smtp_server.wait_for(email)
        assert mail.message["Subject"] == "Community conversations"
    assert smtp_server.messages_to("other@example.org") == []


def test_every_api_route_is_described_with_what_it_takes_and_answers(client):
    """The description is made from each route's @operation: a route without one, or an operation that names no
    successful answer, fails here (and `openapi_document` refuses to describe the API at all)."""
    from mailer.web.api.spec import Body, described

    app = client.application
    seen = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        op = described(app.view_functions[rule.endpoint])
        assert op is not None, f"{rule.rule} has no @operation"
        answers = {status: answer for status, answer in op.responses.items() if 200 <= status < 300}
        assert answers, f"{rule.rule}: no successful answer described"
        for status, answer in answers.items():
            assert answer is not None or status == 204, f"{rule.rule}: {status} says nothing of its body"
        if isinstance(op.body, Body):
            assert op.body.media_type != "application/json", f"{rule.rule}: a JSON body needs a model"
        seen += 1
    assert seen >= 25
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["paths"]["/issues"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IssueInput"
    }
    issue = doc["components"]["schemas"]["Issue"]
    assert {"kind", "segment", "send_at", "submitted_at", "approved_at"} <= set(issue["properties"])
    blocks = doc["components"]["schemas"]["IssueInput"]["properties"]["blocks"]
    assert "discriminator" in json.dumps(blocks), "blocks are described as a union by type"
    assert not Path(mailer.web.api.__file__).with_name("openapi.py").exists(), "the description is not hand-written"
