"""A signed link never reaches another person.

Links named plain row ids, and SQLite gives the id of a deleted row to the next one: after retention
deleted a pending sign-up, its never-expiring unsubscribe link unsubscribed the next, unrelated person
given the same id, and its confirm link (with UNCONFIRMED_DAYS under 7) confirmed their sign-up. Now links
name a random public id, and ids that reach Message-IDs and old links are never reused on SQLite either.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from conftest import csrf_from
from mailer.audience.retention import delete_unconfirmed
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.models import ConsentEvent, Subscriber, Subscription, utcnow
from support.flows import confirm_link, legacy_token, manage_link, path_of, subscribe, unsubscribe_link


def _received_links(smtp_server, address: str) -> dict[str, str]:
    [mail] = smtp_server.wait_for(address)
    return {
        "confirm": path_of(confirm_link(mail)),
        "manage": path_of(manage_link(mail)),
        "unsubscribe": path_of(unsubscribe_link(mail)),
        "message_id": mail.message["Message-ID"],
    }


def _person(db, address: str):
    with db.transaction() as s:
        subscriber = s.scalar(select(Subscriber).where(Subscriber.email_key == address))
        request_id = s.scalar(
            select(func.max(ConsentEvent.id)).where(
                ConsentEvent.subscriber_id == subscriber.id, ConsentEvent.kind == "subscribe_requested"
            )
        )
        return subscriber.id, request_id


def _state(db, subscriber_id: int) -> dict:
    """Everything the old links could change about a person."""
    with db.transaction() as s:
        subscriber = s.get(Subscriber, subscriber_id)
        return {
            "status": subscriber.status,
            "area": subscriber.area,
            "open": sorted(
                (r.topic.slug, r.frequency)
                for r in s.scalars(
                    select(Subscription).where(
                        Subscription.subscriber_id == subscriber_id, Subscription.ended_at.is_(None)
                    )
                )
            ),
            "events": sorted(s.scalars(select(ConsentEvent.kind).where(ConsentEvent.subscriber_id == subscriber_id))),
        }


def _give_out_again(db, table: str, next_id: int) -> None:
    """Make the database hand out `next_id` next, as SQLite did by itself before AUTOINCREMENT (a restore, a
    reset sequence or a table rebuilt by hand can do it anywhere): the links must not depend on ids."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {next_id}, false)"))
        elif conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
            conn.execute(
                text("UPDATE sqlite_sequence SET seq = :seq WHERE name = :t"), {"seq": next_id - 1, "t": table}
            )


def _retention_deletes(db, subscriber_id: int, days: int = 2) -> None:
    """The sign-up was made `days` ago and never confirmed: retention (UNCONFIRMED_DAYS=1) deletes it."""
    then = utcnow() - timedelta(days=days)
    with db.transaction() as s:
        s.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(created_at=then))
        s.execute(update(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id).values(created_at=then))
    with db.transaction() as s:
        assert delete_unconfirmed(s, 1) == 1
    with db.transaction() as s:
        assert s.get(Subscriber, subscriber_id) is None


def _csrf(client) -> str:
    return csrf_from(client.get("/subscribe").data)


@pytest.mark.parametrize("same_ids", [False, True], ids=["ids as the database gives them", "the same ids again"])
def test_links_of_a_deleted_sign_up_do_nothing_to_the_next_person(client, db, smtp_server, celery_workers, same_ids):
    # Alex signs up and never confirms; the confirmation email holds all three kinds of link.
    assert subscribe(client, "alex@example.org", topics=("trust-matters",)).status_code == 303
    old = _received_links(smtp_server, "alex@example.org")
    alex_id, alex_request = _person(db, "alex@example.org")
    _retention_deletes(db, alex_id)

    if same_ids:
        _give_out_again(db, "subscribers", alex_id)
        _give_out_again(db, "consent_events", alex_request)
    # Sam, unrelated, signs up next.
    assert subscribe(client, "sam@example.org", topics=("trust-matters", "careers")).status_code == 303
    sams = _received_links(smtp_server, "sam@example.org")
    sam_id, sam_request = _person(db, "sam@example.org")
    if same_ids:
        assert (sam_id, sam_request) == (alex_id, alex_request)  # the case that went wrong
    else:
        # Ids are never handed out twice (SQLite reused them), so neither is a Message-ID built from one.
        assert sam_id > alex_id and sam_request > alex_request
        assert sams["message_id"] != old["message_id"]

    # Alex's confirm link does not confirm Sam's sign-up: not on GET, not on POST.
    pending = _state(db, sam_id)
    page = client.get(old["confirm"])
    assert page.status_code == 400 and b"not valid or has expired" in page.data
    assert client.post(old["confirm"], data={"csrf_token": _csrf(client)}).status_code == 400
    assert (
        _state(db, sam_id)
        == pending
        == {"status": "pending", "area": None, "open": [], "events": ["subscribe_requested"]}
    )

    # Sam confirms with Sam's own link.
    page = client.get(sams["confirm"])
    assert client.post(sams["confirm"], data={"csrf_token": csrf_from(page.data)}).status_code == 200
    active = _state(db, sam_id)
    assert active["status"] == "active" and active["open"] == [
        ("careers", "immediately"),
        ("trust-matters", "immediately"),
    ]

    # Alex's unsubscribe link: the page does not show Sam's subscriptions; neither POST changes anything.
    page = client.get(old["unsubscribe"])
    assert page.status_code == 400 and b"Careers" not in page.data
    assert client.post(old["unsubscribe"], data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert client.post(old["unsubscribe"], data={"scope": "all"}).status_code == 400
    # Alex's manage link: not Sam's preferences, and saving through it changes nothing.
    page = client.get(old["manage"])
    assert page.status_code == 400 and b"sam@example.org" not in page.data
    response = client.post(old["manage"], data={"csrf_token": _csrf(client), "action": "unsubscribe-all"})
    assert response.status_code == 400
    response = client.post(old["manage"], data={"csrf_token": _csrf(client), "area": "portsmouth", "action": "save"})
    assert response.status_code == 400
    assert _state(db, sam_id) == active

    # Sam's own links still work.
    assert b"sam@example.org" in client.get(sams["manage"]).data
    assert client.post(sams["unsubscribe"], data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert _state(db, sam_id)["status"] == "unsubscribed"


# --- links already in inboxes, made before public ids -------------------------------------------------------


def _active(db, address: str, topics=("trust-matters", "careers")) -> int:
    with db.transaction() as s:
        outcome = request_subscription(s, email=address, topic_slugs=list(topics))
        confirm_subscription(s, outcome.request_id)
        return outcome.subscriber_id


def test_an_old_unsubscribe_link_is_honoured_only_where_ids_were_never_reused(client, db, settings):
    person = _active(db, "kept@example.org")
    token = legacy_token(settings, "unsubscribe", [person, 0])
    before = _state(db, person)
    if db.dialect == "postgresql":
        # Sequences never gave an id twice: the link can only be this person's, and an old footer must work.
        assert b"Unsubscribe" in client.get(f"/u/{token}").data
        assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert _state(db, person)["status"] == "unsubscribed"
        return
    # On SQLite nothing tells this person from someone later given the id: nothing happens, and the page
    # offers to email a fresh link instead.
    page = client.get(f"/u/{token}")
    assert page.status_code == 400 and b"Email me a new link" in page.data
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert client.post(f"/u/{token}", data={"scope": "all"}).status_code == 400
    assert _state(db, person) == before


def test_an_old_manage_link_works_only_for_the_address_it_was_sent_to(client, db, settings):
    person = _active(db, "kim@example.org")
    prefix = hashlib.sha256(b"kim@example.org").hexdigest()[:12]
    page = client.get(f"/manage/{legacy_token(settings, 'manage', [person, prefix])}")
    assert page.status_code == 200 and b"kim@example.org" in page.data
    other = hashlib.sha256(b"someone-else@example.org").hexdigest()[:12]
    assert client.get(f"/manage/{legacy_token(settings, 'manage', [person, other])}").status_code == 400


def test_an_old_confirm_link_confirms_only_a_request_made_before_it(client, db, settings):
    with db.transaction() as s:
        outcome = request_subscription(s, email="late@example.org", topic_slugs=["careers"])
    token = legacy_token(settings, "confirm", outcome.request_id, timed=True)
    with db.sessions() as s:
        made_at = s.get(ConsentEvent, outcome.request_id).created_at
    if db.dialect != "postgresql":
        # A request made after the link was signed has a reused id: the link was for someone else's.
        later = utcnow() + timedelta(minutes=5)
        with db.transaction() as s:
            s.execute(update(ConsentEvent).where(ConsentEvent.id == outcome.request_id).values(created_at=later))
        assert client.get(f"/confirm/{token}").status_code == 400
        assert client.post(f"/confirm/{token}", data={"csrf_token": _csrf(client)}).status_code == 400
        assert _state(db, outcome.subscriber_id)["status"] == "pending"
        with db.transaction() as s:
            # Back as it was made, before the link was signed (utcnow() here could be a second after the signing).
            s.execute(update(ConsentEvent).where(ConsentEvent.id == outcome.request_id).values(created_at=made_at))
    # The link sent for this request, within its 7 days: it still confirms.
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200
    assert client.post(f"/confirm/{token}", data={"csrf_token": csrf_from(page.data)}).status_code == 200
    assert _state(db, outcome.subscriber_id)["status"] == "active"


def test_links_are_bound_to_the_public_id_not_the_row(client, db, app):
    """A link carries the public id; naming a real row id in the new format reaches nobody."""
    person = _active(db, "row@example.org")
    links = app.extensions["mailer"].links
    with db.transaction() as s:
        public_id = s.get(Subscriber, person).public_id
    assert re.fullmatch(r"[0-9a-f]{32}", public_id)
    payload = links.unsubscribe_token(public_id, None).split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == [public_id, 0]
    for forged in (f"{person:032d}", "f" * 32):
        assert client.get(f"/u/{links.unsubscribe_token(forged, None)}").status_code == 400
        assert client.get(f"/manage/{links.manage_token(forged)}").status_code == 400
    assert client.get(path_of(links.manage_url(public_id))).status_code == 200
