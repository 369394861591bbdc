"""DKIM, Feedback-ID and Return-Path, checked on the bytes the SMTP server received (dkimpy's own verifier)."""

from __future__ import annotations

import re
from collections import OrderedDict

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from mailer.audience.subscriptions import request_subscription
from mailer.compose.mail import feedback_id
from mailer.compose.recipients import planned_audience
from mailer.config import ConfigError, load_settings
from mailer.delivery import dispatch
from mailer.feedback import verp
from mailer.models import Delivery, Issue
from mailer.runtime import Runtime, set_runtime
from mailer.transports.dkim import DkimSigner, load_rsa_key, public_record, relaxed_body, signer_for

SELECTOR, DOMAIN = "tm2026", "mailer.test"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
RECORD = public_record(KEY).encode()
COVERED = ["from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe"]


def dns(name, timeout=5):
    """The one TXT record a receiver would find: ours, for our selector."""
    return RECORD if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None


def verifies(data: bytes) -> bool:
    return dkim.verify(data, dnsfunc=dns)


def signed_headers(data: bytes) -> list[str]:
    signature = dkim.DKIM(data)
    signature.verify(dnsfunc=dns)
    return [name.decode() for name in signature.include_headers]


@pytest.fixture()
def dkim_env(test_env):
    return {
        **test_env,
        "DKIM_DOMAIN": DOMAIN,
        "DKIM_SELECTOR": SELECTOR,
        "DKIM_PRIVATE_KEY": PEM,
        "BOUNCE_DOMAIN": "bounces.mailer.test",
        "FEEDBACK_ID_SENDER": "trustmatters",
    }


@pytest.fixture()
def signing_worker(dkim_env, monkeypatch):
    """This process as a worker whose environment sets DKIM and BOUNCE_DOMAIN: the tasks' own code, in process."""
    import mailer.runtime
    from mailer import tasks

    settings = load_settings(dkim_env)
    before = mailer.runtime._current
    set_runtime(Runtime.build(settings))
    monkeypatch.setattr(tasks, "_compiled", OrderedDict())
    yield settings
    set_runtime(before)


def _reader(db, email, topic="project-fusion"):
    from mailer.audience.subscriptions import confirm_subscription

    with db.transaction() as s:
        outcome = request_subscription(s, email=email, topic_slugs=[topic])
        confirm_subscription(s, outcome.request_id)
        return outcome.subscriber_id


def _sent_issue(db, settings, readers: int) -> tuple[int, dict[str, int]]:
    from mailer import tasks
    from mailer.compose.issues import create_issue, request_send
    from support.flows import approve_for_sending, issue_input

    ids = {f"reader{i}@example.org": _reader(db, f"reader{i}@example.org") for i in range(readers)}
    with db.transaction() as s:
        issue = create_issue(
            s, issue_input(s, subject="Project Fusion: signed", body="Signed words.", topic="project-fusion")
        )
        approve_for_sending(s, issue.id)
        request_send(s, issue.id, settings=settings)
        issue_id = issue.id
    for lo, hi in dispatch.plan_issue(db, issue_id, planned_audience, 2):
        tasks.send_batch(issue_id, lo, hi)  # the worker's task, with the transport it uses
    return issue_id, ids


def test_a_bulk_send_is_signed_and_each_message_verifies_with_dkimpy(db, smtp_server, signing_worker):
    issue_id, readers = _sent_issue(db, signing_worker, 3)
    with db.sessions() as s:
        rows = {d.subscriber_id: d.id for d in s.scalars(select(Delivery).where(Delivery.issue_id == issue_id))}
    for address, subscriber_id in readers.items():
        [received] = smtp_server.messages_to(address)
        assert received.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=mailer.test;")
        assert verifies(received.data)
        covered = signed_headers(received.data)
        assert set(COVERED + ["list-unsubscribe-post", "feedback-id"]) <= set(covered)
        assert covered.count("from") == 2  # oversigned: a second From cannot be added
        # Gmail's Feedback-ID: four fields, the last the sender id; List-Id as it was.
        assert received.message["Feedback-ID"] == f"issue{issue_id}:project-fusion:newsletter:trustmatters"
        assert received.message["List-Id"] == "Project Fusion updates <project-fusion.mailer.test>"
        # The envelope sender is this row's own VERP address, and reading it back names the row.
        assert received.mail_from.endswith("@bounces.mailer.test") and received.mail_from != address
        assert verp.read(received.mail_from, signing_worker) == verp.Named(delivery_id=rows[subscriber_id])
    assert len({smtp_server.messages_to(a)[0].mail_from for a in readers}) == 3


def test_a_changed_body_subject_or_added_header_fails_verification(db, smtp_server, signing_worker):
    _sent_issue(db, signing_worker, 1)
    [received] = smtp_server.messages_to("reader0@example.org")
    data = received.data
    assert verifies(data)
    assert not verifies(data.replace(b"Signed words.", b"Signed w0rds."))
    assert not verifies(data.replace(b"Subject: Project Fusion: signed", b"Subject: Project Fusion: changed"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert not verifies(head + b"\r\nFrom: Someone Else <x@evil.example>\r\n\r\n" + body)
    assert not verifies(head + b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n" + body)
    # Only whitespace changes that relaxed canonicalisation allows still verify (a relay refolding a header).
    assert verifies(data.replace(b"Subject: Project", b"Subject:   Project"))


def test_a_confirmation_is_signed_has_its_own_return_path_and_no_one_click_post(db, smtp_server, signing_worker):
    from mailer import tasks

    with db.transaction() as s:
        outcome = request_subscription(s, email="new.reader@example.org", topic_slugs=["trust-matters"])
    assert tasks.send_confirmation(outcome.request_id) == "sent"
    [received] = smtp_server.messages_to("new.reader@example.org")
    assert verifies(received.data)
    assert set(COVERED) - {"list-id"} <= set(signed_headers(received.data))
    assert received.message["List-Unsubscribe-Post"] is None
    assert received.message["Feedback-ID"] is None
    assert verp.read(received.mail_from, signing_worker) == verp.Named(subscriber_id=outcome.subscriber_id)


def test_a_manage_link_mail_is_signed_with_the_persons_return_path(db, smtp_server, signing_worker):
    from mailer import tasks

    subscriber_id = _reader(db, "reader@example.org")
    assert tasks.send_manage_link(subscriber_id) == "sent"
    [received] = smtp_server.messages_to("reader@example.org")
    assert verifies(received.data)
    assert received.message["List-Unsubscribe-Post"] is None
    assert verp.read(received.mail_from, signing_worker) == verp.Named(subscriber_id=subscriber_id)


def test_a_test_send_is_signed_and_bounces_to_the_team_address(db, smtp_server, signing_worker):
    from mailer import tasks
    from mailer.compose.issues import create_issue
    from support.flows import issue_input

    with db.transaction() as s:
        issue_id = create_issue(s, issue_input(s, subject="Draft", body="Draft words.", topic="project-fusion")).id
    assert tasks.send_test(issue_id, ["me@hiow.nhs.uk"]) == {"me@hiow.nhs.uk": "sent"}
    [received] = smtp_server.messages_to("me@hiow.nhs.uk")
    assert verifies(received.data)
    assert received.message["Subject"] == "[TEST] Draft"
    assert received.message["List-Unsubscribe-Post"] is None and received.message["Feedback-ID"] is None
    assert received.mail_from == "bounce-team@bounces.mailer.test"
    assert not verifies(received.data.replace(b"Draft words.", b"Draft wordz."))


def test_without_dkim_settings_nothing_is_signed_and_the_envelope_is_from(db, smtp_server, settings):
    from mailer.audience.confirmation import confirmation_mail

    assert signer_for(settings.deliverability) is None
    with db.transaction() as s:
        outcome = request_subscription(s, email="plain@example.org", topic_slugs=["trust-matters"])
        from mailer.links import Links

        mail = confirmation_mail(s, outcome.request_id, settings, Links(settings.secret_key, settings.base_url))
    assert not mail.data.startswith(b"DKIM-Signature")
    assert mail.envelope_from == "trust-matters@mailer.test"


def test_feedback_id_of_a_digest_and_an_update(settings):
    from mailer.models import Topic

    topic = Topic(slug="project-fusion", name="Project Fusion")
    assert feedback_id(Issue(id=7, kind="digest", topic=topic), settings) == "issue7:digest:digest:mailer.test"
    assert feedback_id(Issue(id=8, kind="update", topic=topic), settings) == "issue8:project-fusion:update:mailer.test"
    assert feedback_id(Issue(id=8, kind="update", topic=topic), settings).count(":") == 3


# --- the signer itself -----------------------------------------------------------------------------------


_WHITESPACE_HEAVY = st.lists(
    st.sampled_from([b" ", b"\t", b"\r\n", b"a", b"=", b".", b"  x", b"\n", b"\r"]), max_size=60
)


@given(_WHITESPACE_HEAVY)
def test_relaxed_body_is_exactly_dkimpys(pieces):
    body = b"".join(pieces)
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


def test_a_dot_stuffed_line_is_signed_as_the_receiver_stores_it():
    signer = DkimSigner(DOMAIN, SELECTOR, KEY)
    wire = b"From: a@mailer.test\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n..starts with a dot\r\nend\r\n"
    signed = signer.sign_wire(wire)
    assert signed.endswith(wire)
    assert verifies(signed.replace(b"\r\n..", b"\r\n."))
    assert not verifies(signed)  # the stuffed bytes are not the message


def test_the_key_is_parsed_once_per_process(dkim_env):
    first = signer_for(load_settings(dkim_env).deliverability)
    assert signer_for(load_settings(dkim_env).deliverability) is first
    assert first.key is load_rsa_key(PEM)  # the settings' check and the signer share one parse


# --- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY"])
def test_partial_dkim_settings_say_what_is_missing(dkim_env, missing):
    env = {k: v for k, v in dkim_env.items() if k != missing}
    with pytest.raises(ConfigError, match=f"DKIM needs .*{missing}"):
        load_settings(env)


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("not a key at all", "must be a PEM private key"),
        ("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n", "not a PEM private key that can be read"),
        (
            KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ).decode(),
            "protected by a password",
        ),
        (_pem(ed25519.Ed25519PrivateKey.generate()), "must be an RSA key"),
    ],
    ids=["text", "broken PEM", "encrypted", "ed25519"],
)
def test_a_bad_key_is_a_config_error_that_says_why(dkim_env, pem, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({**dkim_env, "DKIM_PRIVATE_KEY": pem})


def test_the_key_can_come_from_a_file(dkim_env, tmp_path):
    path = tmp_path / "dkim.pem"
    path.write_text(PEM)
    env = {k: v for k, v in dkim_env.items() if k != "DKIM_PRIVATE_KEY"}
    assert load_settings({**env, "DKIM_PRIVATE_KEY_PATH": str(path)}).deliverability.dkim_private_key == PEM
    with pytest.raises(ConfigError, match="DKIM_PRIVATE_KEY_PATH cannot be read"):
        load_settings({**env, "DKIM_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem")})


@pytest.mark.parametrize(
    ("name", "value"), [("DKIM_DOMAIN", "not a domain"), ("DKIM_SELECTOR", "a;b"), ("FEEDBACK_ID_SENDER", "a:b")]
)
def test_malformed_names_are_config_errors(dkim_env, name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**dkim_env, name: value})


def test_load_rsa_key_and_record_round_trip():
    record = public_record(load_rsa_key(PEM))
    assert re.fullmatch(r"v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+", record)
