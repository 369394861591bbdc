"""Auto-pause end to end, as the team meets it: a list of 1,000 of whom one in ten has a mailbox that does not exist,
sent through the admin pages by real Celery workers to a real SMTP server that refuses the dead mailboxes with
550 5.1.1. The send pauses itself before a fifth of the list has gone, the issue's page says why with its figures,
every publisher and admin is emailed, the dead mailboxes met so far are suppressed naming the report that did it,
and once a publisher resumes, the rest of the list goes out without the send pausing itself again."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from conftest import BASE_URL, csrf_from, wait_until
from mailer.accounts import create_admin
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.models import AuditEvent, Delivery, FeedbackEvent, Issue, Subscriber, Suppression
from support.flows import send_issue, sign_in, write_issue

LIST = 1000
DEAD_EVERY = 10  # one in ten mailboxes does not exist
SUBJECT = "Trust Matters: December"


def _address(n: int) -> str:
    return f"reader{n:04d}@example.org"


def _dead(n: int) -> bool:
    return n % DEAD_EVERY == DEAD_EVERY - 1


@pytest.fixture()
def the_list(db, smtp_server):
    with db.transaction() as s:
        for n in range(LIST):
            outcome = request_subscription(s, email=_address(n), topic_slugs=["trust-matters"])
            confirm_subscription(s, outcome.request_id)
    for n in range(LIST):
        if _dead(n):
            smtp_server.refuse(_address(n), f"550 5.1.1 <{_address(n)}>: Recipient address rejected: User unknown")
    return [_address(n) for n in range(LIST)]


def _counts(db, issue_id) -> dict[str, int]:
    with db.sessions() as s:
        return dict(
            s.execute(
                select(Delivery.status, func.count()).where(Delivery.issue_id == issue_id).group_by(Delivery.status)
            ).all()
        )


def _issue(db, issue_id) -> Issue:
    with db.sessions() as s:
        issue = s.get(Issue, issue_id)
        s.expunge(issue)
        return issue


def test_a_list_with_one_dead_mailbox_in_ten_pauses_itself_and_goes_on_once_a_publisher_resumes(
    client, db, smtp_server, celery_workers, the_list
):
    sign_in(client, db, email="publisher@hiow.nhs.uk", role="publisher")
    with db.transaction() as s:
        create_admin(s, "admin@hiow.nhs.uk", "a long enough password", role="admin")
        create_admin(s, "editor@hiow.nhs.uk", "a long enough password", role="editor")
    issue_id = write_issue(client, subject=SUBJECT)
    send_issue(client, issue_id)

    # It pauses itself, and what was already in flight finishes: then nothing moves until someone decides.
    wait_until(lambda: _issue(db, issue_id).status == "paused", 180, message="the send to pause itself")
    wait_until(lambda: not _counts(db, issue_id).get("sending"), 60, message="the batches in flight to finish")
    counts = _counts(db, issue_id)
    answered = counts.get("sent", 0) + counts.get("bounced", 0)
    print(f"paused itself after {answered} of {LIST} messages: {counts}")
    assert 0 < answered < LIST // 5, counts  # before a fifth of the list has gone
    assert counts.get("bounced", 0) >= 6 and counts["pending"] == LIST - answered, counts
    issue = _issue(db, issue_id)
    # The reason gives the figures it paused on; a batch already sending then finished its chunk.
    judged = re.match(r"(\d+) of the first (\d+) messages bounced", issue.paused_reason)
    assert issue.auto_pause is True and judged and "above the 5.0% limit" in issue.paused_reason
    assert int(judged[1]) <= counts["bounced"] and int(judged[2]) <= answered

    # The issue's page says why, with the figures, and offers a publisher Resume and Cancel.
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert "This send paused itself" in page and issue.paused_reason in page
    assert re.search(rf'data-figure="hard_bounces">{counts["bounced"]}<', page)
    assert re.search(rf'data-figure="sent">{answered}<', page) and 'id="issue-figures-bounce-warning"' in page
    assert f"/admin/issues/{issue_id}/resume" in page and f"/admin/issues/{issue_id}/cancel" in page

    # Every publisher and admin got the email (by the transactional worker), the editor did not.
    for address in ("publisher@hiow.nhs.uk", "admin@hiow.nhs.uk"):
        [notice] = wait_until(lambda a=address: smtp_server.messages_to(a), 60, message=f"the notice to {address}")
        assert notice.message["Subject"] == f"Paused by itself: {SUBJECT}"
        assert issue.paused_reason in notice.text() and f"{BASE_URL}/admin/issues/{issue_id}" in notice.text()
        assert notice.message["List-Unsubscribe"] is None
    assert smtp_server.messages_to("editor@hiow.nhs.uk") == []

    # The dead mailboxes met so far are suppressed, each naming the refusal it came from and this issue.
    with db.sessions() as s:
        bounced = list(
            s.execute(
                select(Subscriber.email, Subscriber.status, Suppression, FeedbackEvent)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .join(Suppression, Suppression.email_hash == Subscriber.email_hash)
                .join(FeedbackEvent, FeedbackEvent.id == Suppression.event_id)
                .where(Delivery.issue_id == issue_id, Delivery.status == "bounced")
            )
        )
    assert len(bounced) == counts["bounced"]
    for email, status, suppression, event in bounced:
        assert _dead(int(email[6:10])) and status == "bounced"
        assert suppression.reason == "bounced" and suppression.issue_id == issue_id
        assert event.source == "rcpt" and event.status == "5.1.1" and "User unknown" in event.diagnostic
    page = client.get(f"/admin/issues/{issue_id}/recipients?who=bounced").get_data(as_text=True)
    assert page.count(">5.1.1<") == counts["bounced"]

    # A publisher resumes: the rest goes out, and the send does not pause itself again.
    response = client.post(f"/admin/issues/{issue_id}/resume", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    wait_until(lambda: _issue(db, issue_id).status == "sent", 300, message="the rest of the list to go out")
    counts = _counts(db, issue_id)
    dead = sum(1 for n in range(LIST) if _dead(n))
    assert counts == {"sent": LIST - dead, "bounced": dead}, counts
    issue = _issue(db, issue_id)
    assert issue.auto_pause is False and issue.paused_reason is None
    with db.sessions() as s:
        pauses = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "issue.auto_pause"))
        suppressed = s.scalar(select(func.count()).select_from(Suppression).where(Suppression.issue_id == issue_id))
    assert pauses == 1 and suppressed == dead
    for n, address in enumerate(the_list):  # each live reader got it once; nobody dead was mailed
        assert len(smtp_server.messages_to(address)) == (0 if _dead(n) else 1), address
