"""TRANSPORT=ses and TRANSPORT=notify: an issue sent through each by the app's own send task, against a local SES
API (moto's server, spoken to by boto3 over HTTP) and a local stand-in of GOV.UK Notify's API that checks the
client's JWT; what each refusal of theirs becomes in the ledger; and the send rate each allows."""

from __future__ import annotations

import email
from email import policy

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends
from sqlalchemy import select

from conftest import free_port
from mailer import tasks
from mailer.feedback import verp
from mailer.models import Delivery, Suppression
from mailer.transports import PermanentFailure, SmtpTransport, TemporaryFailure, rate_cap, transport_for
from mailer.transports.notify import NotifyTransport
from mailer.transports.ses import SesTransport, _failure
from support import notify_standin
from support.notify_standin import NotifyStandIn
from support.providers import planned_issue, readers, running_as, with_deliverability

REGION = "eu-west-2"
ACCOUNT = "123456789012"  # moto's


@pytest.fixture(scope="module")
def moto_server():
    """moto's SES API on a free port of 127.0.0.1, for this module; stops with it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def ses(moto_server, settings, monkeypatch):
    """Settings for TRANSPORT=ses against moto, with the sender's domain verified there and nothing sent yet."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    backend = ses_backends[ACCOUNT][REGION]
    backend.sent_messages.clear()
    boto3.client("sesv2", region_name=REGION, endpoint_url=moto_server).create_email_identity(
        EmailIdentity="mailer.test"
    )
    yield with_deliverability(settings, transport="ses", ses_region=REGION, ses_endpoint_url=moto_server)
    backend.email_identities.clear()
    tasks._rates.clear()


def _rows(db, issue_id) -> dict[int, Delivery]:
    with db.transaction() as s:
        rows = s.scalars(select(Delivery).where(Delivery.issue_id == issue_id)).all()
        s.expunge_all()
    return {row.subscriber_id: row for row in rows}


def test_an_issue_goes_through_sess_api_as_the_message_we_built(db, ses):
    people = readers(db, ["ann@example.org", "bob@example.org"])
    issue_id, [(lo, hi)] = planned_issue(db, subject="SES works")
    with running_as(ses):
        report = tasks.send_batch(issue_id, lo, hi)
    assert report["sent"] == 2, report
    sent = ses_backends[ACCOUNT][REGION].sent_messages
    assert sorted(m.destinations[0] for m in sent) == sorted(people)
    for raw in sent:
        assert raw.source == "trust-matters@mailer.test"  # the From header's address: the verified identity
        message = email.message_from_string(raw.raw_data, policy=policy.default)
        person = people[raw.destinations[0]]
        assert message["Subject"] == "SES works" and message["To"] == raw.destinations[0]
        assert message["Message-ID"] == f"<{verp.message_id(issue_id, person, ses)}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "\r\n" in raw.raw_data and "\r\n..\r\n" not in raw.raw_data  # CRLF, and not dot-stuffed any more
    assert {row.status for row in _rows(db, issue_id).values()} == {"sent"}


def test_ses_refusing_the_sender_fails_the_row_and_suppresses_nobody(db, ses):
    readers(db, ["cat@example.org"])
    issue_id, [(lo, hi)] = planned_issue(db)
    ses_backends[ACCOUNT][REGION].email_identities.clear()  # mailer.test is not verified any more
    with running_as(ses):
        report = tasks.send_batch(issue_id, lo, hi)
    assert report["failed"] == 1 and report["bounced"] == 0
    [row] = _rows(db, issue_id).values()
    assert row.status == "failed" and "MessageRejected" in row.last_error
    with db.transaction() as s:
        assert s.scalars(select(Suppression)).all() == []


def test_an_address_ses_will_not_take_is_refused_without_a_hard_bounce(ses):
    transport = SesTransport(REGION, ses.deliverability.ses_endpoint_url)
    data = b"From: Trust Matters <trust-matters@mailer.test>\r\nTo: x\r\nSubject: Hi\r\n\r\nHello\r\n"
    with pytest.raises(PermanentFailure) as refused:
        transport.send("bounces@mailer.test", "not an address", data)
    assert refused.value.stage == "rcpt" and not refused.value.hard_bounce
    assert "InvalidParameterValue" in str(refused.value)


def test_ses_out_of_reach_gives_the_rows_back_untried(db, ses):
    readers(db, ["dan@example.org"])
    issue_id, [(lo, hi)] = planned_issue(db)
    nowhere = with_deliverability(ses, ses_endpoint_url=f"http://127.0.0.1:{free_port()}")
    with running_as(nowhere):
        report = tasks.send_batch(issue_id, lo, hi)
    assert report["given_back"] == 1 and report["sent"] == 0
    [row] = _rows(db, issue_id).values()
    assert row.status == "pending" and row.attempts == 0


@pytest.mark.parametrize(
    ("code", "status", "kind", "stage"),
    [
        ("TooManyRequestsException", 429, TemporaryFailure, "connect"),
        ("LimitExceededException", 400, TemporaryFailure, "connect"),
        ("AccountSendingPausedException", 400, TemporaryFailure, "connect"),
        ("SendingPausedException", 400, TemporaryFailure, "connect"),
        ("InternalFailure", 500, TemporaryFailure, "data"),
        ("MessageRejected", 400, PermanentFailure, "data"),
        ("BadRequestException", 400, PermanentFailure, "rcpt"),
    ],
)
def test_what_each_ses_error_becomes(code, status, kind, stage):
    error = ClientError(
        {"Error": {"Code": code, "Message": "said"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail"
    )
    failure = _failure(error)
    assert type(failure) is kind and failure.stage == stage
    assert not getattr(failure, "hard_bounce", False)


def test_only_an_address_ses_says_does_not_exist_is_a_hard_bounce():
    said = {"Code": "BadRequestException", "Message": "Mailbox does not exist"}
    failure = _failure(ClientError({"Error": said, "ResponseMetadata": {"HTTPStatusCode": 400}}, "SendEmail"))
    assert isinstance(failure, PermanentFailure) and failure.hard_bounce


def test_the_send_rate_is_sess_own_when_it_is_slower(ses):
    # moto's account sends at most 1 a second (GetSendQuota; its sesv2 has no GetAccount, so the older call answers).
    assert rate_cap(ses) == 1.0
    tasks._send_rate(ses.with_overrides(send_rate=20.0))
    tasks._send_rate(ses.with_overrides(send_rate=0.5))
    assert {key[1] for key in tasks._rates} == {1.0, 0.5}


def test_transport_for_is_the_one_transport_says_and_is_reused(settings, ses):
    assert isinstance(transport_for(settings), SmtpTransport)
    assert transport_for(ses) is transport_for(ses)
    assert isinstance(transport_for(ses), SesTransport)
    notify = with_deliverability(
        settings,
        transport="notify",
        notify_api_key=notify_standin.API_KEY,
        notify_template_id=notify_standin.TEMPLATE_ID,
        notify_base_url="http://127.0.0.1:1",
    )
    assert isinstance(transport_for(notify), NotifyTransport) and transport_for(notify) is transport_for(notify)
    assert rate_cap(settings) is None and rate_cap(notify) == 50.0


# --- GOV.UK Notify ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def notify(settings):
    with NotifyStandIn() as standin:
        yield (
            standin,
            with_deliverability(
                settings,
                transport="notify",
                notify_api_key=notify_standin.API_KEY,
                notify_template_id=notify_standin.TEMPLATE_ID,
                notify_base_url=standin.base_url,
            ),
        )
    tasks._rates.clear()


def test_an_issue_goes_through_notify_as_its_subject_and_text_with_our_message_id(db, notify):
    standin, on_notify = notify
    people = readers(db, ["eve@example.org", "fay@example.org"])
    issue_id, [(lo, hi)] = planned_issue(db, subject="Notify works", body="We are **on track** for spring.")
    with running_as(on_notify):
        report = tasks.send_batch(issue_id, lo, hi)
    assert report["sent"] == 2, report
    assert sorted(s.body["email_address"] for s in standin.sent) == sorted(people)
    for sent in standin.sent:
        person = people[sent.body["email_address"]]
        assert sent.token_claims["iss"] == notify_standin.SERVICE_ID  # the stand-in checked the JWT's signature
        assert sent.body["template_id"] == notify_standin.TEMPLATE_ID
        assert sent.body["reference"] == verp.message_id(issue_id, person, on_notify)
        assert sent.body["personalisation"]["subject"] == "Notify works"
        body = sent.body["personalisation"]["body"]
        assert "on track" in body and "for spring" in body and "<" not in body.split("http")[0]  # the text part
        assert sent.body["one_click_unsubscribe_url"].startswith("http")
        assert sent.body["one_click_unsubscribe_url"] in body  # the person's own link, as in the text part
    assert {row.status for row in _rows(db, issue_id).values()} == {"sent"}


def test_notify_refusing_an_address_fails_that_row_only(db, notify):
    standin, on_notify = notify
    people = readers(db, ["gus@example.org", "hal@example.org"])
    standin.invalid.add("gus@example.org")
    issue_id, [(lo, hi)] = planned_issue(db)
    with running_as(on_notify):
        report = tasks.send_batch(issue_id, lo, hi)
    assert report["sent"] == 1 and report["failed"] == 1 and report["bounced"] == 0
    rows = _rows(db, issue_id)
    assert rows[people["hal@example.org"]].status == "sent"
    gus = rows[people["gus@example.org"]]
    assert gus.status == "failed" and "Not a valid email address" in gus.last_error
    with db.transaction() as s:
        assert s.scalars(select(Suppression)).all() == []


@pytest.mark.parametrize("trouble", ["rate limit", "wrong key", "unreachable"])
def test_notify_throttling_a_bad_key_or_no_answer_gives_the_rows_back_untried(db, notify, trouble):
    standin, on_notify = notify
    readers(db, ["ivy@example.org"])
    if trouble == "rate limit":
        standin.throttled.add("ivy@example.org")
    elif trouble == "wrong key":
        other = f"test_key-{notify_standin.SERVICE_ID}-00000000-0000-4000-8000-000000000000"
        on_notify = with_deliverability(on_notify, notify_api_key=other)
    else:
        on_notify = with_deliverability(on_notify, notify_base_url=f"http://127.0.0.1:{free_port()}")
    issue_id, [(lo, hi)] = planned_issue(db)
    with running_as(on_notify):
        report = tasks.send_batch(issue_id, lo, hi)
    assert report["given_back"] == 1 and report["sent"] == 0, report
    [row] = _rows(db, issue_id).values()
    assert row.status == "pending" and row.attempts == 0
    expected = {"rate limit": [429], "wrong key": [403], "unreachable": []}[trouble]
    assert [status for status, _ in standin.refused] == expected
    assert standin.sent == []


def test_a_test_send_goes_through_notify_too(db, notify):
    standin, on_notify = notify
    readers(db, ["jo@example.org"])
    issue_id, _ = planned_issue(db, subject="Test me")
    with running_as(on_notify):
        outcomes = tasks.send_test(issue_id, ["me@hiow.nhs.uk"])
    assert outcomes == {"me@hiow.nhs.uk": "sent"}
    [sent] = standin.sent
    assert sent.body["personalisation"]["subject"] == "[TEST] Test me"
    assert "one_click_unsubscribe_url" not in sent.body  # a test's links unsubscribe nobody


def test_notifys_rate_limit_caps_send_rate(settings, notify):
    _standin, on_notify = notify
    tasks._send_rate(on_notify.with_overrides(send_rate=500.0))
    tasks._send_rate(on_notify.with_overrides(send_rate=10.0))
    tasks._send_rate(on_notify)
    assert {key[1] for key in tasks._rates} == {50.0, 10.0}


def test_a_message_without_a_text_part_is_refused_before_notify_sees_it(notify):
    standin, on_notify = notify
    transport = transport_for(on_notify)
    html_only = (
        b"From: a@mailer.test\r\nTo: b@example.org\r\nSubject: Hi\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hi</p>\r\n"
    )
    with pytest.raises(PermanentFailure, match="no text/plain part"):
        transport.send("a@mailer.test", "b@example.org", html_only)
    assert standin.sent == []


# --- settings ----------------------------------------------------------------------------------------------------


def test_each_transport_says_what_it_cannot_send_without(test_env):
    from mailer.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="SES_REGION"):
        load_settings({**test_env, "TRANSPORT": "ses"})
    ses = load_settings({**test_env, "TRANSPORT": "ses", "AWS_REGION": REGION, "SES_CONFIGURATION_SET": "news"})
    assert ses.deliverability.ses_region == REGION and ses.deliverability.ses_configuration_set == "news"
    with pytest.raises(ConfigError, match="NOTIFY_TEMPLATE_ID"):
        load_settings({**test_env, "TRANSPORT": "notify", "NOTIFY_API_KEY": notify_standin.API_KEY})
    with pytest.raises(ConfigError, match="the whole key"):
        load_settings(
            {**test_env, "TRANSPORT": "notify", "NOTIFY_API_KEY": "just-the-secret", "NOTIFY_TEMPLATE_ID": "t"}
        )
    notify = load_settings(
        {**test_env, "TRANSPORT": "notify", "NOTIFY_API_KEY": notify_standin.API_KEY, "NOTIFY_TEMPLATE_ID": "t"}
    )
    assert notify.deliverability.transport == "notify" and rate_cap(notify) == 50.0
    assert load_settings({**test_env, "SNS_CA_BUNDLE": "/tmp/ca.pem"}).deliverability.sns_ca_bundle == "/tmp/ca.pem"
    assert load_settings(test_env).deliverability.sns_ca_bundle is None  # production: the system's trust store
    with pytest.raises(ConfigError, match="NOTIFY_CALLBACK_TOKEN"):
        load_settings({**test_env, "NOTIFY_CALLBACK_TOKEN": "short"})
