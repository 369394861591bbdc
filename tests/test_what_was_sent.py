"""What was sent is kept: an issue, an update email and a digest are frozen when their send starts, and every
batch, resume, late recipient, test send, preview and web version is that frozen mail, whatever is published,
edited by hand or rendered differently afterwards. "Latest updates" are the issue's topic's, published before
the send started."""

from __future__ import annotations

import email
import email.policy
import re
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import delete, select, update

from conftest import BASE_URL, csrf_from, wait_until
from mailer.audience import commands
from mailer.audience.inputs import NewSubscriber
from mailer.audience.lookups import parse_in
from mailer.audit import SYSTEM
from mailer.compose.digests import run_digest
from mailer.compose.issues import create_issue, pause_issue, request_send, resume_issue
from mailer.compose.recipients import planned_audience
from mailer.compose.updates import create_update, publish_update
from mailer.models import FrozenContent, Issue, Subscription, Update, utcnow
from support.flows import approve_for_sending, issue_input, sign_in, update_input

PERSONAL = re.compile(re.escape(BASE_URL) + r"/(u|manage)/[A-Za-z0-9._~-]+")
UPDATE_LINK = re.compile(r'href="(?:' + re.escape(BASE_URL) + r')?(/news/updates/[^"]+)"')


def person(db, email, *subscriptions):
    with db.transaction() as s:
        return commands.add_subscriber(
            s,
            parse_in(
                s,
                NewSubscriber,
                {
                    "email": email,
                    "subscriptions": list(subscriptions),
                    "area": None,
                    "consent": {"source": "test", "collected": True},
                },
            ),
            SYSTEM,
        ).subscriber.id


def publish(db, title, topic="project-fusion", body="", settings=None) -> int:
    """Publish an update (its own as-it-happens email is left unplanned unless a test plans it); its id."""
    with db.transaction() as s:
        made = create_update(s, update_input(s, title=title, topic=topic, summary=f"About {title}.", body=body))
        publish_update(s, made.id, settings=settings)
        return made.id


def approved_issue(db, blocks, topic="project-fusion", subject="Project Fusion: December") -> int:
    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject=subject, body="", topic=topic, blocks=blocks))
        approve_for_sending(s, issue.id)
        return issue.id


def start(db, issue_id, settings=None) -> None:
    with db.transaction() as s:
        request_send(s, issue_id, settings=settings)


def plan_and_wait(db, *issue_ids) -> None:
    from mailer.tasks import enqueue, plan_issue

    for issue_id in issue_ids:
        enqueue(plan_issue, issue_id)
    for issue_id in issue_ids:
        wait_until(lambda i=issue_id: _issue(db, i).status == "sent", 30, message=f"issue {issue_id} to be sent")


def _issue(db, issue_id) -> Issue:
    with db.sessions() as s:
        issue = s.get(Issue, issue_id)
        s.expunge(issue)
        return issue


def update_links(html: str) -> list[str]:
    """The update pages an email or a page links to, in order, as site paths."""
    return [
        m.removeprefix(BASE_URL)
        for m in re.findall(r'href="((?:' + re.escape(BASE_URL) + r')?/news/updates/[^"]+)"', html)
    ]


def html_of(compiled) -> str:
    """The HTML part of a compiled message, as a client shows it."""
    message = email.message_from_bytes(compiled.unstuff(compiled.fill({})), policy=email.policy.default)
    return message.get_body(("html",)).get_content()


def body_parts(mail) -> tuple[str, str]:
    """(text, html) with the recipient's own links taken out: what must be the same for everyone."""
    return PERSONAL.sub("<personal>", mail.text()), PERSONAL.sub("<personal>", mail.html())


def web_content(page_html: str) -> str:
    return re.search(r'<div class="tm-issue-web">(.*?)</div>\s*<div class="nhsuk-inset-text">', page_html, re.S).group(
        1
    )


def test_latest_updates_are_the_topics_own_from_before_the_send_and_the_web_version_stays_what_was_sent(
    client, db, settings, smtp_server, celery_workers
):
    person(db, "reader@example.org", "project-fusion")
    publish(db, "Ward move agreed")
    publish(db, "Volunteers wanted for the open day", topic="get-involved")  # another topic
    publish(db, "Clinic opens in Ryde")
    issue_id = approved_issue(db, [{"type": "text", "markdown": "Our news."}, {"type": "updates", "count": 3}])
    start(db, issue_id, settings)
    publish(db, "Published as the send began")  # after the send started, before any batch ran
    plan_and_wait(db, issue_id)

    [mail] = smtp_server.messages_to("reader@example.org")
    sent = update_links(mail.html())
    assert sent == ["/news/updates/clinic-opens-in-ryde", "/news/updates/ward-move-agreed"]
    assert "Volunteers" not in mail.text() and "Published as the send began" not in mail.text()
    assert "Clinic opens in Ryde" in mail.text() and "Ward move agreed" in mail.text()

    issue = _issue(db, issue_id)
    with time_machine.travel(utcnow() + timedelta(days=7), tick=True):  # a week later, more news since
        publish(db, "A week later: the new ward opens")
        publish(db, "A week later: get involved", topic="get-involved")
        page = client.get(f"/news/{issue.slug}")
    assert page.status_code == 200
    shown = web_content(page.data.decode())
    assert update_links(shown) == sent  # the same updates, in the same order, as the email
    for title in ("Clinic opens in Ryde", "Ward move agreed", "Our news."):
        assert title in shown
    assert "A week later" not in shown and "Volunteers" not in shown and "as the send began" not in shown

    # The team's preview of the sent issue is the email that went out, too.
    sign_in(client, db, role="publisher", email="publisher@hiow.nhs.uk")
    preview = client.get(f"/admin/issues/{issue_id}/preview").data.decode()
    assert update_links(preview) == sent


def test_a_send_is_one_mail_to_the_end_whatever_is_published_or_edited_by_hand_meanwhile(
    client, db, settings, smtp_server, celery_workers
):
    for i in range(3):
        person(db, f"reader{i}@example.org", "project-fusion")
    ward = publish(db, "Ward move agreed")
    issue_id = approved_issue(
        db,
        [
            {"type": "heading", "text": "As approved"},
            {"type": "text", "markdown": "The approved words."},
            {"type": "updates", "count": 2},
        ],
    )
    start(db, issue_id, settings)
    with db.transaction() as s:
        pause_issue(s, issue_id)
    # While it is paused: news is published, and someone edits the rows by hand.
    publish(db, "News while it was paused")
    with db.transaction() as s:
        s.execute(
            update(Issue)
            .where(Issue.id == issue_id)
            .values(blocks=[{"type": "text", "markdown": "Edited by hand in the database."}], preheader="Edited")
        )
        s.execute(update(Update).where(Update.id == ward).values(title="Retitled by hand", summary="Changed."))
    with db.transaction() as s:
        resume_issue(s, issue_id)
    plan_and_wait(db, issue_id)

    mails = [smtp_server.messages_to(f"reader{i}@example.org")[0] for i in range(3)]
    for mail in mails:
        assert "As approved" in mail.text() and "The approved words." in mail.html()
        assert "Ward move agreed" in mail.text() and "About Ward move agreed." in mail.html()
        for changed in ("Edited by hand", "Retitled", "News while it was paused", "Edited"):
            assert changed not in mail.text() and changed not in mail.html()
    assert body_parts(mails[0]) == body_parts(mails[1]) == body_parts(mails[2])  # byte for byte but their links

    # A test send of it now, and the admin preview, are that same mail.
    sign_in(client, db, role="publisher", email="publisher@hiow.nhs.uk")
    page = client.get(f"/admin/issues/{issue_id}").data.decode()
    assert "The approved words." in page and "Edited by hand" not in page  # the plain-text part shown
    client.post(f"/admin/issues/{issue_id}/test", data={"csrf_token": csrf_from(page), "to": "me@hiow.nhs.uk"})
    [test] = smtp_server.wait_for("me@hiow.nhs.uk")
    assert test.message["Subject"] == "[TEST] Project Fusion: December"
    assert (
        PERSONAL.sub("<personal>", test.html().replace(f"{BASE_URL}/manage", "<personal>")) == body_parts(mails[0])[1]
    )


@pytest.fixture()
def in_process_batches(app, db, monkeypatch):
    """Run send batches in this process (the worker's own code) with MJML switched off: a batch that renders
    fails. Each run starts with an empty per-process cache, as a freshly started worker does."""
    import mailer.render.email
    from mailer import tasks

    def no_mjml(*_args, **_kwargs):
        raise AssertionError("a send batch rendered MJML")

    def run(issue_id):
        from mailer.delivery import dispatch

        monkeypatch.setattr(tasks, "_compiled", OrderedDict())
        ranges = dispatch.plan_issue(db, issue_id, planned_audience, 2)
        with monkeypatch.context() as patched:
            patched.setattr(mailer.render.email, "mjml2html", no_mjml)
            for lo, hi in ranges:
                monkeypatch.setattr(tasks, "_compiled", OrderedDict())  # each batch on another worker
                tasks.send_batch(issue_id, lo, hi)

    return run


def test_sending_a_frozen_issue_renders_nothing(db, settings, smtp_server, in_process_batches):
    for i in range(4):
        person(db, f"reader{i}@example.org", "project-fusion")
    issue_id = approved_issue(db, [{"type": "text", "markdown": "Rendered once, when the send started."}])
    start(db, issue_id, settings)
    in_process_batches(issue_id)  # two batches of two, each "on another worker"
    mails = [smtp_server.messages_to(f"reader{i}@example.org")[0] for i in range(4)]
    assert all("Rendered once, when the send started." in m.text() for m in mails)
    assert len({body_parts(m) for m in mails}) == 1
    assert _issue(db, issue_id).status == "sent"
    with db.sessions() as s:
        frozen = s.get(FrozenContent, issue_id)
        assert frozen.rendered_at is not None and "Rendered once" in frozen.text


def test_a_send_under_way_before_frozen_contents_existed_is_frozen_by_its_first_batch(
    db, settings, smtp_server, in_process_batches, monkeypatch
):
    import mailer.render.email

    for i in range(4):
        person(db, f"reader{i}@example.org", "project-fusion")
    issue_id = approved_issue(db, [{"type": "text", "markdown": "Frozen by the first batch."}])
    start(db, issue_id)
    with db.transaction() as s:  # as a send already sending when migration 0012 ran has it
        s.execute(delete(FrozenContent).where(FrozenContent.issue_id == issue_id))
    from mailer import tasks
    from mailer.delivery import dispatch

    renders = []
    real = mailer.render.email.mjml2html
    monkeypatch.setattr(mailer.render.email, "mjml2html", lambda *a, **k: renders.append(1) or real(*a, **k))
    [first, *rest] = dispatch.plan_issue(db, issue_id, planned_audience, 2)
    tasks.send_batch(issue_id, *first)
    assert renders == [1]
    with db.transaction() as s:  # edited by hand after the first batch went
        s.execute(update(Issue).where(Issue.id == issue_id).values(blocks=[{"type": "text", "markdown": "Edited."}]))
    in_process_batches(issue_id)  # the rest, on other workers, render nothing
    assert renders == [1]
    mails = [smtp_server.messages_to(f"reader{i}@example.org")[0] for i in range(4)]
    assert len({body_parts(m) for m in mails}) == 1 and "Frozen by the first batch." in mails[3].text()


def test_an_update_email_is_what_was_published(db, settings, smtp_server, celery_workers):
    person(db, "reader@example.org", "project-fusion")
    update_id = publish(db, "Ward move agreed", body="The **board** agreed it.", settings=settings)
    with db.transaction() as s:  # after publishing, the update and its email's blocks are changed by hand
        email_issue = s.scalar(select(Issue.id).where(Issue.update_id == update_id))
        s.execute(update(Update).where(Update.id == update_id).values(body="Changed by hand.", title="Retitled"))
        s.execute(
            update(Issue)
            .where(Issue.id == email_issue)
            .values(blocks=[{"type": "text", "markdown": "Changed by hand."}], subject="Retitled")
        )
    plan_and_wait(db, email_issue)
    [mail] = smtp_server.messages_to("reader@example.org")
    assert mail.message["Subject"] == "Ward move agreed"
    assert "<strong>board</strong>" in mail.html() and "Changed by hand" not in mail.text()
    assert "Retitled" not in mail.text()


def test_a_digest_is_kept_as_it_started_and_someone_placed_on_it_later_gets_the_same_mail(
    db, settings, smtp_server, celery_workers
):
    person(db, "early@example.org", "project-fusion:weekly")
    alpha = publish(db, "Alpha")
    report = run_digest(db, "weekly", settings=settings)
    with db.transaction() as s:  # after the digest started, the update is changed by hand
        s.execute(update(Update).where(Update.id == alpha).values(title="Alpha retitled", summary="Changed."))
    plan_and_wait(db, *report.emails)
    [early] = smtp_server.messages_to("early@example.org")
    assert "Alpha" in early.text() and "retitled" not in early.text() and "About Alpha." in early.text()

    person(db, "late@example.org", "project-fusion:weekly")  # same choices: placed on the same email
    with db.transaction() as s:
        s.execute(Subscription.__table__.update().values(started_at=datetime(2026, 1, 1, tzinfo=UTC)))
    again = run_digest(db, "weekly", settings=settings)
    plan_and_wait(db, *again.emails)
    [late] = smtp_server.wait_for("late@example.org")
    assert body_parts(late) == body_parts(early)


def test_an_issue_sent_before_contents_were_frozen_shows_every_topics_updates_as_of_its_send_everywhere(
    client, db, settings, smtp_server, in_process_batches
):
    """Before migration 0012 an issue's latest updates came from every topic, as of its send's start; one still
    sending when 0012 ran must go on like that for the rest of its recipients, its preview and a test of it, as
    its kept web page does: the topic-only rule applies only to sends that froze their contents."""
    from mailer.compose.issues import keep_archive_page
    from mailer.compose.mail import compile_issue, preview
    from mailer.delivery import dispatch
    from mailer.tasks import send_batch

    for i in range(2):
        person(db, f"reader{i}@example.org", "project-fusion")
    publish(db, "Fusion milestone reached")
    publish(db, "Drop-in at Ryde", topic="get-involved")
    issue_id = approved_issue(db, [{"type": "updates", "count": 3}])
    start(db, issue_id)
    with db.transaction() as s:  # as a send under way when migration 0012 ran has it: no frozen row
        s.execute(delete(FrozenContent).where(FrozenContent.issue_id == issue_id))
        s.execute(update(Issue).where(Issue.id == issue_id).values(archive_html=None))
    publish(db, "Published after the send began")
    [first, *rest] = dispatch.plan_issue(db, issue_id, planned_audience, 1)
    with db.transaction() as s:  # what its first recipients and its page got (no frozen row yet)
        issue = s.get(Issue, issue_id)
        assert issue.frozen is None
        before_freezing = {"preview": preview(issue, settings)[0], "test": html_of(compile_issue(issue, settings))}
        page = keep_archive_page(s, issue)
    send_batch(issue_id, *first)
    in_process_batches(issue_id)
    wanted = ["/news/updates/drop-in-at-ryde", "/news/updates/fusion-milestone-reached"]
    assert sorted(update_links(page)) == wanted
    for name, html in before_freezing.items():
        assert sorted(update_links(html)) == wanted, name
    for i in range(2):
        [mail] = smtp_server.messages_to(f"reader{i}@example.org")
        assert sorted(update_links(mail.html())) == wanted
    with db.sessions() as s:
        issue = s.get(Issue, issue_id)
        assert sorted(update_links(preview(issue, settings)[0])) == wanted
        assert sorted(update_links(html_of(compile_issue(issue, settings)))) == wanted
    assert sorted(update_links(web_content(client.get(f"/news/{_issue(db, issue_id).slug}").data.decode()))) == wanted
