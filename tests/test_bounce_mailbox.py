"""Polling a bounce mailbox on a real IMAP server (Dovecot, started here): reports recorded, messages flagged
only after their unit of work committed, a poll that died half-way harmless to read again."""

from __future__ import annotations

import imaplib

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from conftest import free_port
from mailer.cli import main
from mailer.db import Database
from mailer.feedback import mailbox, verp
from mailer.models import Delivery, FeedbackEvent, Subscriber
from mailer.tasks import make_celery
from support import report_samples as samples
from support.bounce_flows import bouncy, people, sent_issue
from support.dovecot import PASSWORD, USER, Dovecot, DovecotUnavailable


@pytest.fixture(scope="module")
def dovecot():
    server = Dovecot(free_port())
    try:
        server.start()
    except DovecotUnavailable as exc:
        pytest.skip(f"no IMAP server for these tests: {exc}")
    yield server
    server.stop()


@pytest.fixture()
def inbox(dovecot):
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port)
    imap.login(USER, PASSWORD)
    imap.select("INBOX")
    imap.uid("STORE", "1:*", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    yield imap
    imap.logout()


def _put(imap, raw: bytes) -> None:
    status, _ = imap.append("INBOX", None, None, raw)
    assert status == "OK"


def _left(imap) -> list[tuple[bytes, bytes]]:
    """(flags, first bytes) of each message still in the mailbox."""
    imap.noop()
    _status, data = imap.uid("SEARCH", None, "ALL")
    out = []
    for uid in (data[0] or b"").split():
        _s, fetched = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        [(flags, subject)] = [item for item in fetched if isinstance(item, tuple)]
        out.append((flags, subject.strip()))
    return out


def _events(db) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(FeedbackEvent))


def test_a_poll_records_each_report_once_and_clears_what_it_read(db, settings, dovecot, inbox):
    named = bouncy(settings, bounce_imap_url=dovecot.url)
    ids = people(db, ["dead@example.org", "gone@nhs.example.net", "alive@example.org"])
    issue_id, rows = sent_issue(db)
    dead = verp.envelope_for_delivery(rows[ids["dead@example.org"]], named, "x")
    _put(inbox, samples.postfix_dsn("dead@example.org", to=dead))
    gone = verp.message_id(issue_id, ids["gone@nhs.example.net"], named)  # signed: a fixed RETURN_PATH's case
    _put(inbox, samples.exchange_dsn("gone@nhs.example.net", original_id=gone))
    _put(inbox, samples.out_of_office("alive@example.org"))
    _put(inbox, samples.broken_dsn())

    polled = mailbox.poll(db, named, batch=2)  # two batches of two
    assert (polled.messages, polled.reports, polled.new, len(polled.unreadable)) == (4, 2, 2, 1)
    left = _left(inbox)
    assert len(left) == 1 and b"\\Seen" in left[0][0] and b"Undelivered" in left[0][1]  # left for a person
    with db.transaction() as s:
        assert {s.get(Subscriber, i).status for i in ids.values()} == {"bounced", "active"}
        assert s.get(Delivery, rows[ids["gone@nhs.example.net"]]).status == "bounced"
        assert set(s.scalars(select(FeedbackEvent.source))) == {"imap"}

    again = mailbox.poll(db, named)
    assert (again.messages, again.new) == (0, 0)
    # A poll that died after recording but before flagging: the same report read again records nothing new.
    _put(inbox, samples.postfix_dsn("dead@example.org", to=dead))
    replay = mailbox.poll(db, named)
    assert (replay.messages, replay.reports, replay.new) == (1, 1, 0)
    assert _events(db) == 2


def test_a_database_that_does_not_answer_leaves_the_message_unseen_for_the_next_poll(db, settings, dovecot, inbox):
    named = bouncy(settings, bounce_imap_url=dovecot.url)
    ids = people(db, ["dead@example.org"])
    _issue_id, rows = sent_issue(db)
    _put(
        inbox,
        samples.postfix_dsn(
            "dead@example.org", to=verp.envelope_for_delivery(rows[ids["dead@example.org"]], named, "x")
        ),
    )
    down = Database(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/gone")
    try:
        with pytest.raises(Exception, match="(?i)connect|refused"):
            mailbox.poll(down, named)
    finally:
        down.dispose()
    [(flags, _subject)] = _left(inbox)
    assert b"\\Seen" not in flags and b"\\Deleted" not in flags
    assert mailbox.poll(db, named).new == 1
    assert _left(inbox) == []


def test_a_wrong_password_is_a_clear_error(settings, dovecot):
    wrong = dovecot.url.replace(PASSWORD.replace(" ", "%20"), "not-it")
    with pytest.raises(mailbox.MailboxError, match="cannot be read"):
        mailbox.poll(None, settings, url=wrong)


def test_bounces_poll_reads_the_mailbox_once(db, test_env, dovecot, inbox):
    people(db, ["full@example.org"])
    _put(inbox, samples.postfix_dsn("full@example.org", status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"))
    env = {**test_env, "BOUNCE_IMAP_URL": dovecot.url}
    result = CliRunner().invoke(main, ["bounces", "poll"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 message(s), 1 report(s), 1 new" in result.output
    with db.transaction() as s:
        assert s.scalar(select(FeedbackEvent.severity)) == "soft"
        assert s.scalar(select(Subscriber.status)) == "active"  # one soft bounce is counted, nothing more


def test_beat_polls_the_mailbox_only_when_one_is_set(settings):
    assert "bounce-mailbox" not in make_celery(settings).conf.beat_schedule
    polled = make_celery(bouncy(settings, bounce_imap_url="imaps://u:p@imap.example.org/INBOX", bounce_poll_seconds=90))
    assert polled.conf.beat_schedule["bounce-mailbox"] == {"task": "mailer.poll_bounces", "schedule": 90.0}
