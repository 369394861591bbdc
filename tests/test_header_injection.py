"""No header injection, whatever Python's email package does with encoded-words.

On Python 3.11.7 an editor's subject `=?utf-8?q?Hi=0D=0ABcc:_evil@evil.example?=` came out of
`email.message` as a real `Bcc:` line. These tests read the raw bytes the SMTP server received: the set of
header names is exactly what we write, and the subject decodes back to the text that was typed. Where the
text a person typed would decode into a line break, the input is refused with a 400 instead.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from conftest import csrf_from, wait_until
from mailer.accounts import create_token
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.config import ConfigError, load_settings
from mailer.render.content import clean_text
from support.flows import api_send, sign_in, write_issue

BCC = "=?utf-8?q?Hi=0D=0ABcc:_evil@evil.example?="
# "Hi\r\nReply-To: evil@evil.example\r\n\r\nevil": a Reply-To, then a blank line that would end the headers
# and make "evil" the body.
REPLY_TO_B = "=?utf-8?b?SGkNClJlcGx5LVRvOiBldmlsQGV2aWwuZXhhbXBsZQ0KDQpldmls?="
HOSTILE_SUBJECTS = {
    "q-encoded CR LF Bcc": BCC,
    "b-encoded CR LF Reply-To and body": REPLY_TO_B,
    "Q in capitals, bare LF": "=?UTF-8?Q?Hi=0ABcc:_evil@evil.example?=",
    "mid-word, no spaces": "News=?utf-8?q?=0D=0ABcc:evil@evil.example?=today",
    "unknown charset": "=?x-evil?q?Hi=0D=0ABcc:_evil@evil.example?=",
    "UTF-7 CR LF": "=?utf-7?q?Hi+AA0ACg-Bcc:_evil@evil.example?=",
    "raw CR LF": "Hi\r\nBcc: evil@evil.example",
    "raw LF": "Hi\nBcc: evil@evil.example",
    "line separator": "Hi\u2028Bcc: evil@evil.example",
}
LONG_WELSH = (
    "Newyddion Prosiect Fusion: gwasanaethau iechyd meddwl a chymunedol yn dod at ei gilydd – Siân, Dŵr, Ŵyl " * 2
)
ISSUE_HEADERS = {
    "From",
    "Subject",
    "List-Id",
    "To",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
    "Feedback-ID",
}
# A test send's link cannot unsubscribe anyone, so it offers no one-click POST (see compose.mail.message_for_test),
# and it is not bulk mail, so no Feedback-ID.
TEST_HEADERS = ISSUE_HEADERS - {"List-Unsubscribe-Post", "Feedback-ID"}


def header_lines(raw: bytes) -> list[bytes]:
    """The header block as the receiving server has it, unfolded into one entry per header."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"") and b"\r" not in head.replace(b"\r\n", b""), "bare CR or LF"
    entries: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            entries[-1] += line
        else:
            entries.append(line)
    return entries


def header_names(raw: bytes) -> set[str]:
    names = [line.split(b":", 1)[0].decode("ascii") for line in header_lines(raw)]
    assert len(names) == len(set(names)), f"a header appears twice: {names}"
    return set(names)


def decoded_subject(raw: bytes) -> str:
    [subject] = [line for line in header_lines(raw) if line.lower().startswith(b"subject:")]
    # The standard decoder: encoded-words become text, once (as every mail client does).
    value = subject.split(b":", 1)[1].decode("ascii").replace("\r\n", "")
    return str(make_header(decode_header(value))).strip()


def assert_folded(raw: bytes, encoded=("From", "Subject", "Reply-To", "List-Id")) -> None:
    """Every line of the headers made from text is ASCII and short (a URL or id may not fold; those may not)."""
    current = ""
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert line.isascii() and len(line) <= 998, line
        if line[:1] not in (b" ", b"\t"):
            current = line.split(b":", 1)[0].decode()
        if current in encoded:
            assert len(line) <= (76 if b"=?" in line else 78), line


@pytest.fixture()
def api(client, db):
    with db.transaction() as s:
        _row, secret = create_token(s, "editor client", role="admin")
    auth = {"Authorization": f"Bearer {secret}"}

    class Api:
        def get(self, path):
            return client.get(f"/api/v1{path}", headers=auth)

        def post(self, path, json=None):
            return client.post(f"/api/v1{path}", json=json, headers=auth)

    return Api()


def _subscriber(db, address="reader@example.org", topic="trust-matters"):
    with db.transaction() as s:
        confirm_subscription(s, request_subscription(s, email=address, topic_slugs=[topic]).request_id)


def _issue(api, subject="Trust Matters: November") -> int:
    created = api.post(
        "/issues", json={"subject": subject, "body": "# Hello\n\nThe real body.", "topic": "trust-matters"}
    )
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS.values(), ids=HOSTILE_SUBJECTS.keys())
def test_a_subject_that_decodes_to_a_line_break_is_refused_with_a_400(api, db, subject):
    response = api.post("/issues", json={"subject": subject, "body": "Hello", "topic": "trust-matters"})
    assert response.status_code == 400, response.get_json()
    message = response.get_json()["fields"]["subject"]
    # The message names what is wrong: encoded text only where there is some.
    assert ("encoded text" in message) == ("=?" in subject), message
    with db.transaction() as s:
        assert s.execute(text("SELECT count(*) FROM issues")).scalar() == 0


def test_the_admin_forms_refuse_the_bcc_subject_with_a_message(client, db):
    sign_in(client, db)
    page = client.get("/admin/issues/new")
    form = {"csrf_token": csrf_from(page.data), "subject": BCC, "body": "Hello", "topic": "trust-matters"}
    response = client.post("/admin/issues/new", data=form)
    assert response.status_code == 400
    assert b"hides a line break" in response.data
    # Editing a good issue into a bad one is refused the same way, and changes nothing.
    issue_id = write_issue(client, subject="Trust Matters: November")
    response = client.post(f"/admin/issues/{issue_id}/edit", data=form)
    assert response.status_code == 400 and b"hides a line break" in response.data
    with db.transaction() as s:
        assert s.execute(text("SELECT subject FROM issues")).scalars().all() == ["Trust Matters: November"]


def test_an_update_title_that_decodes_to_a_line_break_is_refused(api):
    response = api.post("/updates", json={"title": BCC, "topic": "project-fusion", "summary": "s", "body": "b"})
    assert response.status_code == 400 and "title" in response.get_json()["fields"]


@pytest.mark.parametrize(
    "address",
    ["=?utf-8?q?Hi=0D=0A?=@example.org", "=?utf-8?q?team?=@example.org", "me@example.org\r\nBcc: evil@evil.example"],
)
def test_a_test_send_address_holding_an_encoded_word_is_refused(api, client, db, address):
    issue_id = _issue(api)
    response = api.post(f"/issues/{issue_id}/test", json={"to": [address]})
    assert response.status_code == 400 and "to[0]" in response.get_json()["fields"]
    sign_in(client, db, email="editor2@hiow.nhs.uk")
    page = client.get(f"/admin/issues/{issue_id}")
    response = client.post(f"/admin/issues/{issue_id}/test", data={"csrf_token": csrf_from(page.data), "to": address})
    assert response.status_code == 303
    assert b"Not an email address" in client.get(response.headers["Location"]).data


def test_stored_hostile_subjects_go_out_as_one_literal_line_in_tests_and_real_sends(
    api, db, smtp_server, celery_workers
):
    """The encoder is the last line of defence: subjects stored before these checks (written here straight
    into the table) still give exactly our headers, in a test send and in a real send, and the body stays."""
    _subscriber(db)
    sent = {}
    for name, subject in {"bcc": BCC, "reply-to": REPLY_TO_B, "raw": "Hi\r\nBcc: evil@evil.example"}.items():
        issue_id = _issue(api)
        with db.transaction() as s:
            s.execute(text("UPDATE issues SET subject = :s WHERE id = :id"), {"s": subject, "id": issue_id})
        assert api.post(f"/issues/{issue_id}/test", json={"to": [f"{name}@outside.example.org"]}).status_code == 202
        assert api_send(api.post, issue_id).status_code == 202
        wait_until(lambda i=issue_id: api.get(f"/issues/{i}").get_json()["status"] == "sent", message="issue sent")
        sent[name] = subject

    real = smtp_server.wait_for("reader@example.org", count=3)
    for name, subject in sent.items():
        literal = " ".join(clean_text(subject).split())
        [test] = smtp_server.wait_for(f"{name}@outside.example.org")
        assert header_names(test.data) == TEST_HEADERS
        assert decoded_subject(test.data) == f"[TEST] {literal}"
        assert "The real body." in test.text()
        [mail] = [m for m in real if decoded_subject(m.data) == literal]
        assert header_names(mail.data) == ISSUE_HEADERS
        assert "The real body." in mail.text() and mail.rcpt_tos == ["reader@example.org"]
        assert_folded(mail.data)
    assert smtp_server.messages_to("evil@evil.example") == []


def test_a_long_welsh_subject_and_a_typed_encoded_word_arrive_as_typed(api, db, smtp_server, celery_workers):
    _subscriber(db)
    # Typed on purpose (pasted from a raw mail): it is shown as typed, never decoded into "Café".
    typed = "=?utf-8?q?Caf=C3=A9?= news"
    subjects = [LONG_WELSH[:200].strip(), typed]
    for subject in subjects:
        issue_id = _issue(api, subject)
        assert api.post(f"/issues/{issue_id}/test", json={"to": ["editor@outside.example.org"]}).status_code == 202
        assert api_send(api.post, issue_id).status_code == 202
        wait_until(lambda i=issue_id: api.get(f"/issues/{i}").get_json()["status"] == "sent", message="issue sent")
    tests = smtp_server.wait_for("editor@outside.example.org", count=2)
    real = smtp_server.wait_for("reader@example.org", count=2)
    assert sorted(decoded_subject(m.data) for m in tests) == sorted(f"[TEST] {s}" for s in subjects)
    assert sorted(decoded_subject(m.data) for m in real) == sorted(subjects)
    for mail in tests + real:
        assert header_names(mail.data) == (TEST_HEADERS if mail in tests else ISSUE_HEADERS)
        assert_folded(mail.data)
    [welsh] = [m for m in real if decoded_subject(m.data).startswith("Newyddion")]
    assert welsh.data.split(b"\r\n\r\n")[0].count(b"\r\n =?utf-8?") >= 2  # folded over several lines


def test_the_admin_test_send_goes_to_the_typed_addresses_only(client, db, smtp_server, celery_workers):
    sign_in(client, db)
    issue_id = write_issue(client, subject="Trust Matters – Siân's news")
    page = client.get(f"/admin/issues/{issue_id}")
    response = client.post(
        f"/admin/issues/{issue_id}/test", data={"csrf_token": csrf_from(page.data), "to": "me@outside.example.org"}
    )
    assert response.status_code == 303
    [mail] = smtp_server.wait_for("me@outside.example.org")
    assert header_names(mail.data) == TEST_HEADERS
    assert decoded_subject(mail.data) == "[TEST] Trust Matters – Siân's news"
    assert mail.rcpt_tos == ["me@outside.example.org"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAIL_FROM", "Trust Matters <tm@example.org>\r\nBcc: evil@evil.example"),
        ("MAIL_FROM", "=?utf-8?q?Trust=0D=0ABcc:_evil@evil.example?= <tm@example.org>"),
        ("MAIL_FROM", "Trust Matters <not an address>"),
        ("MAIL_REPLY_TO", "=?utf-8?q?x?=@example.org"),
        ("MAIL_REPLY_TO", "replies@example.org\nBcc: evil@evil.example"),
    ],
)
def test_mail_settings_that_could_add_headers_stop_the_app_starting(test_env, name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**test_env, name: value})


def test_sender_and_reply_to_names_are_encoded_by_us(db, test_env, smtp_server):
    """A confirmation, through the real compile path and SMTP, with non-ASCII and quoted names configured."""
    from mailer.audience.confirmation import confirmation_mail
    from mailer.links import Links
    from mailer.transports import SmtpTransport

    configured = load_settings(
        {
            **test_env,
            "MAIL_FROM": "Ymddiriedolaeth GIG Hampshire – Siân <news@example.org>",
            "MAIL_REPLY_TO": '"Comms, Hampshire" <replies@example.org>',
        }
    )
    with db.transaction() as s:
        outcome = request_subscription(s, email="new@example.org", topic_slugs=["careers"])
        mail = confirmation_mail(s, outcome.request_id, configured, Links(configured.secret_key, configured.base_url))
    transport = SmtpTransport(configured.smtp_url)
    try:
        transport.send(mail.envelope_from, mail.recipient, mail.data)
    finally:
        transport.close()
    [received] = smtp_server.wait_for("new@example.org")
    assert received.mail_from == "news@example.org"
    assert header_names(received.data) == {
        "From",
        "Subject",
        "Reply-To",
        "To",
        "Date",
        "Message-ID",
        "List-Unsubscribe",  # a transactional mail: no List-Unsubscribe-Post, no Feedback-ID
        "MIME-Version",
        "Content-Type",
    }
    parsed = received.message
    assert [(a.display_name, a.addr_spec) for a in parsed["From"].addresses] == [
        ("Ymddiriedolaeth GIG Hampshire – Siân", "news@example.org")
    ]
    assert [(a.display_name, a.addr_spec) for a in parsed["Reply-To"].addresses] == [
        ("Comms, Hampshire", "replies@example.org")
    ]
    assert_folded(received.data)


# Text made of the pieces an injection is built from, as well as any text at all.
hostile_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            ["=?", "?=", "utf-8", "?q?", "?b?", "=0D", "=0A", "\r", "\n", " ", "\t", "Bcc:", "a", "é", "Ŵ", "_"]
        ),
        max_size=60,
    ).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["Subject", "X-Long-Header-Name-For-Folding"]), value=hostile_text)
def test_any_text_encodes_to_one_header_that_decodes_back(name, value):
    from mailer.render import headers

    raw = headers.unstructured(name, value) + b"To: a@example.org\r\n\r\nbody\r\n"
    assert header_names(raw) == {name, "To"}
    assert_folded(raw)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed[name]) == " ".join(clean_text(value).split())


@settings(max_examples=200, deadline=None)
@given(display=hostile_text)
def test_any_display_name_encodes_to_one_address_header(display):
    from mailer.render import headers

    raw = headers.mailbox("From", display, "news@example.org") + b"\r\nbody\r\n"
    assert header_names(raw) == {"From"}
    assert_folded(raw)
    [address] = email.message_from_bytes(raw, policy=email.policy.default)["From"].addresses
    assert address.addr_spec == "news@example.org"
    expected = " ".join(clean_text(display).split())
    if address.display_name != expected:
        # Python's parser puts a space between two encoded-words of a phrase; RFC 2047 (and mail clients)
        # join them. Only a long run of non-ASCII words needs two: then the RFC's reading must be exact.
        phrase = raw.split(b":", 1)[1].rsplit(b"<", 1)[0].decode("ascii").replace("\r\n", "")
        assert re.search(r"\?=\s+=\?", phrase), address.display_name
        assert str(make_header(decode_header(phrase))).strip() == expected
