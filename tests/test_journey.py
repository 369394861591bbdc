"""The whole journey through the web pages, with real Celery workers, Redis and an SMTP server."""

from __future__ import annotations

from sqlalchemy import select

from conftest import BASE_URL, wait_until
from mailer.feedback import verp
from mailer.models import ConsentEvent, Issue, Subscriber, Subscription
from support.flows import (
    confirm,
    confirm_link,
    links_in,
    path_of,
    send_issue,
    sign_in,
    subscribe,
    unsubscribe_link,
    without_nonce,
    write_issue,
)


def _subscriber(db, email):
    with db.transaction() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email_key == email.lower()))


def _issue_status(db, issue_id):
    with db.transaction() as s:
        return s.get(Issue, issue_id).status


def test_subscribe_confirm_send_and_one_click_unsubscribe(client, db, settings, smtp_server, celery_workers):
    response = subscribe(
        client, "Pat.Carer@Example.org", topics=["trust-matters", "project-fusion"], name="Pat", area="isle-of-wight"
    )
    assert response.status_code == 303
    assert client.get(response.headers["Location"]).status_code == 200

    [confirmation] = smtp_server.wait_for("Pat.Carer@example.org")
    assert confirmation.message["Subject"] == "Confirm your subscription"
    assert confirmation.message["List-Unsubscribe-Post"] is None  # transactional mail: no one-click POST
    assert confirm_link(confirmation).startswith(BASE_URL + "/confirm/")
    assert confirm_link(confirmation) in confirmation.html()
    assert _subscriber(db, "pat.carer@example.org").status == "pending"

    page = confirm(client, confirmation)
    assert page.status_code == 200 and b"You are subscribed" in page.data
    person = _subscriber(db, "pat.carer@example.org")
    assert person.status == "active" and person.name == "Pat" and person.area == "isle-of-wight"
    with db.transaction() as s:
        kinds = [e.kind for e in s.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == person.id))]
        topics = sorted(
            t.topic.slug for t in s.scalars(select(Subscription).where(Subscription.subscriber_id == person.id))
        )
    assert kinds == ["subscribe_requested", "confirm"]
    assert topics == ["project-fusion", "trust-matters"]

    sign_in(client, db)
    issue_id = write_issue(
        client,
        subject="Trust Matters: what changes in April",
        body=(
            "# Project Fusion\n\nWe are bringing services together. Read [the plan](https://example.nhs.uk/plan).\n\n"
            "* Community services\n* Mental health services"
        ),
    )
    assert b"Project Fusion" in client.get(f"/admin/issues/{issue_id}/preview").data
    send_issue(client, issue_id)

    [newsletter] = smtp_server.wait_for("Pat.Carer@example.org", count=2)[1:]
    msg = newsletter.message
    assert msg["Subject"] == "Trust Matters: what changes in April"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"] == f"<{verp.message_id(issue_id, person.id, settings)}>"  # signed: reports quote it
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Trust Matters" in msg["List-Id"]
    one_click = unsubscribe_link(newsletter)
    assert one_click.startswith(BASE_URL + "/u/")
    assert one_click in newsletter.text() and one_click in newsletter.html()
    assert "the plan (https://example.nhs.uk/plan)" in " ".join(newsletter.text().split())
    assert '<a href="https://example.nhs.uk/plan"' in newsletter.html()
    wait_until(lambda: _issue_status(db, issue_id) == "sent", message="issue to be marked sent")

    # The mail provider's one-click POST: no CSRF token, no cookies, 200.
    anonymous = client.application.test_client()
    response = anonymous.post(path_of(one_click), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    with db.transaction() as s:
        open_topics = sorted(
            t.topic.slug
            for t in s.scalars(
                select(Subscription).where(Subscription.subscriber_id == person.id, Subscription.ended_at.is_(None))
            )
        )
    assert open_topics == ["project-fusion"]

    second = write_issue(client, subject="Trust Matters: May")
    send_issue(client, second)
    wait_until(lambda: _issue_status(db, second) == "sent", message="second issue to finish")
    assert len(smtp_server.messages_to("pat.carer@example.org")) == 2


def test_unknown_and_known_addresses_get_the_same_answer(client, db, smtp_server, celery_workers):
    first = subscribe(client, "known@example.org")
    smtp_server.wait_for("known@example.org")
    again = subscribe(client, "known@example.org")
    fresh = subscribe(client, "new@example.org")
    assert first.status_code == again.status_code == fresh.status_code == 303
    assert first.headers["Location"] == again.headers["Location"] == fresh.headers["Location"]
    page = again.headers["Location"]
    assert without_nonce(client.get(page)) == without_nonce(client.get(fresh.headers["Location"]))


def test_confirmation_mails_to_one_address_are_capped(client, db, smtp_server, celery_workers):
    for _ in range(5):
        assert subscribe(client, "flood@example.org").status_code == 303
    smtp_server.wait_for("flood@example.org", count=3)
    subscribe(client, "other@example.org")
    smtp_server.wait_for("other@example.org")  # the workers have drained the queue by now
    assert len(smtp_server.messages_to("flood@example.org")) == 3


def test_confirmation_link_in_html_and_text_is_the_same(client, db, smtp_server, celery_workers):
    subscribe(client, "both@example.org", topics=["careers"])
    [mail] = smtp_server.wait_for("both@example.org")
    html_links = [u for u in links_in(mail.html()) if "/confirm/" in u]
    assert html_links and html_links[0].split('"')[0] == confirm_link(mail)
