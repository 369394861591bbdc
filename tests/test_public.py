"""Public pages: bad input gets a clear answer and changes nothing; GET never changes anything."""

from __future__ import annotations

from sqlalchemy import func, select

from conftest import csrf_from
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.models import ConsentEvent, PublicRequest, Subscriber, Subscription


def _count(db, model):
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def _active_subscriber(db, email="reader@example.org", topics=("trust-matters", "project-fusion")):
    with db.transaction() as s:
        outcome = request_subscription(s, email=email, topic_slugs=list(topics))
        confirm_subscription(s, outcome.request_id)
        return outcome.subscriber_id, outcome.request_id


def _public_id(db, subscriber_id):
    with db.transaction() as s:
        return s.get(Subscriber, subscriber_id).public_id


def _open_topics(db, subscriber_id):
    with db.transaction() as s:
        return sorted(
            sub.topic.slug
            for sub in s.scalars(
                select(Subscription).where(Subscription.subscriber_id == subscriber_id, Subscription.ended_at.is_(None))
            )
        )


def _topic_id(db, slug):
    from mailer.models import Topic

    with db.transaction() as s:
        return s.scalar(select(Topic.id).where(Topic.slug == slug))


def test_home_page_explains_what_you_can_subscribe_to(client):
    page = client.get("/")
    assert page.status_code == 200
    for words in (b"Trust Matters", b"Project Fusion", b"keep people informed", b"Get involved and events"):
        assert words in page.data


def test_invalid_email_shows_an_error_and_saves_nothing(client, db):
    page = client.get("/subscribe")
    response = client.post(
        "/subscribe",
        data={"csrf_token": csrf_from(page.data), "email": "not-an-email", "topics": ["careers"], "area": "portsmouth"},
    )
    assert response.status_code == 400
    assert b"There is a problem" in response.data
    assert b'href="#email"' in response.data
    assert b"Enter an email address in the correct format" in response.data
    assert _count(db, Subscriber) == 0 and _count(db, ConsentEvent) == 0 and _count(db, PublicRequest) == 0


def test_no_topic_chosen_is_an_error(client, db):
    page = client.get("/subscribe")
    response = client.post("/subscribe", data={"csrf_token": csrf_from(page.data), "email": "a@example.org"})
    assert response.status_code == 400
    assert b"Select at least one thing" in response.data
    assert b'value="a@example.org"' in response.data  # what they typed is kept
    assert _count(db, Subscriber) == 0


def test_unknown_topic_and_area_are_errors(client, db):
    page = client.get("/subscribe")
    response = client.post(
        "/subscribe",
        data={"csrf_token": csrf_from(page.data), "email": "a@example.org", "topics": ["nope"], "area": "mars"},
    )
    assert response.status_code == 400
    assert b"Unknown topic: nope" in response.data and b"Select where you live" in response.data
    assert _count(db, Subscriber) == 0


def test_form_without_csrf_token_is_refused(client, db):
    response = client.post("/subscribe", data={"email": "a@example.org", "topics": ["careers"], "area": "portsmouth"})
    assert response.status_code == 400
    assert b"security token" in response.data
    assert _count(db, Subscriber) == 0


def test_get_on_confirm_link_does_not_confirm(client, db, app):
    with db.transaction() as s:
        outcome = request_subscription(s, email="scanner@example.org", topic_slugs=["careers"])
    token = app.extensions["mailer"].links.confirm_token(outcome.public_id, outcome.request_id)
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200 and b"Confirm my subscription" in page.data
    with db.transaction() as s:
        assert s.get(Subscriber, outcome.subscriber_id).status == "pending"
    client.post(f"/confirm/{token}", data={"csrf_token": csrf_from(page.data)})
    with db.transaction() as s:
        assert s.get(Subscriber, outcome.subscriber_id).status == "active"


def test_confirming_twice_is_harmless(client, db, app):
    with db.transaction() as s:
        outcome = request_subscription(s, email="twice@example.org", topic_slugs=["careers"])
    token = app.extensions["mailer"].links.confirm_token(outcome.public_id, outcome.request_id)
    csrf = csrf_from(client.get(f"/confirm/{token}").data)
    assert b"You are subscribed" in client.post(f"/confirm/{token}", data={"csrf_token": csrf}).data
    assert b"already subscribed" in client.post(f"/confirm/{token}", data={"csrf_token": csrf}).data
    assert _count(db, Subscription) == 1


def test_tampered_confirm_link_gets_a_friendly_400_and_changes_nothing(client, db, app):
    with db.transaction() as s:
        outcome = request_subscription(s, email="tamper@example.org", topic_slugs=["careers"])
    token = app.extensions["mailer"].links.confirm_token(outcome.public_id, outcome.request_id)
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    page = client.get(f"/confirm/{forged}")
    assert page.status_code == 400 and b"This link does not work" in page.data
    csrf = csrf_from(client.get("/subscribe").data)
    assert client.post(f"/confirm/{forged}", data={"csrf_token": csrf}).status_code == 400
    with db.transaction() as s:
        assert s.get(Subscriber, outcome.subscriber_id).status == "pending"


def test_get_on_unsubscribe_link_does_not_unsubscribe(client, db, app):
    subscriber_id, _ = _active_subscriber(db)
    token = app.extensions["mailer"].links.unsubscribe_token(
        _public_id(db, subscriber_id), _topic_id(db, "trust-matters")
    )
    page = client.get(f"/u/{token}")
    assert page.status_code == 200 and b"Unsubscribe from Trust Matters" in page.data
    assert _open_topics(db, subscriber_id) == ["project-fusion", "trust-matters"]


def test_one_click_post_urlencoded_without_csrf(client, db, app):
    subscriber_id, _ = _active_subscriber(db)
    token = app.extensions["mailer"].links.unsubscribe_token(
        _public_id(db, subscriber_id), _topic_id(db, "trust-matters")
    )
    response = client.post(
        f"/u/{token}", data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert _open_topics(db, subscriber_id) == ["project-fusion"]
    # Again: still 200, nothing more changes.
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert _open_topics(db, subscriber_id) == ["project-fusion"]


def test_one_click_post_multipart_without_csrf(client, db, app):
    subscriber_id, _ = _active_subscriber(db)
    token = app.extensions["mailer"].links.unsubscribe_token(
        _public_id(db, subscriber_id), _topic_id(db, "project-fusion")
    )
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data")
    assert response.status_code == 200
    assert _open_topics(db, subscriber_id) == ["trust-matters"]
    with db.transaction() as s:
        event = s.scalars(select(ConsentEvent).where(ConsentEvent.kind == "unsubscribe")).one()
        assert event.channel == "one-click" and event.details["topics"] == ["project-fusion"]


def test_unsubscribe_from_everything_from_the_page(client, db, app):
    subscriber_id, _ = _active_subscriber(db)
    token = app.extensions["mailer"].links.unsubscribe_token(
        _public_id(db, subscriber_id), _topic_id(db, "trust-matters")
    )
    page = client.post(f"/u/{token}", data={"scope": "all"})
    assert page.status_code == 200 and b"You have been unsubscribed" in page.data
    assert _open_topics(db, subscriber_id) == []
    with db.transaction() as s:
        assert s.get(Subscriber, subscriber_id).status == "unsubscribed"


def test_tampered_unsubscribe_link_changes_nothing(client, db, app):
    subscriber_id, _ = _active_subscriber(db)
    token = app.extensions["mailer"].links.unsubscribe_token(_public_id(db, subscriber_id), None)
    payload, _, signature = token.partition(".")
    other = app.extensions["mailer"].links.unsubscribe_token("0" * 32, None).partition(".")[0]
    forged = f"{other}.{signature}"
    assert client.get(f"/u/{forged}").status_code == 400
    assert client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert client.post(f"/u/{forged}", data={"scope": "all"}).status_code == 400
    assert _open_topics(db, subscriber_id) == ["project-fusion", "trust-matters"]


def test_confirm_token_is_not_an_unsubscribe_token(client, db, app):
    subscriber_id, request_id = _active_subscriber(db)
    links = app.extensions["mailer"].links
    assert (
        client.post(
            f"/u/{links.confirm_token(_public_id(db, subscriber_id), request_id)}", data={"scope": "all"}
        ).status_code
        == 400
    )
    assert _open_topics(db, subscriber_id) == ["project-fusion", "trust-matters"]


def test_healthz_reports_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    checks = response.get_json()["checks"]
    assert (checks["database"], checks["redis"]) == ("ok", "ok")  # beat and the queues: tests/test_health.py


def test_unknown_page_is_a_friendly_404(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404 and b"Not Found" in page.data


def test_subscribing_too_often_from_one_address_is_slowed_down(client, db):
    csrf = csrf_from(client.get("/subscribe").data)
    codes = [
        client.post(
            "/subscribe",
            data={"csrf_token": csrf, "email": f"p{i}@example.org", "topics": ["careers"], "area": "portsmouth"},
        ).status_code
        for i in range(21)
    ]
    assert codes[:20] == [303] * 20
    assert codes[20] == 429
    last = client.post(
        "/subscribe",
        data={"csrf_token": csrf, "email": "late@example.org", "topics": ["careers"], "area": "portsmouth"},
    )
    assert last.status_code == 429 and b"Too many attempts" in last.data
    # Each sign-up is a queued request until a worker (if one runs) turns it into a subscribe request.
    # Both counts in one statement: PostgreSQL's READ COMMITTED gives each statement its own snapshot, so two
    # SELECTs could count a request the worker turned into a consent event between them twice.
    queued = select(func.count()).select_from(PublicRequest).scalar_subquery()
    requested = select(func.count()).select_from(ConsentEvent).scalar_subquery()
    with db.transaction() as s:
        assert s.execute(select(queued + requested)).scalar_one() == 20


def test_an_old_confirmation_link_tells_the_truth_after_unsubscribing(client, db, app):
    subscriber_id, request_id = _active_subscriber(db)
    links = app.extensions["mailer"].links
    client.post(
        f"/u/{links.unsubscribe_token(_public_id(db, subscriber_id), _topic_id(db, 'project-fusion'))}", data={}
    )
    token = links.confirm_token(_public_id(db, subscriber_id), request_id)
    page = client.get(f"/confirm/{token}")
    assert b"You are already subscribed" in page.data
    assert b"Trust Matters" in page.data and b"Project Fusion updates" not in page.data
    assert _open_topics(db, subscriber_id) == ["trust-matters"]


def test_unsubscribe_page_for_a_topic_already_left(client, db, app):
    subscriber_id, _ = _active_subscriber(db)
    token = app.extensions["mailer"].links.unsubscribe_token(
        _public_id(db, subscriber_id), _topic_id(db, "project-fusion")
    )
    client.post(f"/u/{token}", data={})
    page = client.get(f"/u/{token}")
    assert b"You are not subscribed to Project Fusion updates" in page.data
    assert b"Unsubscribe from everything" in page.data
