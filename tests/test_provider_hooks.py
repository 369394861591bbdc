"""The providers' webhooks: SES's bounces and complaints by SNS (signatures checked against a certificate served
over https by a local stand-in of SNS's certificate host) and GOV.UK Notify's delivery receipts (bearer token).
Each good message is recorded once; a bad signature, a certificate from the wrong place, an unknown topic or a
wrong token is a 403 with nothing changed; malformed bodies are 400s."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mailer.feedback import verp
from mailer.models import Delivery, FeedbackEvent, Issue, Subscriber, Subscription, Suppression
from support import sns as sns_support
from support.providers import planned_issue, readers, with_deliverability
from support.sns import SnsStandIn, bounce_event, complaint_event, delivery_event, signing_pair

TOKEN = "a-callback-token-of-our-own-0123456789"


@pytest.fixture()
def sns_host(tmp_path):
    with SnsStandIn(tmp_path) as standin:
        yield standin


@pytest.fixture()
def hook_client(settings, sns_host):
    from mailer.runtime import runtime, set_runtime
    from mailer.tasks import configure_celery
    from mailer.web import create_app
    from mailer.web.limits import limiter

    before = runtime()
    configured = with_deliverability(
        settings,
        sns_certificate_hosts=r"127\.0\.0\.1",
        sns_ca_bundle=str(sns_host.ca_bundle),
        sns_topic_arns=(sns_support.TOPIC,),
        notify_callback_token=TOKEN,
    )
    application = create_app(configured)
    application.config["TESTING"] = True
    yield application.test_client()
    with application.app_context():
        limiter.reset()
    set_runtime(before)
    configure_celery(before.settings)


@pytest.fixture()
def sent(db, settings):
    """An issue sent to two people: (issue id, {email: subscriber id}, {email: Message-ID})."""
    people = readers(db, ["ann@example.org", "bob@example.org"])
    issue_id, _ = planned_issue(db)
    with db.transaction() as s:
        for row in s.scalars(select(Delivery).where(Delivery.issue_id == issue_id)):
            row.status = "sent"
        s.get(Issue, issue_id).status = "sent"
    return issue_id, people, {e: f"<{verp.message_id(issue_id, i, settings)}>" for e, i in people.items()}


def _post(client, message, content_type="text/plain; charset=UTF-8"):
    body = message if isinstance(message, (bytes, str)) else json.dumps(message)
    return client.post("/api/v1/hooks/ses", data=body, headers={"Content-Type": content_type})


def _events(db):
    with db.transaction() as s:
        return [
            (e.source, e.kind, e.severity, e.key, e.subscriber_id, e.issue_id) for e in s.scalars(select(FeedbackEvent))
        ]


def _suppressed(db):
    with db.transaction() as s:
        return {(x.reason, x.event_id is not None, x.issue_id) for x in s.scalars(select(Suppression))}


def _statuses(db, issue_id):
    with db.transaction() as s:
        return {d.subscriber_id: d.status for d in s.scalars(select(Delivery).where(Delivery.issue_id == issue_id))}


def test_a_signed_ses_hard_bounce_marks_the_row_and_suppresses_once(db, hook_client, sns_host, sent):
    issue_id, people, ids = sent
    message = sns_host.notification(bounce_event(["ann@example.org"], ids["ann@example.org"]))
    answer = _post(hook_client, message)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["recorded"] == 1
    assert answer.headers["X-RateLimit-Limit"] == "6000"  # the hooks' own limit, not the API's 600 a token
    key = f"ses:{message['MessageId']}:ann@example.org"
    assert _events(db) == [("ses", "bounce", "hard", key, people["ann@example.org"], issue_id)]
    assert _statuses(db, issue_id) == {people["ann@example.org"]: "bounced", people["bob@example.org"]: "sent"}
    assert _suppressed(db) == {("bounced", True, issue_id)}
    with db.transaction() as s:
        event = s.scalar(select(FeedbackEvent))
        assert event.status == "5.1.1" and "user unknown" in event.diagnostic
    again = _post(hook_client, message)  # SNS delivers at least once
    assert again.status_code == 200 and again.get_json()["recorded"] == 0
    assert len(_events(db)) == 1
    assert sns_host.asked.count(sns_support.CERTIFICATE_PATH) == 1  # fetched once, then kept


def test_signature_version_1_and_a_complaint_by_event_publishing(db, hook_client, sns_host, sent):
    issue_id, people, ids = sent
    message = sns_host.notification(complaint_event("bob@example.org", ids["bob@example.org"]), version="1")
    answer = _post(hook_client, message)
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 1
    assert _suppressed(db) == {("complained", True, issue_id)}
    with db.transaction() as s:
        event = s.scalar(select(FeedbackEvent))
        assert event.kind == "complaint" and json.loads(event.report)["complaint"]["complaintFeedbackType"] == "abuse"
        bob = people["bob@example.org"]
        assert s.get(Subscriber, bob).status == "complained"
        live = select(Subscription).where(Subscription.subscriber_id == bob, Subscription.ended_at.is_(None))
        assert s.scalars(live).all() == []


def test_a_soft_bounce_is_counted_and_a_delivery_is_only_heard(db, hook_client, sns_host, sent):
    issue_id, people, ids = sent
    soft = sns_host.notification(bounce_event(["ann@example.org"], ids["ann@example.org"], kind="Transient"))
    assert _post(hook_client, soft).get_json()["recorded"] == 1
    delivered = sns_host.notification(delivery_event("bob@example.org", ids["bob@example.org"]))
    answer = _post(hook_client, delivered)
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 0
    assert [e[:3] for e in _events(db)] == [("ses", "bounce", "soft")]
    assert _suppressed(db) == set()
    # SES gave up on it (its transient bounces come after its own retries): not delivered, not a hard bounce.
    assert _statuses(db, issue_id)[people["ann@example.org"]] == "failed"


def test_a_bounce_of_mail_we_cannot_place_is_attributed_by_address(db, hook_client, sns_host, sent):
    _issue_id, people, _ids = sent
    message = sns_host.notification(bounce_event(["ann@example.org"], "<something-else@example.org>"))
    assert _post(hook_client, message).get_json()["recorded"] == 1
    [event] = _events(db)
    assert event[4] == people["ann@example.org"] and event[5] is None


def test_a_message_id_naming_someone_else_pins_nothing_on_them(db, hook_client, sns_host, sent):
    issue_id, people, ids = sent
    message = sns_host.notification(bounce_event(["ann@example.org"], ids["bob@example.org"]))
    assert _post(hook_client, message).get_json()["recorded"] == 1
    [event] = _events(db)
    assert event[4] == people["ann@example.org"] and event[5] is None  # by her address, not bob's Message-ID
    assert set(_statuses(db, issue_id).values()) == {"sent"}


def _tampered(sns_host, ids):
    message = sns_host.notification(bounce_event(["ann@example.org"], ids["ann@example.org"]))
    return {**message, "Message": message["Message"].replace("ann@", "bob@")}


@pytest.mark.parametrize("forgery", ["tampered", "another key", "garbled signature", "unknown version"])
def test_a_message_sns_did_not_sign_is_refused_and_changes_nothing(db, hook_client, sns_host, sent, forgery):
    _issue_id, _people, ids = sent
    event = bounce_event(["ann@example.org"], ids["ann@example.org"])
    if forgery == "tampered":
        message = _tampered(sns_host, ids)
    elif forgery == "another key":
        message = sns_host.notification(event, key=signing_pair()[0])
    elif forgery == "garbled signature":
        message = {**sns_host.notification(event), "Signature": "not base64!"}
    else:
        message = sns_host.sign({**sns_host.notification(event), "SignatureVersion": "2"}) | {"SignatureVersion": "3"}
    answer = _post(hook_client, message)
    assert answer.status_code == 403, answer.get_json()
    assert _events(db) == [] and _suppressed(db) == set()


@pytest.mark.parametrize(
    "where",
    [
        "https://localhost:{port}/SimpleNotificationService-test.pem",  # a host SNS_CERTIFICATE_HOSTS does not name
        "http://127.0.0.1:{port}/SimpleNotificationService-test.pem",  # not https
        "https://127.0.0.1:{port}/SimpleNotificationService-test.txt",  # not a .pem
        "https://127.0.0.1.evil.example:{port}/SimpleNotificationService-test.pem",  # the host must match in full
    ],
)
def test_a_certificate_from_anywhere_else_is_never_fetched(db, hook_client, sns_host, sent, where):
    _issue_id, _people, ids = sent
    url = where.format(port=sns_host.base.rsplit(":", 1)[1])
    message = sns_host.notification(bounce_event(["ann@example.org"], ids["ann@example.org"]), SigningCertURL=url)
    answer = _post(hook_client, message)
    assert answer.status_code == 403, answer.get_json()
    assert sns_host.asked == [] and _events(db) == []


def test_a_topic_we_do_not_take_is_refused(db, hook_client, sns_host, sent):
    _issue_id, _people, ids = sent
    other = "arn:aws:sns:eu-west-2:999999999999:someone-elses"
    message = sns_host.notification(bounce_event(["ann@example.org"], ids["ann@example.org"]), TopicArn=other)
    assert _post(hook_client, message).status_code == 403
    assert _events(db) == [] and sns_host.asked == []


def test_a_subscription_is_confirmed_by_fetching_its_subscribe_url(db, hook_client, sns_host):
    message = sns_host.subscription_confirmation()
    answer = _post(hook_client, message)
    assert answer.status_code == 200, answer.get_json()
    assert sns_host.asked == [sns_support.CERTIFICATE_PATH, message["SubscribeURL"].split(sns_host.base)[1]]
    assert _events(db) == []


def test_a_subscribe_url_elsewhere_is_not_fetched(hook_client, sns_host):
    message = sns_host.subscription_confirmation(SubscribeURL="https://localhost/confirm?Token=x")
    message = sns_host.sign(message)
    assert _post(hook_client, message).status_code == 403
    assert sns_host.asked == [sns_support.CERTIFICATE_PATH]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"Type": "Notification"}),
        json.dumps({"Type": "Something", "MessageId": "x"}),
        json.dumps({"Type": {}, "MessageId": "x"}),  # schemathesis found this one a 500
        json.dumps({"Type": "Notification", "MessageId": 1, "Message": [], "TopicArn": None}),
        b"{" * 5000,
    ],
)
def test_what_is_not_an_sns_message_is_a_400(db, hook_client, body):
    answer = _post(hook_client, body)
    assert answer.status_code == 400 and answer.get_json()["error"]
    assert _events(db) == []


def test_a_signed_message_that_is_not_an_ses_event_is_a_400_and_nothing_is_kept(db, hook_client, sns_host, sent):
    _issue_id, _people, ids = sent
    broken = sns_host.sign({**sns_host.notification({}), "Message": "not json"})
    assert _post(hook_client, broken).status_code == 400
    nobody = sns_host.notification({"notificationType": "Bounce", "bounce": {"bouncedRecipients": []}, "mail": {}})
    assert _post(hook_client, nobody).status_code == 400
    # One good recipient and one without an address: the whole message is refused, not half recorded.
    half = bounce_event(["ann@example.org"], ids["ann@example.org"])
    half["bounce"]["bouncedRecipients"].append({"status": "5.1.1"})
    assert _post(hook_client, sns_host.notification(half)).status_code == 400
    assert _events(db) == []


def test_a_body_too_large_for_sns_is_a_413(hook_client):
    assert _post(hook_client, b"x" * (300 * 1024)).status_code == 413


def test_the_production_rule_names_only_snss_own_hosts(settings):
    from mailer.feedback.sns import Refused, check_url

    good = "https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-abc.pem"
    assert check_url(good, settings, "x") == good
    for bad in (
        "https://sns.eu-west-2.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.eu-west-2.amazonaws.com/x.pem",
        "http://sns.eu-west-2.amazonaws.com/x.pem",
        "https://sns.eu-west-2.amazonaws.com@evil.example/x.pem",
    ):
        with pytest.raises(Refused):
            check_url(bad, settings, "x")


# --- GOV.UK Notify -------------------------------------------------------------------------------------------------


def _receipt(client, body, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/api/v1/hooks/notify", json=body, headers=headers)


def _notified(ids, email, status, notification="740e5834-3a29-46b4-9a6f-16142fde533a"):
    return {
        "id": notification,
        "reference": ids[email].strip("<>"),
        "to": email,
        "status": status,
        "created_at": "2026-12-01T16:00:00.000000Z",
        "completed_at": "2026-12-01T16:00:05.000000Z",
        "sent_at": "2026-12-01T16:00:01.000000Z",
        "notification_type": "email",
        "template_id": "f33517ff-2a88-4f6e-b855-c550268ce08a",
        "template_version": 1,
    }


def test_a_permanent_failure_is_a_hard_bounce_recorded_once(db, hook_client, sent):
    issue_id, people, ids = sent
    answer = _receipt(hook_client, _notified(ids, "ann@example.org", "permanent-failure"))
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 1
    assert answer.headers["X-RateLimit-Limit"] == "6000"
    key = "notify:740e5834-3a29-46b4-9a6f-16142fde533a:permanent-failure"
    assert _events(db) == [("notify", "bounce", "hard", key, people["ann@example.org"], issue_id)]
    assert _statuses(db, issue_id)[people["ann@example.org"]] == "bounced"
    assert _suppressed(db) == {("bounced", True, issue_id)}
    again = _receipt(hook_client, _notified(ids, "ann@example.org", "permanent-failure"))
    assert again.status_code == 200 and again.get_json()["recorded"] == 0 and len(_events(db)) == 1


def test_a_temporary_failure_is_counted_and_the_others_are_only_heard(db, hook_client, sent):
    _issue_id, _people, ids = sent
    assert _receipt(hook_client, _notified(ids, "ann@example.org", "temporary-failure")).get_json()["recorded"] == 1
    for status in ("technical-failure", "delivered"):
        answer = _receipt(hook_client, _notified(ids, "bob@example.org", status, notification=f"n-{status}"))
        assert answer.status_code == 200 and answer.get_json()["recorded"] == 0
    assert [e[:3] for e in _events(db)] == [("notify", "bounce", "soft")]
    assert _suppressed(db) == set()


@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN + "x", TOKEN[:-1]])
def test_a_receipt_without_our_token_is_refused_and_changes_nothing(db, hook_client, sent, token):
    _issue_id, _people, ids = sent
    answer = _receipt(hook_client, _notified(ids, "ann@example.org", "permanent-failure"), token=token)
    assert answer.status_code == 403
    assert _events(db) == []


def test_a_bad_token_is_refused_before_the_body_is_read(hook_client):
    assert _receipt(hook_client, {"nonsense": True}, token="wrong").status_code == 403


@pytest.mark.parametrize(
    "change", [{"status": "sending"}, {"to": None}, {"id": ""}, {"status": 3}], ids=["status", "to", "id", "type"]
)
def test_a_receipt_that_is_not_one_is_a_400(db, hook_client, sent, change):
    _issue_id, _people, ids = sent
    answer = _receipt(hook_client, {**_notified(ids, "ann@example.org", "permanent-failure"), **change})
    assert answer.status_code == 400 and answer.get_json()["error"]
    assert _events(db) == []


def test_a_reference_naming_nobody_we_know_is_kept_unattributed(db, hook_client):
    receipt = {
        "id": "n-9",
        "reference": "issue-99.12345@mailer.test",
        "to": "who@example.org",
        "status": "permanent-failure",
    }
    answer = _receipt(hook_client, receipt)
    assert answer.status_code == 200 and "unattributed" in answer.get_json()["said"]
    assert _events(db) == [("notify", "bounce", "hard", "notify:n-9:permanent-failure", None, None)]
    assert _suppressed(db) == set()


def test_receipts_are_not_taken_without_a_callback_token(client):
    answer = client.post("/api/v1/hooks/notify", json={"id": "x"}, headers={"Authorization": "Bearer x"})
    assert answer.status_code == 404
