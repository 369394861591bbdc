"""One-click unsubscribe and the API under load: repeats write nothing, floods get a 429 that says when to retry.

Mail providers post one-click unsubscribes for all their users from a few servers, so one-click is limited
tightly per signed link and only loosely per address; the API per token and per address."""

from __future__ import annotations

from sqlalchemy import func, select

from mailer.accounts import create_token
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.models import AuditEvent, ConsentEvent, Subscriber, Topic
from mailer.web.limits import API_ADDRESS_LIMIT, API_TOKEN_LIMIT, ONE_CLICK_ADDRESS_LIMIT, ONE_CLICK_LINK_LIMIT

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _per_minute(limit: str) -> int:
    return int(limit.split(" per minute")[0].split(";")[0])


def _subscriber(db, email="reader@example.org", topics=("trust-matters", "project-fusion"), confirmed=True) -> int:
    with db.transaction() as s:
        outcome = request_subscription(s, email=email, topic_slugs=list(topics))
        if confirmed:
            confirm_subscription(s, outcome.request_id)
        return outcome.subscriber_id


def _link(app, db, subscriber_id, topic: str | None) -> str:
    with db.transaction() as s:
        topic_id = s.scalar(select(Topic.id).where(Topic.slug == topic)) if topic else None
        public_id = s.get(Subscriber, subscriber_id).public_id
    return "/u/" + app.extensions["mailer"].links.unsubscribe_token(public_id, topic_id)


def _unsubscribe_events(db, subscriber_id) -> list[dict]:
    with db.transaction() as s:
        events = s.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.subscriber_id == subscriber_id, ConsentEvent.kind == "unsubscribe")
            .order_by(ConsentEvent.id)
        )
        return [{"channel": e.channel, **e.details} for e in events]


def test_a_one_click_post_that_changes_nothing_writes_no_consent_event(app, client, db):
    reader = _subscriber(db)
    topic_link, all_link = _link(app, db, reader, "project-fusion"), _link(app, db, reader, None)
    for _ in range(3):  # a provider retrying, or a person pressing twice
        assert client.post(topic_link, data=ONE_CLICK).status_code == 200
        assert client.post(all_link, data=ONE_CLICK).status_code == 200
    assert client.post(all_link, data={"scope": "all"}).status_code == 200  # and the page's button, later
    assert _unsubscribe_events(db, reader) == [
        {"channel": "one-click", "topics": ["project-fusion"], "all": False},
        {"channel": "one-click", "topics": ["trust-matters"], "all": True},
    ]
    with db.transaction() as s:
        assert s.get(Subscriber, reader).status == "unsubscribed"
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 0

    # Leaving before confirming is a change (the sign-up stops), so it is recorded, once.
    pending = _subscriber(db, "pending@example.org", confirmed=False)
    for _ in range(2):
        assert client.post(_link(app, db, pending, None), data=ONE_CLICK).status_code == 200
    assert _unsubscribe_events(db, pending) == [{"channel": "one-click", "topics": [], "all": True}]


def test_one_click_is_limited_per_link_with_a_plain_text_429(app, client, db):
    reader, other = _subscriber(db), _subscriber(db, "other@example.org")
    link = _link(app, db, reader, "trust-matters")
    for _ in range(_per_minute(ONE_CLICK_LINK_LIMIT)):
        assert client.post(link, data=ONE_CLICK).status_code == 200
    refused = client.post(link, data=ONE_CLICK)
    assert refused.status_code == 429 and refused.mimetype == "text/plain"
    assert "try again" in refused.get_data(as_text=True) and 0 < int(refused.headers["Retry-After"]) <= 60
    # Someone else's link from the same address (the same mail provider) is not held up.
    assert client.post(_link(app, db, other, "trust-matters"), data=ONE_CLICK).status_code == 200
    # A person on the page gets the page, not plain text.
    page = client.post(link, data={"scope": "all"})
    assert page.status_code == 429 and page.mimetype == "text/html"


def test_one_click_lets_one_provider_post_for_many_people_but_not_a_flood(app, client, db):
    per_address = _per_minute(ONE_CLICK_ADDRESS_LIMIT)
    assert per_address >= 20 * _per_minute(ONE_CLICK_LINK_LIMIT)
    reader = _subscriber(db)
    # Many different links from one address (forged ones here: cheap to make, and they count too).
    for n in range(per_address - 1):
        assert client.post(f"/u/not-a-link-{n}", data=ONE_CLICK).status_code == 400
    assert client.post(_link(app, db, reader, "trust-matters"), data=ONE_CLICK).status_code == 200
    flood = client.post(_link(app, db, reader, "project-fusion"), data=ONE_CLICK)
    assert flood.status_code == 429 and flood.mimetype == "text/plain" and "Retry-After" in flood.headers
    assert _unsubscribe_events(db, reader) == [{"channel": "one-click", "topics": ["trust-matters"], "all": False}]
    from_elsewhere = client.post(
        _link(app, db, reader, "project-fusion"), data=ONE_CLICK, environ_overrides={"REMOTE_ADDR": "192.0.2.7"}
    )
    assert from_elsewhere.status_code == 200


def test_the_api_is_limited_per_token_and_per_address_with_json_429(client, db):
    with db.transaction() as s:
        busy, calm, fresh = (
            {"Authorization": f"Bearer {create_token(s, name, 'editor')[1]}"} for name in ("busy", "calm", "fresh")
        )
    per_token, per_address = _per_minute(API_TOKEN_LIMIT), _per_minute(API_ADDRESS_LIMIT)
    for _ in range(per_token):
        answered = client.get("/api/v1/topics", headers=busy)
        assert answered.status_code == 200 and "Retry-After" not in answered.headers  # only a refusal says wait
    refused = client.get("/api/v1/topics", headers=busy)
    assert refused.status_code == 429 and refused.mimetype == "application/json"
    assert "Too many requests" in refused.get_json()["error"] and 0 < int(refused.headers["Retry-After"]) <= 60
    assert client.post("/api/v1/issues", json={}, headers=busy).status_code == 429  # every call counts

    # Another token from the same address goes on, until the address has used its share.
    answered = 0
    while client.get("/api/v1/topics", headers=calm).status_code == 200:
        answered += 1
        assert answered <= per_address
    assert per_address - per_token - 2 <= answered <= per_address - per_token  # (refused calls may count)
    assert client.get("/api/v1/topics", headers=fresh).status_code == 429
    assert client.get("/api/v1/topics", headers={"Authorization": "Bearer tm_guess"}).status_code == 429
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/api/v1/topics", headers=fresh, environ_overrides=elsewhere).status_code == 200


def test_the_api_description_documents_the_429(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    refused = doc["paths"]["/topics"]["get"]["responses"]["429"]
    assert "Retry-After" in refused["headers"]
