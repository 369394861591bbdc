"""Bounce intake: every sample report read as what it is, attributed most exactly first, recorded once; the
bounce domain's SMTP receiver spoken to over real SMTP (reports recorded, strangers refused, a database
outage answered 451 and the retry recorded once); `mailer bounces read` for a report saved as a file."""

from __future__ import annotations

import smtplib
from dataclasses import replace

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st
from sqlalchemy import func, select

from conftest import free_port
from mailer.cli import main
from mailer.db import Database
from mailer.feedback import receiver, reports, verp
from mailer.models import Delivery, FeedbackEvent, Subscriber, Suppression
from support import report_samples as samples
from support.bounce_flows import BOUNCE_DOMAIN, bouncy, people, sent_issue


def _one(raw, settings, **kwargs):
    found = reports.read(raw, source="smtp", settings=settings, **kwargs)
    assert len(found) == 1, found
    return found[0]


# --- reading ---------------------------------------------------------------------------------------------------


def test_a_postfix_dsn_is_a_hard_bounce_of_its_recipient(settings):
    report = _one(samples.postfix_dsn("Dead@Example.org"), settings)
    assert (report.kind, report.severity, report.status, report.email) == (
        "bounce",
        "hard",
        "5.1.1",
        "dead@example.org",
    )
    assert report.diagnostic.startswith("550 5.1.1 <Dead@Example.org>: Recipient address rejected: User unknown")
    assert "Final-Recipient: rfc822; Dead@Example.org" in report.report  # the status part is kept


def test_a_relay_that_gave_up_on_a_4xx_is_a_soft_bounce(settings):
    report = _one(
        samples.postfix_dsn("full@example.org", status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"), settings
    )
    assert (report.severity, report.status, report.diagnostic) == ("soft", "4.2.2", "452 4.2.2 Mailbox full")


def test_a_microsoft_365_report_keeps_its_own_status(settings):
    report = _one(samples.exchange_dsn("gone@nhs.example.net"), settings)
    assert (report.severity, report.status, report.email) == ("hard", "5.1.10", "gone@nhs.example.net")
    assert "RESOLVER.ADR.RecipientNotFound" in report.diagnostic


def test_a_bounce_in_a_servers_own_words_is_read_by_flufl_bounce(settings):
    report = _one(samples.gmail_style_bounce("nobody@webmail.example.com"), settings)
    assert (report.kind, report.severity, report.email, report.status) == (
        "bounce",
        "hard",
        "nobody@webmail.example.com",
        "5.1.1",
    )
    assert "Delivery Status Notification (Failure)" in report.diagnostic


def test_a_feedback_loop_report_is_a_complaint_with_the_whole_report_kept(settings):
    raw = samples.arf_complaint("angry@example.com")
    report = _one(raw, settings)
    assert (report.kind, report.severity, report.email) == ("complaint", None, "angry@example.com")
    assert report.report == raw.decode() and "Feedback-Type: abuse" in report.report


@pytest.mark.parametrize("how", ["auto-submitted", "x-autoreply", "precedence", "subject", "challenge"])
def test_automatic_replies_are_ignored(settings, how):
    assert reports.read(samples.out_of_office("away@example.org", how=how), source="smtp", settings=settings) == []


def test_a_warning_that_mail_is_delayed_is_no_bounce(settings):
    assert reports.read(samples.delayed_dsn("slow@example.org"), source="smtp", settings=settings) == []


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"\x00\xff\xfe not a message at all", "no header fields"),
        (samples.broken_dsn(), "names no recipient"),
        (samples.arf_complaint("x@example.com").replace(b"message/feedback-report", b"text/plain"), "feedback"),
    ],
)
def test_garbage_is_unreadable_and_says_why(settings, raw, says):
    with pytest.raises(reports.UnreadableReport, match=says):
        reports.read(raw, source="smtp", settings=settings)


def test_attribution_prefers_the_verp_address_then_the_quoted_message_id_then_the_address(settings):
    named = bouncy(settings)
    address = verp.envelope_for_delivery(42, named, "x@mailer.test")
    raw = samples.postfix_dsn("dead@example.org", original_id=verp.message_id(7, 8, named))
    by_envelope = _one(raw, named, envelope_to=address)
    assert (by_envelope.delivery_id, by_envelope.issue_id, by_envelope.subscriber_id) == (42, None, None)
    by_header = _one(samples.postfix_dsn("dead@example.org", to=address), named)  # Delivered-To: the VERP address
    assert by_header.delivery_id == 42
    forged = address.replace("bounce-42-", "bounce-43-")
    by_message_id = _one(raw, named, envelope_to=forged)  # a signature that fails names nothing
    assert (by_message_id.delivery_id, by_message_id.issue_id, by_message_id.subscriber_id) == (None, 7, 8)
    by_address = _one(samples.postfix_dsn("dead@example.org", original_id="<someone-else@x>"), named)
    assert (by_address.delivery_id, by_address.issue_id, by_address.email) == (None, None, "dead@example.org")
    # Our Message-ID's old unsigned form, or a guess at it with a signature that fails, names nobody.
    for guess in ("issue-7.8@mailer.test", verp.message_id(7, 8, named).replace("issue-7.8.", "issue-7.9.")):
        by_guess = _one(samples.postfix_dsn("dead@example.org", original_id=guess), named)
        assert (by_guess.issue_id, by_guess.subscriber_id) == (None, None)
    person = verp.envelope_for_person(5, named, "x@mailer.test")
    assert _one(raw, named, envelope_to=person).subscriber_id == 5  # transactional mail: the person, no issue


def test_a_complaint_is_attributed_by_the_return_path_its_quoted_original_carries(settings):
    named = bouncy(settings)
    address = verp.envelope_for_delivery(99, named, "x@mailer.test")
    report = _one(samples.arf_complaint("angry@example.com", original_return_path=address), named)
    assert report.delivery_id == 99


def test_the_key_is_the_same_for_the_same_report_and_differs_per_source_and_recipient(settings):
    raw = samples.postfix_dsn("dead@example.org")
    first, again = _one(raw, settings), _one(raw, settings)
    assert first.key == again.key == "smtp:20261201100000.4F2C1A0@relay.hospital.test:dead@example.org"
    assert reports.read(raw, source="imap", settings=settings)[0].key.startswith("imap:")
    without_id = raw.replace(b"Message-Id: <20261201100000.4F2C1A0@relay.hospital.test>\r\n", b"")
    keyed = _one(without_id, settings).key
    assert keyed == _one(without_id, settings).key and len(keyed.split(":")[1]) == 64  # sha256 of the bytes


# --- recording -------------------------------------------------------------------------------------------------


def _to(settings, delivery_id):
    return verp.envelope_for_delivery(delivery_id, settings, "trust-matters@mailer.test")


def test_a_dsn_heard_twice_marks_the_row_and_suppresses_once(db, settings):
    named = bouncy(settings)
    ids = people(db, ["dead@example.org", "alive@example.org", "other@example.org"])
    issue_id, rows = sent_issue(db)
    delivery_id = rows[ids["dead@example.org"]]
    raw = samples.postfix_dsn("dead@example.org", to=_to(named, delivery_id))
    assert receiver.hear(db, raw, named, source="smtp") == receiver.Heard(reports=1, new=1)
    assert receiver.hear(db, raw, named, source="smtp") == receiver.Heard(reports=1, new=0)
    with db.transaction() as s:
        row = s.get(Delivery, delivery_id)
        assert row.status == "bounced" and "5.1.1" in row.last_error
        event = s.scalar(select(FeedbackEvent))
        assert (event.delivery_id, event.issue_id, event.severity, event.status) == (
            delivery_id,
            issue_id,
            "hard",
            "5.1.1",
        )
        assert s.scalar(select(func.count()).select_from(FeedbackEvent)) == 1
        suppression = s.scalar(select(Suppression))
        assert (suppression.reason, suppression.event_id, suppression.issue_id) == ("bounced", event.id, issue_id)
        assert s.get(Subscriber, ids["alive@example.org"]).status == "active"


def test_a_complaint_heard_suppresses_as_complained(db, settings):
    named = bouncy(settings)
    ids = people(db, ["angry@example.com"])
    _issue_id, rows = sent_issue(db)
    raw = samples.arf_complaint("angry@example.com", original_return_path=_to(named, rows[ids["angry@example.com"]]))
    assert receiver.hear(db, raw, named, source="smtp").new == 1
    with db.transaction() as s:
        assert s.get(Subscriber, ids["angry@example.com"]).status == "complained"
        assert s.scalar(select(FeedbackEvent.report)) == raw.decode()


# --- the receiver, over SMTP -----------------------------------------------------------------------------------


@pytest.fixture()
def running(db):
    started = []

    def start(settings, database=None):
        server = receiver.receiver(database or db, settings, host="127.0.0.1", port=free_port())
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _send(server, rcpt, raw, **options):
    with smtplib.SMTP(server.hostname, server.port, timeout=30) as smtp:
        return smtp.sendmail("", [rcpt], raw, **options)


def test_the_receiver_records_a_dsn_sent_to_a_verp_address(db, settings, running):
    named = bouncy(settings)
    ids = people(db, ["dead@example.org"])
    _issue_id, rows = sent_issue(db)
    address = _to(named, rows[ids["dead@example.org"]])
    server = running(named)
    assert _send(server, address, samples.postfix_dsn("dead@example.org", to="relay@hospital.test")) == {}
    with db.transaction() as s:
        assert s.get(Delivery, rows[ids["dead@example.org"]]).status == "bounced"
        assert s.scalar(select(Suppression.reason)) == "bounced"


def test_the_receiver_refuses_strangers_garbage_and_oversized_mail(db, settings, running):
    server = running(bouncy(settings))
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        _send(server, "someone@example.org", samples.postfix_dsn("dead@example.org"))
    assert refused.value.recipients["someone@example.org"][0] == 550
    with pytest.raises(smtplib.SMTPDataError) as garbage:
        _send(server, f"anything@{BOUNCE_DOMAIN}", samples.broken_dsn())
    assert garbage.value.smtp_code == 554 and b"names no recipient" in garbage.value.smtp_error
    with pytest.raises(smtplib.SMTPSenderRefused) as big:
        _send(server, f"anything@{BOUNCE_DOMAIN}", b"Subject: x\r\n\r\nx", mail_options=[f"SIZE={20 * 1024 * 1024}"])
    assert big.value.smtp_code == 552
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(FeedbackEvent)) == 0


def test_without_a_bounce_domain_it_takes_only_our_verp_addresses_and_the_return_path(db, settings, running):
    fixed = settings.with_overrides(deliverability=replace(settings.deliverability, return_path="bounces@mailer.test"))
    signed = verp.envelope_for_delivery(5, bouncy(settings), "x")  # written while BOUNCE_DOMAIN was set
    server = running(fixed)
    raw = samples.out_of_office("away@example.org")
    assert _send(server, "Bounces@mailer.test", raw) == {}
    assert _send(server, signed, raw) == {}
    for stranger in ("postmaster@mailer.test", signed.replace("bounce-5-", "bounce-6-")):
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            _send(server, stranger, raw)


def test_a_database_outage_answers_451_and_the_retry_is_recorded_once(db, settings, running):
    named = bouncy(settings)
    ids = people(db, ["dead@example.org"])
    _issue_id, rows = sent_issue(db)
    address = _to(named, rows[ids["dead@example.org"]])
    raw = samples.postfix_dsn("dead@example.org")
    down = Database(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/gone")  # nothing listens there
    try:
        outage = running(named, down)
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            _send(outage, address, raw)
        assert deferred.value.smtp_code == 451
    finally:
        down.dispose()
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(FeedbackEvent)) == 0
        assert s.get(Delivery, rows[ids["dead@example.org"]]).status == "sent"
    back = running(named)  # the relay tries again once the database answers, and again after a lost reply
    assert _send(back, address, raw) == {}
    assert _send(back, address, raw) == {}
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(FeedbackEvent)) == 1
        assert s.scalar(select(func.count()).select_from(Suppression)) == 1
        assert s.get(Delivery, rows[ids["dead@example.org"]]).status == "bounced"


# --- mailer bounces read ---------------------------------------------------------------------------------------


def test_bounces_read_records_a_report_from_a_file_and_refuses_garbage(db, settings, test_env, tmp_path):
    ids = people(db, ["gone@nhs.example.net"])
    issue_id, _rows = sent_issue(db)
    report = tmp_path / "ndr.eml"
    report.write_bytes(
        samples.exchange_dsn(
            "gone@nhs.example.net", original_id=f"issue-{issue_id}.{ids['gone@nhs.example.net']}@mailer.test"
        )
    )
    result = CliRunner().invoke(main, ["bounces", "read", str(report)], env=test_env)
    assert result.exit_code == 0, result.output
    assert "1 report(s) read, 1 new" in result.output
    with db.transaction() as s:
        assert s.scalar(select(Suppression.detail)).startswith("hard bounce by the team")
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(samples.broken_dsn())
    result = CliRunner().invoke(main, ["bounces", "read", str(garbage)], env=test_env)
    assert result.exit_code == 1 and "names no recipient" in result.output


def test_mailer_run_starts_the_receiver_once_mail_carries_an_envelope_that_comes_back(settings):
    from mailer.cli import processes

    assert "bounces" not in processes(settings)
    assert processes(bouncy(settings))["bounces"].endswith("-m mailer.cli bounces receive")
    fixed = settings.with_overrides(deliverability=replace(settings.deliverability, return_path="bounces@mailer.test"))
    assert "bounces" in processes(fixed)


def test_a_report_naming_several_recipients_bounces_only_those_that_failed(settings):
    raw = samples.with_another_recipient(samples.postfix_dsn("dead@example.org"), "fine@example.org", "delivered")
    [report] = reports.read(raw, source="smtp", settings=settings)
    assert report.email == "dead@example.org"
    failed = samples.with_another_recipient(samples.postfix_dsn("dead@example.org"), "also@example.org", "failed")
    assert [r.email for r in reports.read(failed, source="smtp", settings=settings)] == [
        "dead@example.org",
        "also@example.org",
    ]


def test_a_status_part_a_server_encoded_is_read_all_the_same(settings):
    report = _one(samples.encoded_status(samples.postfix_dsn("dead@example.org")), settings)
    assert (report.email, report.status, report.severity) == ("dead@example.org", "5.1.1", "hard")
    assert report.diagnostic.startswith("550 5.1.1 <dead@example.org>")  # from the status part, not a guess


@settings_hypothesis(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=3000), noise=st.binary(max_size=200))
def test_a_report_cut_short_or_with_noise_reads_or_says_it_cannot_never_anything_else(settings, cut, noise):
    for raw in (samples.exchange_dsn("gone@nhs.example.net")[:cut] + noise, samples.arf_complaint("a@b.org")[:cut]):
        try:
            found = reports.read(raw, source="smtp", settings=settings)
        except reports.UnreadableReport:
            continue
        assert all(r.kind in ("bounce", "complaint") and r.key.startswith("smtp:") for r in found)
