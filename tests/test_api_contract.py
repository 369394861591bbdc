"""The API against its own description: schemathesis calls every operation in /api/v1/openapi.json and checks each
answer, and the documented response properties are compared with what each resource really carries.

Two runs, both over rows that exist (issues in every state, a segment, updates, subscribers):
- `schemathesis run`, as CI would run it, against the app served on a local port: every phase (the schema's
  examples, boundary values of every constraint, 25 generated calls per operation with valid and with invalid
  input, and chains of calls), generated deterministically, so it makes the same ~3,800 calls every time.
- every operation with a path parameter, called 25 times with the ids of those rows (generated ids mostly find
  nothing), through schemathesis's Python API.
Checks: no 5xx, every status and content type documented, every body valid against its documented schema. (Not
negative_data_rejection: the services clean invisible characters out of free text before they measure it, so 601
characters of which two are invisible is a valid 599-character summary, which no schema can say.) Nothing shrinks.

Operations that send are harmless here: the app under test queues its tasks in a Redis of its own that no worker
reads (and that stops with the test module), and a queue that is not answering is tolerated by design (`enqueue`
logs and the sweeper finds the work later). The whole file takes about a minute, so it runs on whichever database
the suite uses: PostgreSQL refuses what SQLite stores (NUL characters, integers out of range), so CI's PostgreSQL
run is worth the minute.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import redis as redis_lib
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import free_port, wait_until
from mailer.accounts import create_token
from mailer.audience import commands, importer
from mailer.audience.inputs import NewSuppression, SegmentInput
from mailer.audience.lookups import parse_in
from mailer.audience.segments import topic_audience
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.audience.suppression import add_suppression
from mailer.audit import SYSTEM, Actor
from mailer.compose.issues import create_issue
from mailer.compose.updates import create_update, publish_update
from mailer.delivery import ledger
from mailer.dev.redis_server import server_args
from mailer.inputs import parse
from mailer.models import utcnow
from mailer.web.api.spec import api_description
from support.flows import issue_input, update_input

pytestmark = pytest.mark.schemathesis

OPERATIONS = [
    (f"{method.upper()} {path}", item[method])
    for path, item in api_description("http://mailer.test")["paths"].items()
    for method in item
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BOUNDED = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck),
)
PERSON = "jo@example.org"


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    """A Redis for this module alone: what the app under test queues is never run by the suite's workers."""
    port = free_port()
    args = server_args(port, tmp_path_factory.mktemp("contract-redis"))
    args[args.index("--appendonly") + 1] = "no"
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"

    def up():
        try:
            return redis_lib.Redis.from_url(url).ping()
        except redis_lib.ConnectionError:
            return False

    wait_until(up, 10, message="the contract test's redis-server to start")
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture()
def contract_app(settings, private_redis):
    from mailer.runtime import runtime, set_runtime
    from mailer.tasks import configure_celery
    from mailer.web import create_app
    from mailer.web.limits import limiter

    before = runtime()
    application = create_app(settings.with_overrides(redis_url=private_redis))
    application.config["TESTING"] = True
    # Thousands of calls on one token would meet the API's rate limit (tests/test_rate_limits.py proves it): a
    # 429 is documented, so it would pass every check while proving nothing about the operation.
    limiter.enabled = False
    yield application
    limiter.enabled = True
    with application.app_context():
        limiter.reset()
    # create_app pointed the process's Celery app and runtime at the private Redis: point them back.
    set_runtime(before)
    configure_celery(before.settings)


@pytest.fixture()
def rows(db) -> dict[str, list]:
    """One of each thing the API reads, in the states its operations act on; returns the ids by parameter."""
    writer = Actor("user", None, "writer@hiow.nhs.uk")
    with db.transaction() as s:
        for i, email in enumerate([PERSON, "sam@example.org", "alex@example.org"]):
            outcome = request_subscription(s, email=email, topic_slugs=["careers", "trust-matters"], area="hampshire")
            if i < 2:
                confirm_subscription(s, outcome.request_id)
        hampshire = {"all": [{"field": "area", "op": "is", "value": "hampshire"}]}
        data = parse_in(s, SegmentInput, {"name": "Hampshire", "rules": hampshire})
        segment = commands.save_segment(s, data, SYSTEM)
        issues = {}
        for status in ("draft", "in_review", "approved", "scheduled", "sending", "paused", "sent"):
            written = issue_input(s, subject=f"An issue {status}", body="Text", topic="careers")
            issue = create_issue(s, written, actor=writer)
            issue.status, issue.segment_id = status, segment.id if status == "draft" else None
            if status not in ("draft", "in_review"):
                issue.approved_at = utcnow()
            if status == "scheduled":
                issue.send_at = utcnow() + timedelta(days=3)
            if status in ("sending", "paused", "sent"):
                issue.send_requested_at = issue.planned_at = utcnow()
                s.flush()
                issue.recipient_count = ledger.plan_deliveries(s, issue.id, topic_audience(issue.topic_id))
            issues[status] = issue.id
        draft = create_update(s, update_input(s, title="A draft update", topic="careers", body="More to come"))
        agreed = update_input(s, title="Ward move agreed", topic="project-fusion", areas=["hampshire"])
        published = create_update(s, agreed)
        publish_update(s, published.id, writer)
        listed = [
            add_suppression(s, parse(NewSuppression, {"email": email, "reason": "bounced"}), writer).id
            for email in ("sam@example.org", "nobody-we-know@example.org")
        ]
        s.flush()
        ids = {
            "issue_id": list(issues.values()),
            "segment_id": [segment.id],
            "update_id": [draft.id, published.id],
            "email": [PERSON, "alex@example.org"],
            "slug": ["careers", "trust-matters"],
            "suppression_id": listed,
            "topic_id": [1, 2],  # seeded: migration 0017 and `mailer init`
            "area_id": [1, 2],
        }
    # An import that has ended and one still waiting for a worker.
    people = b"email,topics,consent_source\nimported@example.org,careers,Paper form\n"
    ids["import_id"] = [importer.receive_import(db, io.BytesIO(people), channel="api") for _ in range(2)]
    importer.process_import(db, ids["import_id"][0])
    return ids


def _on_rows(operation, ids: dict):
    """Valid calls of the operation whose path parameters name rows that exist."""
    names = [p.name for p in operation.path_parameters]
    chosen = st.fixed_dictionaries({name: st.sampled_from(ids[name]) for name in names})
    mode = GenerationMode.POSITIVE
    return chosen.flatmap(lambda params: operation.as_strategy(generation_mode=mode, path_parameters=params))


# About four minutes on a quiet 2-core machine (two more operations since the providers' webhooks); room for a busy one.
@pytest.mark.timeout(600)
def test_schemathesis_run_finds_no_server_error_and_no_answer_outside_the_description(contract_app, db, rows, tmp_path):
    """What CI's schemathesis run is: the command line against a served app (on this test's database)."""
    from werkzeug.serving import make_server

    with db.transaction() as s:
        token = create_token(s, "schemathesis", role="admin")[1]
    statuses: list[str] = []

    def counting(environ, start_response):
        def start(status, headers, exc_info=None):
            statuses.append(status)
            return start_response(status, headers, exc_info)

        return contract_app(environ, start)

    server = make_server("127.0.0.1", free_port(), counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}/api/v1"
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{base}/openapi.json", "--url", base]
    command += ["--header", f"Authorization: Bearer {token}", "--checks", ",".join(c.__name__ for c in CHECKS)]
    command += ["--max-examples", "25", "--generation-deterministic", "--no-shrink", "--no-color"]
    try:
        # cwd: whatever it writes stays out of the checkout
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=540)
    finally:
        server.shutdown()
        thread.join(10)
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    assert len(statuses) > 1000, f"schemathesis made only {len(statuses)} calls"
    assert not [s for s in statuses if s.startswith("429")], "calls were answered by the rate limit, not the API"


@pytest.mark.parametrize("label", [label for label, op in OPERATIONS if op.get("parameters")])
def test_every_operation_on_rows_that_exist_answers_as_described(contract_app, db, rows, label):
    with db.transaction() as s:
        token = create_token(s, "schemathesis", role="admin")[1]
    operation = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", contract_app).find_operation_by_label(label)
    if not list(operation.path_parameters):
        pytest.skip("only query parameters: the schemathesis run covers it")

    @given(case=_on_rows(operation, rows))
    @BOUNDED
    def call(case):
        response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
        assert response.status_code != 429, "answered by the rate limit, not the operation"

    call()


# --- the description names what each resource carries -------------------------------------------------------------


def _documented(document: dict, schema: dict) -> set[str]:
    """The property names a response schema documents (following $ref and allOf)."""
    if "$ref" in schema:
        return _documented(document, document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= _documented(document, part)
    return names


def _response_schema(document: dict, label: str, status: str) -> dict:
    method, path = label.split(" ", 1)
    return document["paths"][path][method.lower()]["responses"][status]["content"]["application/json"]["schema"]


def test_documented_response_properties_are_exactly_what_the_api_returns(contract_app, db, rows):
    """One real answer of each resource, its keys against the description's (and the same for nested ones)."""
    with db.transaction() as s:
        token = create_token(s, "drift", role="admin")[1]
    client = contract_app.test_client()
    document = client.get("/api/v1/openapi.json").get_json()
    components = document["components"]["schemas"]

    def call(method, path, json=None):
        response = client.open(f"/api/v1{path}", method=method, json=json, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code < 300, (path, response.get_json())
        return response.get_json()

    sent = rows["issue_id"][-1]
    samples = {
        ("GET /issues/{issue_id}", "200"): call("GET", f"/issues/{sent}"),
        ("POST /issues", "201"): call("POST", "/issues", {"subject": "Hi", "body": "Text", "topic": "careers"}),
        ("GET /issues/{issue_id}/deliveries", "200"): (page := call("GET", f"/issues/{sent}/deliveries")),
        ("POST /issues/{issue_id}/test", "202"): call("POST", f"/issues/{sent}/test", {"to": ["me@hiow.nhs.uk"]}),
        ("GET /segments/{segment_id}", "200"): call("GET", f"/segments/{rows['segment_id'][0]}"),
        ("POST /segments", "201"): call(
            "POST",
            "/segments",
            {"name": "All", "rules": {"any": [{"field": "area", "op": "is_not", "value": "portsmouth"}]}},
        ),
        ("GET /segments/{segment_id}/count", "200"): call("GET", f"/segments/{rows['segment_id'][0]}/count"),
        ("POST /segments/count", "200"): call(
            "POST", "/segments/count", {"rules": {"all": [{"field": "topic", "op": "is", "value": "careers"}]}}
        ),
        ("GET /subscribers/{email}", "200"): (person := call("GET", f"/subscribers/{PERSON}")),
        ("GET /subscribers/{email}/export", "200"): call("GET", f"/subscribers/{PERSON}/export"),
        ("GET /updates/{update_id}", "200"): call("GET", f"/updates/{rows['update_id'][0]}"),
        ("POST /updates", "201"): call("POST", "/updates", {"title": "Another", "topic": "careers"}),
        ("POST /digests/run", "202"): call("POST", "/digests/run", {"frequency": "weekly"}),
        ("GET /suppressions", "200"): (listed := call("GET", "/suppressions")),
        ("GET /suppressions/{suppression_id}", "200"): call("GET", f"/suppressions/{rows['suppression_id'][0]}"),
        ("POST /suppressions", "201"): call("POST", "/suppressions", {"email": "new@example.org", "reason": "bounced"}),
    }
    topics = call("GET", "/topics")
    nested = {
        "Topic": topics[0],
        "Delivery": page["deliveries"][0],
        "Subscription": person["subscriptions"][0],
        "ConsentEvent": person["consent"][0],
        "ListedAddress": listed["suppressions"][0],
        "Figures": samples[("GET /issues/{issue_id}", "200")]["figures"],
    }
    for (label, status), body in samples.items():
        assert set(body) == _documented(document, _response_schema(document, label, status)), label
    for name, body in nested.items():
        assert set(body) == set(components[name]["properties"]), name
    assert set(samples[("GET /issues/{issue_id}", "200")]["counts"]) == set(
        components["Issue"]["properties"]["counts"]["properties"]
    )


def test_every_operation_of_the_api_is_described(contract_app):
    """A route added without its description fails here (the routes list says which)."""
    described = {(label.split(" ", 1)[0], label.split(" ", 1)[1]) for label, _op in OPERATIONS}
    routes = set()
    for rule in contract_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = rule.rule.removeprefix("/api/v1")
        actions = ["pause", "resume", "cancel"] if "<any(" in path else [None]
        for action in actions:
            concrete = path.replace("<any(pause, resume, cancel):action>", action or "")
            concrete = concrete.replace("<int:", "{").replace("<path:", "{").replace("<", "{").replace(">", "}")
            routes |= {(method, concrete) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == described
