"""Hostile input gets a clear 4xx, never a 500: segment rules, JSON bodies, sign-in redirects, ids and NUL.

Each repro here was a 500 (or an issue stuck `sending` to nobody) before; the PostgreSQL ones only there, so run
this file with TEST_DATABASE_URL too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from conftest import csrf_from
from mailer.accounts import create_token
from mailer.audience.export import export_audience
from mailer.audience.segments import check_rules, count, segment_audience
from mailer.audit import Actor
from mailer.compose.issues import create_issue, request_send, return_issue, start_due, submit_issue
from mailer.errors import InvalidInput
from mailer.models import AuditEvent, Delivery, Issue, Segment, utcnow
from support.flows import issue_input, sign_in

WRITER = Actor("user", None, "writer@hiow.nhs.uk")
GOOD_RULE = {"field": "area", "op": "is", "value": "portsmouth"}
# Accepted by validation before it was fixed, and a 500 (OverflowError) wherever it was used afterwards.
UNUSABLE = {"all": [{"field": "subscribed_at", "op": "after", "value": "9999-12-31"}]}


class Api:
    def __init__(self, client, token: str):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def open(self, method: str, path: str, **kw):
        return self.client.open(f"/api/v1{path}", method=method, headers=self.headers, **kw)

    def get(self, path):
        return self.open("GET", path)

    def post(self, path, json=None, **kw):
        return self.open("POST", path, json=json, **kw)


@pytest.fixture()
def api(client, db):
    with db.transaction() as s:
        return Api(client, create_token(s, "hostile", role="admin")[1])


def _count(db, model) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


# --- segment rules that cannot be queried ----------------------------------------------------------------

BAD_DATES = [
    ("after", "9999-12-31"),  # the day after does not exist
    ("before", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
    ("after", "9999-12-31T23:30:00-01:00"),  # after 9999 in UTC
    ("before", "3026-01-01"),  # a mistyped year: no subscription is dated then
    ("after", "1899-12-31"),
]


@pytest.mark.parametrize(("op", "value"), BAD_DATES)
def test_a_rule_date_outside_1900_to_2999_is_refused_wherever_rules_are_saved_or_counted(api, db, op, value):
    rules = {"all": [GOOD_RULE, {"field": "subscribed_at", "op": op, "value": value}]}
    for response in (
        api.post("/segments", {"name": "Odd dates", "rules": rules}),
        api.post("/segments/count", {"rules": rules}),
    ):
        assert response.status_code == 400, response.get_json()
        assert "1900 to 2999" in response.get_json()["fields"]["rules.all[1].value"]
    assert _count(db, Segment) == 0

    saved = api.post("/segments", {"name": "Portsmouth", "rules": {"all": [GOOD_RULE]}})
    assert saved.status_code == 201
    changed = api.open("PUT", f"/segments/{saved.get_json()['id']}", json={"rules": rules})
    assert changed.status_code == 400
    assert api.get(f"/segments/{saved.get_json()['id']}").get_json()["rules"] == {"all": [GOOD_RULE]}


def _any_moment_text():
    """Dates and times anywhere Python can hold them, with any offset, written as people and programs write them."""
    offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
    two_days = timedelta(days=2)
    near = [  # around each end of what Python and the rules allow
        st.datetimes(max_value=datetime.min + two_days),
        st.datetimes(datetime(1900, 1, 1) - two_days, datetime(1900, 1, 1) + two_days),
        st.datetimes(datetime(3000, 1, 1) - two_days, datetime(3000, 1, 1) + two_days),
        st.datetimes(min_value=datetime.max - two_days),
    ]
    moments = st.one_of(st.datetimes(), *near).flatmap(
        lambda m: st.none().map(lambda _: m) | offsets.map(lambda tz: m.replace(tzinfo=tz))
    )
    return st.one_of(
        moments.map(lambda m: m.date().isoformat()),
        moments.map(lambda m: m.isoformat()),
        moments.map(lambda m: m.isoformat(sep=" ", timespec="minutes")),
        moments.filter(lambda m: m.tzinfo is None).map(lambda m: m.isoformat() + "Z"),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["subscribed_at", "confirmed_at"]), st.sampled_from(["before", "after"]), _any_moment_text())
def test_every_date_rule_validation_accepts_can_be_counted_on_this_database(db, field, op, when):
    """Validation either refuses a date rule with a message or the rule compiles and its count runs."""
    rules = {"all": [{"field": field, "op": op, "value": when}]}
    with db.transaction() as s:
        try:
            checked = check_rules(s, rules)
        except InvalidInput as exc:
            assert list(exc.errors) == ["rules.all[0].value"]
            return
        assert count(s, segment_audience(checked)) == 0
        assert count(s, export_audience(rules=checked)) == 0


@pytest.mark.parametrize(("op", "value"), BAD_DATES[:2])
def test_the_segment_form_refuses_a_date_that_cannot_be_queried(client, db, op, value):
    sign_in(client, db, role="editor")
    page = client.get("/admin/segments/new")
    form = {
        "csrf_token": csrf_from(page.data),
        "name": "Odd dates",
        "match": "all",
        "field-0": "subscribed_at",
        "op-0": op,
        "date-0": value,
        "action": "save",
    }
    response = client.post("/admin/segments/new", data=form)
    assert response.status_code == 400
    assert "Condition 1: give a date in the years 1900 to 2999" in response.get_data(as_text=True)
    counted = client.post("/admin/segments/count", data=form)
    assert counted.status_code == 400 and "rule-0" in counted.get_json()["errors"]
    assert _count(db, Segment) == 0


@pytest.mark.parametrize(
    ("condition", "where"),
    [
        ({"field": ["area"], "op": "is", "value": "portsmouth"}, "field"),
        ({"field": {"area": 1}, "op": "is", "value": "portsmouth"}, "field"),
        ({"field": 7, "op": "is", "value": "portsmouth"}, "field"),
        ({"field": None, "op": "is", "value": "portsmouth"}, "field"),
        ({"field": "area", "op": ["is"], "value": "portsmouth"}, "op"),
        ({"field": "area", "op": {"is": 1}, "value": "portsmouth"}, "op"),
        ({"field": "area", "op": "is", "value": {"portsmouth": 1}}, "value"),
        ({"field": "area", "op": "in", "value": [["portsmouth"]]}, "value"),
        ({"field": "subscribed_at", "op": "after", "value": 20260101}, "value"),
        ({"field": "subscribed_at", "op": "after", "value": None}, "value"),
    ],
)
def test_a_rule_part_of_the_wrong_type_is_400_naming_its_path(api, db, condition, where):
    for response in (
        api.post("/segments/count", {"rules": {"any": [GOOD_RULE, condition]}}),
        api.post("/segments", {"name": "Typed", "rules": {"any": [GOOD_RULE, condition]}}),
    ):
        assert response.status_code == 400, response.get_json()
        assert list(response.get_json()["fields"]) == [f"rules.any[1].{where}"]
    assert _count(db, Segment) == 0


@pytest.mark.parametrize("frequency", [{}, [], 0, False, ["weekly"]])
def test_a_subscription_frequency_of_the_wrong_type_is_refused_not_taken_as_the_default(api, db, frequency):
    response = api.post(
        "/subscribers",
        {
            "email": "jo@example.org",
            "subscriptions": [{"topic": "careers", "frequency": frequency}],
            "consent": {"source": "Paper form", "collected": True},
        },
    )
    assert response.status_code == 400
    assert "Unknown frequency" in response.get_json()["fields"]["subscriptions"]


# --- rules stored before validation refused them ------------------------------------------------------------


@pytest.fixture()
def unusable_segment(db) -> int:
    """A segment saved before the fix: its rules passed the old validation and break every query."""
    with db.transaction() as s:
        segment = Segment(name="Far future", description="", rules=UNUSABLE)
        s.add(segment)
        s.flush()
        return segment.id


def _issue_to(db, segment_id: int, **state) -> int:
    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject="Jobs", body="We are hiring.", topic="careers"), actor=WRITER)
        issue.segment_id = segment_id
        for key, value in state.items():
            setattr(issue, key, value)
        return issue.id


def test_a_stored_unusable_segment_is_a_409_saying_what_to_change_and_its_pages_still_work(
    api, client, db, unusable_segment
):
    assert api.get("/segments").status_code == 200
    assert api.get(f"/segments/{unusable_segment}").status_code == 200
    for path in (f"/segments/{unusable_segment}/count", f"/segments/{unusable_segment}/export"):
        response = api.get(path)
        assert response.status_code == 409, path
        assert "can no longer be used" in response.get_json()["error"]
        assert "change them" in response.get_json()["error"]

    sign_in(client, db, role="publisher")
    assert client.get("/admin/segments").status_code == 200
    page = client.get(f"/admin/segments/{unusable_segment}")
    assert page.status_code == 200
    assert "give a date in the years 1900 to 2999" in page.get_data(as_text=True)
    export = client.get(f"/admin/segments/{unusable_segment}/export.csv")
    assert export.status_code == 303 and export.headers["Location"].endswith(f"/admin/segments/{unusable_segment}")
    assert "can no longer be used" in client.get(export.headers["Location"]).get_data(as_text=True)


def test_no_issue_can_be_written_or_approved_for_an_unusable_segment(api, client, db, unusable_segment):
    created = api.post("/issues", {"subject": "Jobs", "body": "Text", "topic": "careers", "segment": unusable_segment})
    assert created.status_code == 400
    assert "can no longer be used" in created.get_json()["fields"]["segment"]

    issue_id = _issue_to(db, unusable_segment, status="in_review", submitted_at=utcnow())
    sign_in(client, db, role="publisher")
    page = client.get(f"/admin/issues/{issue_id}")
    assert page.status_code == 200
    assert "This issue cannot be sent yet" in page.get_data(as_text=True)
    approved = api.post(f"/issues/{issue_id}/approve")
    assert approved.status_code == 409 and "can no longer be used" in approved.get_json()["error"]
    assert api.get(f"/issues/{issue_id}").get_json()["status"] == "in_review"


def test_an_issue_approved_with_unusable_rules_is_refused_before_its_send_starts(api, db, unusable_segment):
    issue_id = _issue_to(db, unusable_segment, status="approved", audience_rules=UNUSABLE, approved_at=utcnow())
    sent = api.post(f"/issues/{issue_id}/send")
    assert sent.status_code == 409
    assert "can no longer be used" in sent.get_json()["error"]
    assert "send the issue back and approve it again" in sent.get_json()["error"]
    scheduled = api.post(f"/issues/{issue_id}/schedule", {"send_at": (utcnow() + timedelta(days=2)).isoformat()})
    assert scheduled.status_code == 409
    assert api.get(f"/issues/{issue_id}").get_json()["status"] == "approved"
    assert _count(db, Delivery) == 0

    # What the refusal says to do works: fix the segment, send the issue back, approve it again, send.
    fixed = {"all": [{"field": "subscribed_at", "op": "after", "value": "2026-01-01"}]}
    assert api.open("PUT", f"/segments/{unusable_segment}", json={"rules": fixed}).status_code == 200
    with db.transaction() as s:
        return_issue(s, issue_id, WRITER, note="segment fixed")
        submit_issue(s, issue_id, WRITER)
    assert api.post(f"/issues/{issue_id}/approve").status_code == 200
    with db.transaction() as s:  # the service, not the API: nothing is queued for the suite's workers
        assert request_send(s, issue_id, WRITER).status == "sending"


def test_a_scheduled_issue_with_unusable_rules_goes_back_to_approved_saying_why(client, db, unusable_segment):
    issue_id = _issue_to(
        db, unusable_segment, status="scheduled", audience_rules=UNUSABLE, send_at=utcnow() - timedelta(minutes=1)
    )
    with db.transaction() as s:
        assert start_due(s) == []
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        assert (issue.status, issue.send_at) == ("approved", None)
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "issue.not_sent"))
        reasons = [e.details["reason"] for e in events]
    assert len(reasons) == 1 and "can no longer be used" in reasons[0]
    sign_in(client, db, role="publisher")
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert "This issue was not sent" in page and "can no longer be used" in page


def test_an_issue_left_sending_to_unusable_rules_is_cancelled_visibly_when_planned(app, client, db, unusable_segment):
    from mailer.tasks import plan_issue

    issue_id = _issue_to(db, unusable_segment, status="sending", audience_rules=UNUSABLE, send_requested_at=utcnow())
    assert plan_issue(issue_id) == 0  # what the sweeper's re-planning runs: it used to fail here every time
    with db.transaction() as s:
        issue = s.get(Issue, issue_id)
        assert (issue.status, issue.recipient_count) == ("cancelled", 0)
    assert _count(db, Delivery) == 0
    sign_in(client, db, role="publisher")
    page = client.get(f"/admin/issues/{issue_id}")
    assert page.status_code == 200
    assert "This issue was not sent" in page.get_data(as_text=True)


# --- JSON bodies ------------------------------------------------------------------------------------------------

# Every API call that reads a JSON body (the path ids need not exist: the body is read first).
JSON_CALLS = [
    ("POST", "/issues"),
    ("POST", "/issues/1/test"),
    ("POST", "/issues/1/schedule"),
    ("POST", "/segments"),
    ("PUT", "/segments/1"),
    ("POST", "/segments/count"),
    ("POST", "/subscribers"),
    ("POST", "/updates"),
    ("POST", "/digests/run"),
]


def test_every_json_call_is_listed(app):
    readers = {"create", "test", "schedule", "segments_create", "segments_update", "segments_preview_count"}
    readers |= {"subscribers_create", "updates_create", "digests_run"}
    assert len(JSON_CALLS) == len(readers)  # a new JSON call belongs in JSON_CALLS


@pytest.mark.parametrize(("method", "path"), JSON_CALLS)
@pytest.mark.parametrize(
    "body",
    [
        "[" * 50_000 + "]" * 50_000,
        '{"rules": ' + '{"all": [' * 5_000 + "]}" * 5_000 + "}",
        '{"a": ' + "[" * 40 + "]" * 40 + "}",
    ],
    ids=["array-50000", "rules-10000", "nested-41"],
)
def test_json_nested_too_deep_is_a_400_on_every_json_call(api, method, path, body):
    response = api.open(method, path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "JSON may nest arrays and objects at most 32 deep"


@pytest.mark.parametrize(
    ("number", "message"),
    [("1e400", "The number 1e400 is too large"), ("-1e400", "The number -1e400 is too large")]
    + [(name, f"{name} is not a JSON value") for name in ("NaN", "Infinity", "-Infinity")],
)
def test_json_numbers_that_are_not_json_or_too_large_are_refused_when_read(api, db, number, message):
    body = '{"subject": "Hi", "body": "Text", "topic": "careers", "segment": ' + number + "}"
    response = api.open("POST", "/issues", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == message
    assert _count(db, Issue) == 0


def test_nested_rules_typed_into_the_admin_are_refused_with_a_message(client, db):
    sign_in(client, db, role="editor")
    with db.transaction() as s:
        s.add(segment := Segment(name="Nested", description="", rules={"all": [{"any": [GOOD_RULE]}]}))
        s.flush()
        segment_id = segment.id
    page = client.get(f"/admin/segments/{segment_id}")
    response = client.post(
        f"/admin/segments/{segment_id}",
        data={"csrf_token": csrf_from(page.data), "name": "Nested", "rules_json": '{"all": ' * 50_000},
    )
    assert response.status_code == 303
    assert "The rules are not JSON we can read" in client.get(response.headers["Location"]).get_data(as_text=True)


# --- where sign-in returns to ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/admin/\r\nSet-Cookie: a=b",
        "/admin\r\n",
        "/admin/%0d%0aX-Evil: 1",
        "/admin/issues?x=%0d%0a",
        "/\\evil.example",
        "/\\\\evil.example",
        "\\\\evil.example",
        "/admin/\\evil.example",
        "//evil.example",
        "/%2f%2fevil.example",
        "/%5cevil.example",
        "https://evil.example/admin",
        "/\t/evil.example",
        "/admin/../../evil",
        "javascript:alert(1)",
        "/news",
    ],
)
def test_sign_in_never_sends_anyone_anywhere_but_our_admin(client, db, target):
    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, "editor@hiow.nhs.uk", "a long enough password", role="editor")
    page = client.get("/admin/login", query_string={"next": target})
    assert page.status_code < 500
    response = client.post(
        "/admin/login",
        query_string={"next": target},
        data={"csrf_token": csrf_from(page.data), "email": "editor@hiow.nhs.uk", "password": "a long enough password"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"


@pytest.mark.parametrize("page", ["/admin/audit?action=issue.send", "/admin/issues/7?test_to=me@hiow.nhs.uk"])
def test_sign_in_returns_to_the_admin_page_asked_for(client, db, page):
    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, "editor@hiow.nhs.uk", "a long enough password", role="editor")
    asked = client.get(page)
    assert asked.status_code == 302
    login = client.get(asked.headers["Location"])
    response = client.post(
        asked.headers["Location"],
        data={"csrf_token": csrf_from(login.data), "email": "editor@hiow.nhs.uk", "password": "a long enough password"},
    )
    assert response.headers["Location"] == page


# --- ids, paging and NUL characters ---------------------------------------------------------------------------

HUGE = "99999999999999999999"  # more digits than any route takes
TEN_DIGITS = "3000000000"  # a route's id, but above PostgreSQL's integers (MAX_ID)


@pytest.mark.parametrize("huge", [HUGE, TEN_DIGITS])
def test_ids_too_large_to_exist_are_a_404_everywhere(api, client, db, huge):
    HUGE = huge  # noqa: N806 - the paths below name it
    sign_in(client, db, role="admin")
    client.application.config["WTF_CSRF_ENABLED"] = False
    try:
        for method, path in [
            ("GET", f"/admin/issues/{HUGE}"),
            ("POST", f"/admin/segments/{HUGE}/delete"),
            ("POST", f"/admin/team/tokens/{HUGE}/revoke"),
            ("POST", f"/admin/team/users/{HUGE}"),
            ("GET", f"/admin/updates/{HUGE}"),
            ("GET", f"/admin/subscribers/{HUGE}"),
            ("GET", f"/admin/imports/{HUGE}"),
        ]:
            assert client.open(path, method=method).status_code == 404, path
    finally:
        client.application.config["WTF_CSRF_ENABLED"] = True
    for method, path in [("GET", f"/issues/{HUGE}"), ("PUT", f"/segments/{HUGE}"), ("GET", f"/updates/{HUGE}")]:
        assert api.open(method, path, json={}).status_code == 404, path


def test_odd_paging_values_are_a_400_or_ignored_never_a_500(api, client, db):
    issue_id = _issue_to(db, None)
    sign_in(client, db, role="admin")
    for value in ["-1", "1e400", HUGE, "0x10", "١٢", " 5", "", "9" * 5000]:
        for path in (f"/admin/issues/{issue_id}/recipients", f"/admin/issues/{issue_id}/recipients.csv"):
            assert client.get(path, query_string={"after": value, "page": value}).status_code in (200, 400), path
        assert client.get("/admin/audit", query_string={"before": value, "page": value}).status_code == 200
        response = api.open("GET", f"/issues/{issue_id}/deliveries", query_string={"after": value, "limit": value})
        assert response.status_code in (200, 400), value


@pytest.mark.parametrize(
    "path",
    [
        "/news/%00",
        "/news/updates/a%00b",
        "/admin/subscribers?q=%00",
        "/admin/audit?action=x%00",
        "/manage?x=%00",
        "/admin/login?next=/admin/%00",
    ],
)
def test_a_nul_character_in_the_address_is_a_400(client, db, path):
    sign_in(client, db, role="admin")
    response = client.get(path)
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)


def test_a_nul_character_in_a_topic_is_an_unknown_topic(api, client, db):
    """PostgreSQL refuses NUL in text: these were 500s there."""
    response = api.post("/issues", {"subject": "Hi", "body": "Text", "topic": "careers\x00"})
    assert response.status_code == 400 and "topic" in response.get_json()["fields"]
    response = api.post("/updates", {"title": "Hi", "topic": "\x00"})
    assert response.status_code == 400 and "topic" in response.get_json()["fields"]
    page = client.get("/subscribe")
    response = client.post(
        "/subscribe",
        data={"csrf_token": csrf_from(page.data), "email": "jo@example.org", "topics": ["\x00"], "area": "hampshire"},
    )
    assert response.status_code == 400
    sign_in(client, db, role="publisher")
    page = client.get("/admin/updates/new")
    response = client.post(
        "/admin/updates/new", data={"csrf_token": csrf_from(page.data), "title": "Hi", "topic": "careers\x00"}
    )
    assert response.status_code == 400


# --- every page and form, with values nobody types ---------------------------------------------------------------

FORM_FIELDS = [
    *("email", "password", "name", "description", "subject", "body", "topic", "preheader", "segment", "to"),
    *("send_at", "note", "match", "field-0", "op-0", "value-0-area", "date-0", "action", "q", "role", "active"),
    *("token-name", "confirm", "consent_source", "frequency", "title", "summary", "areas", "services", "link"),
    *("topics", "area", "audience", "rules_json", "List-Unsubscribe", "scope", "block-0-type", "block-0-text"),
    *("code", "current_password", "new_password", "confirm_password"),
]
QUERY = ["page", "after", "before", "status", "q", "action", "test_to", "part", "saved", "next", "limit"]


def _filled(rule, number: str, text: str) -> str:
    import re

    path = re.sub(r"<any\(([^)]*)\):action>", lambda m: m.group(1).split(",")[0].strip(), rule.rule)
    path = re.sub(r"<int:\w+>", number, path)
    return re.sub(r"<(?:path:)?\w+>", text, path)


def test_no_page_or_form_answers_a_500_whatever_it_is_sent(app, client, db):
    """Every admin and public route, signed in as an admin, with huge ids, NUL characters, long, line-breaking
    and repeated values in every form field and query parameter the views read."""
    sign_in(client, db, role="admin")
    real_issue = _issue_to(db, None)
    app.config["WTF_CSRF_ENABLED"] = False  # CSRF has its own tests; here the values must reach the views
    failures = []
    try:
        for rule in app.url_map.iter_rules():
            if rule.rule.startswith(("/api/", "/static")) or rule.endpoint == "admin.logout":
                continue
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                for number, text in [(HUGE, "x"), (str(real_issue), "\x00"), ("1", "careers")]:
                    path = _filled(rule, number, text)
                    for value in ["\x00", "a\x00b", "x" * 3000, "\r\nX: y", "-1", "1e400", ["a", "b"]]:
                        query = {k: value if isinstance(value, list) else value.replace("\x00", "") for k in QUERY}
                        response = client.open(
                            path,
                            method=method,
                            query_string=query,
                            data={k: value for k in FORM_FIELDS} if method == "POST" else None,
                        )
                        if response.status_code >= 500:
                            failures.append((method, path, str(value)[:10], response.status_code))
                        response.close()
    finally:
        app.config["WTF_CSRF_ENABLED"] = True
    assert not failures
