"""Names that become headers and feeds are quoted as their formats require, a digest is a list of its own, and a
test mail offers only an unsubscribe that works."""

from __future__ import annotations

from email.utils import parseaddr
from urllib.parse import urlsplit

import feedparser
import pytest
from sqlalchemy import update
from test_what_was_sent import person, plan_and_wait, publish

from conftest import BASE_URL, csrf_from, wait_until
from mailer.compose.digests import run_digest
from mailer.compose.issues import create_issue, request_send
from mailer.models import Issue, Topic
from support.flows import approve_for_sending, issue_input, send_issue, sign_in

AWKWARD = 'Get involved & "events" <2027>'


@pytest.fixture()
def awkward_topic(db):
    """The get-involved topic renamed to a name full of characters headers and XML must quote; put back after
    (topics are seeded once for the whole run)."""
    with db.transaction() as s:
        before = s.query(Topic).filter_by(slug="get-involved").one().name
        s.execute(update(Topic).where(Topic.slug == "get-involved").values(name=AWKWARD))
    yield AWKWARD
    with db.transaction() as s:
        s.execute(update(Topic).where(Topic.slug == "get-involved").values(name=before))


def list_id_of(mail) -> tuple[str, str]:
    """(label, id) of the List-Id as a mail program reads it: RFC 2919's `phrase <id>`, parsed as an address."""
    return parseaddr(mail.message["List-Id"])


def test_a_topic_name_with_quotes_ampersands_and_angle_brackets_survives_the_feeds_and_the_list_id(
    client, db, settings, smtp_server, celery_workers, awkward_topic
):
    person(db, "reader@example.org", "get-involved")
    publish(db, "Open day in Newport", topic="get-involved")
    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject="Events: December", body="Come along.", topic="get-involved"))
        approve_for_sending(s, issue.id)
        request_send(s, issue.id, settings=settings)
        issue_id = issue.id
    plan_and_wait(db, issue_id)

    for path in ("/news/feed.atom", "/news/feed.rss"):
        feed = feedparser.parse(client.get(path).data)
        assert feed.bozo == 0, (path, feed.get("bozo_exception"))
        assert {e.title for e in feed.entries} == {"Open day in Newport", "Events: December"}
        assert all([t.term for t in e.tags] == [AWKWARD] for e in feed.entries), path

    [mail] = smtp_server.messages_to("reader@example.org")
    assert list_id_of(mail) == (AWKWARD, "get-involved.mailer.test")
    assert f"subscribed to {AWKWARD} from" in mail.text()


def test_a_digest_of_several_topics_is_the_digest_list_and_names_every_topic(db, settings, smtp_server, celery_workers):
    person(db, "weekly@example.org", "project-fusion:weekly", "get-involved:weekly")
    person(db, "fusion@example.org", "project-fusion:monthly")
    publish(db, "Open day in Newport", topic="get-involved")  # the oldest: it used to name the list
    publish(db, "Ward move agreed")
    publish(db, "Clinic opens in Ryde")
    plan_and_wait(db, *run_digest(db, "weekly", settings=settings).emails)
    [digest] = smtp_server.messages_to("weekly@example.org")
    assert list_id_of(digest) == ("Trust Matters digest", "digest.mailer.test")
    intro = " ".join(digest.text().split())
    assert (
        "Here are the 3 updates since your last digest: 2 in Project Fusion updates and 1 in Get involved and events."
        in intro
    )
    assert "Bringing community, mental health" not in intro  # Project Fusion's framing is not the digest's

    plan_and_wait(db, *run_digest(db, "monthly", settings=settings).emails)
    [monthly] = smtp_server.messages_to("fusion@example.org")
    assert list_id_of(monthly) == ("Trust Matters digest", "digest.mailer.test")
    assert "Here are the 2 updates since your last digest, all in Project Fusion updates." in " ".join(
        monthly.text().split()
    )


def unsubscribe_answers(client, mail) -> list[tuple[str, int]]:
    """What each way out the mail offers in List-Unsubscribe answers, as a mail program would use it: a POST
    of `List-Unsubscribe=One-Click` (RFC 8058) when the mail offers List-Unsubscribe-Post, a GET otherwise."""
    one_click = mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    anonymous = client.application.test_client()  # a mail provider: no cookies, no CSRF token
    answers = []
    for target in (t.strip().strip("<>") for t in mail.message["List-Unsubscribe"].split(",")):
        if not target.startswith(BASE_URL + "/"):
            continue
        path = urlsplit(target).path
        if one_click:
            response = anonymous.post(path, data={"List-Unsubscribe": "One-Click"})
        else:
            response = anonymous.get(path)
        answers.append(("POST" if one_click else "GET", response.status_code))
    return answers


def test_a_test_mail_offers_no_one_click_unsubscribe_and_its_link_works(client, db, smtp_server, celery_workers):
    person(db, "reader@example.org", "trust-matters")
    sign_in(client, db, role="publisher", email="publisher@hiow.nhs.uk")
    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject="November", body="Draft words.", topic="trust-matters"))
        issue_id = issue.id
    page = client.get(f"/admin/issues/{issue_id}")
    client.post(f"/admin/issues/{issue_id}/test", data={"csrf_token": csrf_from(page.data), "to": "me@hiow.nhs.uk"})
    [test] = smtp_server.wait_for("me@hiow.nhs.uk")
    assert test.message["Subject"] == "[TEST] November"
    assert test.message["List-Unsubscribe"] == f"<{BASE_URL}/manage>"
    assert test.message["List-Unsubscribe-Post"] is None
    assert unsubscribe_answers(client, test) == [("GET", 200)]
    assert b"Email me a link" in client.get("/manage").data  # where anyone gets their own preference link

    # The real mail of the same issue keeps its working one-click unsubscribe.
    send_issue(client, issue_id)
    [real] = smtp_server.wait_for("reader@example.org")
    wait_until(lambda: _status(db, issue_id) == "sent", message="issue sent")
    assert real.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe_answers(client, real) == [("POST", 200)]


def _status(db, issue_id) -> str:
    with db.sessions() as s:
        return s.get(Issue, issue_id).status


@pytest.mark.parametrize(
    "label",
    [
        'Café & "events" <2027>',  # not ASCII: encoded-words
        AWKWARD + " for carers, families and everyone who supports them",  # too long for a quoted-string
    ],
)
def test_a_list_label_that_must_be_encoded_never_reads_as_another_list_id(label):
    """A parser that decodes encoded-words before it reads the address (Python's policy.default, then
    parseaddr) must still find the real list id, whatever brackets and quotes the topic's name has."""
    from email import message_from_bytes, policy

    from mailer.render.headers import DECODED_LOOKALIKES, list_id

    raw = list_id(label, "get-involved.mailer.test") + b"\r\n\r\n"
    header = message_from_bytes(raw, policy=policy.default)["List-Id"]
    name, identifier = parseaddr(str(header))
    assert identifier == "get-involved.mailer.test", header
    assert name.translate(str.maketrans({v: k for k, v in DECODED_LOOKALIKES.items()})) == label
