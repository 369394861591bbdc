"""The preference centre: the signed /manage link in every email, and 'email me a link'."""

from __future__ import annotations

from sqlalchemy import select

from conftest import csrf_from
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.audience.suppression import suppress
from mailer.links import Links
from mailer.models import ConsentEvent, Subscriber, Subscription, services_of
from support.flows import confirm, manage_link, path_of, send_issue, sign_in, subscribe, without_nonce, write_issue


def _person(db, email):
    with db.transaction() as s:
        person = s.scalar(select(Subscriber).where(Subscriber.email_key == email))
        s.expunge(person)
        return person


def _subscriptions(db, subscriber_id) -> dict[str, str]:
    with db.transaction() as s:
        rows = s.scalars(
            select(Subscription).where(Subscription.subscriber_id == subscriber_id, Subscription.ended_at.is_(None))
        )
        return {r.topic.slug: r.frequency for r in rows}


def _events(db, subscriber_id) -> list[ConsentEvent]:
    with db.transaction() as s:
        events = list(s.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id)))
        for e in events:
            s.expunge(e)
        return events


def _active(db, email, topics=("trust-matters",)) -> int:
    with db.transaction() as s:
        outcome = request_subscription(s, email=email, topic_slugs=list(topics), area="portsmouth")
        confirm_subscription(s, outcome.request_id)
        return outcome.subscriber_id


def _manage_path(settings, subscriber_id) -> str:
    return path_of(Links(settings.secret_key, settings.base_url).manage_url(_public_id_of(settings, subscriber_id)))


def _public_id_of(settings, subscriber_id) -> str:
    from mailer.db import Database

    db = Database(settings.database_url, email_hash_key=settings.email_hash_key)
    with db.sessions() as s:
        value = s.get(Subscriber, subscriber_id).public_id
    db.dispose()
    return value


def test_sign_up_with_attributes_then_change_to_a_monthly_digest_from_the_email(
    client, db, smtp_server, celery_workers
):
    response = subscribe(
        client,
        "sam@example.org",
        topics=["trust-matters", "project-fusion"],
        area="isle-of-wight",
        audience="carer",
        services=["mental-health"],
        frequency="immediately",
    )
    assert response.status_code == 303
    [confirmation] = smtp_server.wait_for("sam@example.org")
    confirm(client, confirmation)
    person = _person(db, "sam@example.org")
    assert (person.area, person.audience, services_of(person.services)) == ("isle-of-wight", "carer", ["mental-health"])
    assert _subscriptions(db, person.id) == {"trust-matters": "immediately", "project-fusion": "immediately"}

    # The confirmation email carries the manage link too.
    path = path_of(manage_link(confirmation))
    page = client.get(path)
    assert page.status_code == 200 and b"sam@example.org" in page.data
    saved = client.post(
        path,
        data={
            "csrf_token": csrf_from(page.data),
            "topics": ["trust-matters", "project-fusion"],
            "frequency-trust-matters": "monthly",
            "frequency-project-fusion": "immediately",
            "area": "isle-of-wight",
            "audience": "carer",
            "services": ["mental-health", "community"],
            "action": "save",
        },
    )
    assert saved.status_code == 303
    assert b"Your choices have been saved" in client.get(saved.headers["Location"]).data
    assert _subscriptions(db, person.id) == {"trust-matters": "monthly", "project-fusion": "immediately"}
    assert services_of(_person(db, "sam@example.org").services) == ["community", "mental-health"]
    change = _events(db, person.id)[-1]
    assert change.kind == "change" and change.channel == "web" and change.wording_version
    assert change.details["frequency"] == {"trust-matters": ["immediately", "monthly"]}
    assert change.details["attributes"]["services"] == [["mental-health"], ["community", "mental-health"]]

    # Admin sees it on the person's page.
    sign_in(client, db)
    admin_page = client.get(f"/admin/subscribers/{person.id}")
    assert admin_page.status_code == 200
    assert b"Monthly digest" in admin_page.data and b"Isle of Wight" in admin_page.data

    # A newsletter to Trust Matters no longer reaches them (monthly now); the footer link is theirs.
    issue_id = write_issue(client, topic="project-fusion", subject="Fusion progress")
    send_issue(client, issue_id)
    [newsletter] = smtp_server.wait_for("sam@example.org", count=2)[1:]
    assert manage_link(newsletter) == manage_link(confirmation)


def test_a_tampered_or_foreign_manage_link_changes_nothing(client, db, settings):
    person_id = _active(db, "kim@example.org")
    path = _manage_path(settings, person_id)
    assert client.get(path).status_code == 200
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    page = client.get(tampered)
    assert page.status_code == 400 and b"Email me a new link" in page.data
    # Signed with the right key but for a public id nobody has: not valid.
    other = Links(settings.secret_key, settings.base_url).manage_url("0" * 32)
    assert client.get(path_of(other)).status_code == 400
    csrf = csrf_from(client.get(path).data)
    assert client.post(tampered, data={"csrf_token": csrf, "action": "unsubscribe-all"}).status_code == 400
    assert _person(db, "kim@example.org").status == "active"
    # Signed with another key: not valid either.
    forged = Links("not-our-key", settings.base_url).manage_url(_public_id_of(settings, person_id))
    assert client.get(path_of(forged)).status_code == 400


def test_unsubscribe_from_everything_in_the_preference_centre(client, db, settings):
    person_id = _active(db, "lee@example.org", topics=("trust-matters", "careers"))
    path = _manage_path(settings, person_id)
    page = client.get(path)
    response = client.post(
        path,
        data={"csrf_token": csrf_from(page.data), "topics": ["careers"], "area": "", "action": "unsubscribe-all"},
    )
    assert response.status_code == 200 and b"You have been unsubscribed" in response.data
    person = _person(db, "lee@example.org")
    assert person.status == "unsubscribed" and person.area == "portsmouth"  # other answers kept
    assert _subscriptions(db, person_id) == {}
    assert _events(db, person_id)[-1].kind == "unsubscribe"
    # And they can come back from the same link: it was sent to them.
    page = client.get(path)
    client.post(path, data={"csrf_token": csrf_from(page.data), "topics": ["careers"], "action": "save"})
    assert _person(db, "lee@example.org").status == "active"
    assert _subscriptions(db, person_id) == {"careers": "immediately"}


def test_bad_choices_are_reported_and_nothing_changes(client, db, settings):
    person_id = _active(db, "max@example.org")
    path = _manage_path(settings, person_id)
    page = client.get(path)
    response = client.post(
        path,
        data={
            "csrf_token": csrf_from(page.data),
            "topics": ["trust-matters", "no-such-topic"],
            "area": "mars",
            "services": ["astrology"],
            "action": "save",
        },
    )
    assert response.status_code == 400
    assert b"There is a problem" in response.data and b"Unknown topic" in response.data
    assert _subscriptions(db, person_id) == {"trust-matters": "immediately"}
    assert _person(db, "max@example.org").area == "portsmouth"


def test_a_suppressed_address_cannot_resubscribe_from_the_link(client, db, settings):
    person_id = _active(db, "bounce@example.org")
    with db.transaction() as s:
        suppress(s, [person_id], "bounced")
    path = _manage_path(settings, person_id)
    page = client.get(path)
    assert b"We cannot email you at the moment" in page.data
    response = client.post(path, data={"csrf_token": csrf_from(page.data), "topics": ["careers"], "action": "save"})
    assert response.status_code == 400
    assert _subscriptions(db, person_id) == {}


def test_email_me_a_link_answers_the_same_for_any_address(client, db, smtp_server, celery_workers):
    _active(db, "known@example.org")
    answers = []
    for address in ("known@example.org", "unknown@example.org"):
        page = client.get("/manage")
        response = client.post("/manage", data={"csrf_token": csrf_from(page.data), "email": address})
        assert response.status_code == 200
        answers.append(without_nonce(response))
    assert answers[0] == answers[1]
    [mail] = smtp_server.wait_for("known@example.org")
    assert mail.message["Subject"] == "Manage your subscriptions"
    assert client.get(path_of(manage_link(mail))).status_code == 200
    bad = client.post("/manage", data={"csrf_token": csrf_from(client.get("/manage").data), "email": "nope"})
    assert bad.status_code == 400 and b"correct format" in bad.data
    assert smtp_server.messages_to("unknown@example.org") == []


def test_manage_link_mails_are_capped_per_address(client, db, smtp_server, celery_workers):
    _active(db, "often@example.org")
    csrf = csrf_from(client.get("/manage").data)
    for _ in range(5):
        assert client.post("/manage", data={"csrf_token": csrf, "email": "often@example.org"}).status_code == 200
    smtp_server.wait_for("often@example.org", count=3)
    import time

    time.sleep(1.5)  # room for a fourth to arrive, were it sent
    assert len(smtp_server.messages_to("often@example.org")) == 3


def test_the_team_changes_choices_on_someones_behalf_and_it_is_recorded_as_theirs(client, db):
    person_id = _active(db, "phoned@example.org", topics=("trust-matters", "careers"))
    with db.transaction() as s:
        from mailer.audience.subscriptions import unsubscribe
        from mailer.models import Topic

        unsubscribe(s, person_id, s.scalar(select(Topic.id).where(Topic.slug == "careers")))
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    page = client.get(f"/admin/subscribers/{person_id}")
    assert page.status_code == 200 and b"Change on their behalf" in page.data
    response = client.post(
        f"/admin/subscribers/{person_id}/preferences",
        data={
            "csrf_token": csrf_from(page.data),
            "topics": ["trust-matters", "careers"],
            "frequency-trust-matters": "weekly",
            "frequency-careers": "immediately",
            "area": "southampton",
            "action": "save",
        },
    )
    assert response.status_code == 303
    shown = client.get(response.headers["Location"]).data
    assert b"except careers" in shown  # they left it: only they can come back to it
    assert _subscriptions(db, person_id) == {"trust-matters": "weekly"}
    assert _person(db, "phoned@example.org").area == "southampton"
    event = _events(db, person_id)[-1]
    assert event.channel == "admin" and event.admin_user_id is not None
    assert b"by publisher@hiow.nhs.uk" in shown

    bad = client.post(
        f"/admin/subscribers/{person_id}/preferences",
        data={"csrf_token": csrf_from(page.data), "topics": ["trust-matters"], "area": "narnia", "action": "save"},
    )
    assert bad.status_code == 400 and b"There is a problem" in bad.data
    assert _person(db, "phoned@example.org").area == "southampton"
