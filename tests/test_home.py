"""The team's home page (what waits for approval, what is scheduled in UK time, what is sending with its live
progress, what was sent with its figures, subscribers per topic week by week, deliverability against the
auto-pause limits, imports running) and the issues list's dates, filters and pages. Each test prepares exactly the
rows its panel reads, through the rooms' own commands where they exist, and reads the page as a person would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import delete, select

from mailer.audience.lookups import topic_by_slug
from mailer.audience.subscriptions import confirm_subscription, request_subscription, unsubscribe
from mailer.compose.issues import create_issue, request_send, return_issue, submit_issue
from mailer.feedback.commands import Report, record
from mailer.models import AdminUser, Delivery, Import, Issue, Topic, utcnow
from support.flows import approve_for_sending, issue_input, sign_in

PASSWORD = "a long enough password"


def _person_id(db, email: str) -> int:
    with db.sessions() as s:
        return s.scalar(select(AdminUser.id).where(AdminUser.email == email))


def _issue(db, subject: str, topic="trust-matters", created_by_id=None) -> int:
    with db.transaction() as s:
        return create_issue(s, issue_input(s, subject=subject, body="News.", topic=topic), created_by_id).id


def _people(db, count: int, prefix: str, topics=("project-fusion",)) -> list[int]:
    ids = []
    with db.transaction() as s:
        for i in range(count):
            outcome = request_subscription(s, email=f"{prefix}{i}@example.org", topic_slugs=list(topics))
            confirm_subscription(s, outcome.request_id)
            ids.append(outcome.subscriber_id)
    return ids


def _sending(db, subject: str, people: int, prefix: str) -> tuple[int, list[int]]:
    """An issue to Project Fusion whose send started and whose ledger holds one pending row per person."""
    from mailer.audience.segments import topic_audience
    from mailer.delivery import dispatch

    _people(db, people, prefix)
    issue_id = _issue(db, subject, topic="project-fusion")
    with db.transaction() as s:
        approve_for_sending(s, issue_id)
        request_send(s, issue_id)
    dispatch.plan_issue(db, issue_id, lambda issue: topic_audience(issue.topic_id), 1000)
    with db.sessions() as s:
        rows = list(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id).order_by(Delivery.id)))
    return issue_id, rows


def _mark_sent(db, rows: list[int]) -> None:
    with db.transaction() as s:
        for row in s.scalars(select(Delivery).where(Delivery.id.in_(rows))):
            row.status, row.sent_at = "sent", utcnow()


def _row(page: bytes, row_id: str) -> str:
    match = re.search(rf'<tr class="nhsuk-table__row" id="{row_id}">(.*?)</tr>', page.decode(), re.S)
    assert match, f"no row {row_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def _text(html: bytes | str) -> str:
    html = html.decode() if isinstance(html, bytes) else html
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# --- waiting for me ---------------------------------------------------------------------------------------------


def test_publishers_see_what_others_submitted_and_writers_see_their_own_returned_first(app, db):
    writer, publisher = app.test_client(), app.test_client()
    sign_in(writer, db, "writer@hiow.nhs.uk", role="editor")
    sign_in(publisher, db, "publisher@hiow.nhs.uk", role="publisher")
    writer_id, publisher_id = _person_id(db, "writer@hiow.nhs.uk"), _person_id(db, "publisher@hiow.nhs.uk")
    submitted = _issue(db, "Ward move: please check", created_by_id=writer_id)
    returned = _issue(db, "Careers fair dates", topic="careers", created_by_id=writer_id)
    own_draft = _issue(db, "Publisher's own draft", created_by_id=publisher_id)
    mine_submitted = _issue(db, "Submitted by the publisher", created_by_id=publisher_id)
    with db.transaction() as s:
        writer_actor = _actor(s, writer_id)
        submit_issue(s, submitted, writer_actor)
        submit_issue(s, returned, writer_actor)
        return_issue(s, returned, _actor(s, publisher_id), note="Add the venue, please")
        submit_issue(s, mine_submitted, _actor(s, publisher_id))

    page = publisher.get("/admin/")
    assert page.status_code == 200
    html = page.data.decode()
    assert f"to-approve-{submitted}" in html
    assert "Ward move: please check" in _row(page.data, f"to-approve-{submitted}")
    # What the publisher submitted themself is not theirs to approve; drafts are nobody's to approve yet.
    assert f"to-approve-{mine_submitted}" not in html and f"to-approve-{returned}" not in html
    assert "In review" in _row(page.data, f"own-{mine_submitted}") and f"own-{own_draft}" in html

    mine = writer.get("/admin/")
    assert mine.status_code == 200
    assert "To approve" not in mine.data.decode()  # an editor approves nothing
    rows = re.findall(r'id="own-(\d+)"', mine.data.decode())
    assert rows == [str(returned), str(submitted)]  # the one sent back first: it is the one to act on
    back = _row(mine.data, f"own-{returned}")
    assert "Sent back to you" in back and "publisher@hiow.nhs.uk" in back and "Add the venue, please" in back
    assert "waiting for a publisher" in _row(mine.data, f"own-{submitted}")


def _actor(session, person_id):
    from mailer.audit import Actor

    return Actor.user(session.get(AdminUser, person_id))


# --- scheduled, in UK time ----------------------------------------------------------------------------------------


def test_scheduled_issues_show_uk_time_on_either_side_of_the_clocks_going_forward(app, db):
    from mailer.compose.commands import schedule_issue
    from mailer.compose.inputs import ScheduleInput
    from mailer.inputs import parse

    # 2027's clocks go forward at 01:00 UTC on Sunday 28 March.
    with time_machine.travel(datetime(2027, 3, 20, 12, tzinfo=UTC), tick=True):
        client = app.test_client()
        sign_in(client, db, "publisher@hiow.nhs.uk", role="publisher")
        after = _issue(db, "After the change")
        before = _issue(db, "Before the change")
        with db.transaction() as s:
            for issue_id, when in ((after, "2027-03-29T09:00"), (before, "2027-03-27T09:00")):
                approve_for_sending(s, issue_id)
                schedule_issue(s, issue_id, parse(ScheduleInput, {"send_at": when}), None)
        page = client.get("/admin/")
        assert page.status_code == 200
        assert re.findall(r'id="scheduled-(\d+)"', page.data.decode()) == [str(before), str(after)]
        assert "Saturday 27 March 2027 at 09:00 (GMT)" in _row(page.data, f"scheduled-{before}")
        assert "Monday 29 March 2027 at 09:00 (BST)" in _row(page.data, f"scheduled-{after}")
        assert 'datetime="2027-03-29T08:00:00+00:00"' in page.data.decode()

        listed = client.get("/admin/issues?status=scheduled")
        assert listed.status_code == 200
        assert "27 Mar 2027, 09:00 GMT" in _row(listed.data, f"issue-{before}")
        assert "29 Mar 2027, 09:00 BST" in _row(listed.data, f"issue-{after}")


# --- sending now, live --------------------------------------------------------------------------------------------


def test_a_send_in_progress_shows_its_ledger_so_far_and_the_panel_refreshes_alone(app, db):
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    issue_id, rows = _sending(db, "Project Fusion: March", 10, "reader")
    _mark_sent(db, rows[:3])

    page = client.get("/admin/")
    assert page.status_code == 200
    row = _row(page.data, f"sending-{issue_id}")
    assert "Project Fusion: March" in row and "3 of 10 done (3 delivered)" in row
    assert re.search(rf'<progress id="sending-{issue_id}-bar" max="10" value="3"', page.data.decode())
    assert 'data-active="1"' in page.data.decode()
    assert 'src="/static/home.js"' in page.data.decode()
    # Without JavaScript: a link that reloads the page at the panel.
    assert 'href="/admin/#sending"' in page.data.decode()

    # The ledger moves on: the panel alone (what home.js swaps in) says so, without the rest of the page.
    with db.transaction() as s:
        for row in s.scalars(select(Delivery).where(Delivery.id.in_(rows[3:6]))):
            row.status = "bounced"
    _mark_sent(db, rows[6:8])
    panel = client.get("/admin/home/sending")
    assert panel.status_code == 200
    assert "<html" not in panel.data.decode() and "Recently sent" not in panel.data.decode()
    assert "8 of 10 done (5 delivered)" in _row(panel.data, f"sending-{issue_id}")

    with db.transaction() as s:
        s.get(Issue, issue_id).status = "paused"
    paused = client.get("/admin/home/sending")
    assert "Paused" in _row(paused.data, f"sending-{issue_id}")
    assert 'data-active="0"' in paused.data.decode()  # nothing left moving: home.js stops asking


def test_a_send_whose_ledger_is_not_written_yet_says_so(app, db):
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    issue_id = _issue(db, "Just started")
    with db.transaction() as s:
        approve_for_sending(s, issue_id)
        request_send(s, issue_id)
    row = _row(client.get("/admin/").data, f"sending-{issue_id}")
    assert "Working out who it goes to" in row


# --- recently sent, and deliverability -----------------------------------------------------------------------------


@pytest.fixture()
def sent_with_bounces(db, settings):
    """A finished send to 20 people: 16 delivered, 4 hard bounces (reported after the relay took them) and a
    spam report."""
    issue_id, rows = _sending(db, "Project Fusion: February", 20, "sent")
    _mark_sent(db, rows)
    with db.transaction() as s:
        for n, row in enumerate(rows[:4]):
            record(s, Report(source="smtp", kind="bounce", severity="hard", key=f"dsn:{n}", delivery_id=row), settings,
                   judge=False)  # fmt: skip
        record(s, Report(source="smtp", kind="complaint", key="arf:1", delivery_id=rows[10]), settings, judge=False)
        issue = s.get(Issue, issue_id)
        issue.status, issue.finished_at = "sent", utcnow()
    return issue_id


def test_recently_sent_shows_delivered_bounced_and_spam_reports(app, db, sent_with_bounces):
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    page = client.get("/admin/")
    row = _row(page.data, f"recent-{sent_with_bounces}")
    assert "Project Fusion: February" in row
    cells = dict(re.findall(r'data-figure="(\w+)">(.*?)</td>', page.data.decode()))
    assert _text(cells["delivered"]) == "16"
    assert _text(cells["bounced"]).startswith("4 hard, 0 soft 20.0%")  # and a warning tag: 4 of 20
    assert _text(cells["complaints"]).startswith("1")
    assert "Opens are not counted" in page.data.decode()


def test_deliverability_health_compares_the_30_days_with_the_auto_pause_limits(app, db, sent_with_bounces):
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    page = client.get("/admin/")
    bounces = _row(page.data, "health-bounces")
    assert "20.0% (4 of 20)" in bounces and "5 %" in bounces and "Above the pause limit" in bounces
    complaints = _row(page.data, "health-complaints")
    assert "5.00% (1 of 20)" in complaints and "0.1 %" in complaints and "Above the pause limit" in complaints

    # A month on, nothing was sent in the last 30 days.
    with time_machine.travel(utcnow() + timedelta(days=31), tick=True):
        later = app.test_client()
        sign_in(later, db, "later@hiow.nhs.uk", role="editor")
        assert 'id="health-none"' in later.get("/admin/").data.decode()


def test_a_quiet_list_is_healthy(app, db):
    issue_id, rows = _sending(db, "All fine", 5, "fine")
    _mark_sent(db, rows)
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    page = client.get("/admin/")
    assert "Healthy" in _row(page.data, "health-bounces") and "Healthy" in _row(page.data, "health-complaints")


# --- subscribers per topic, week by week ---------------------------------------------------------------------------


def test_subscribers_per_topic_show_twelve_weeks_of_growth_from_the_database_topics(app, db):
    # Wednesday 24 March 2027: the 12 weeks start on Monday 4 January.
    start = datetime(2027, 3, 24, 10, tzinfo=UTC)
    with time_machine.travel(start - timedelta(weeks=20), tick=True):
        _people(db, 1, "early")  # before the 12 weeks: there already, no change in them
    with time_machine.travel(datetime(2027, 2, 2, 10, tzinfo=UTC), tick=True):  # week of 1 February
        joined = _people(db, 3, "feb")
    with time_machine.travel(datetime(2027, 3, 9, 10, tzinfo=UTC), tick=True):  # week of 8 March
        with db.transaction() as s:
            unsubscribe(s, joined[0], topic_by_slug(s, "project-fusion").id)
        _people(db, 2, "careers", topics=("careers",))
    with db.transaction() as s:  # a topic the team made and retired: listed as every other, from its row, marked
        s.add(Topic(id=40, slug="name-consultation", name="Name consultation", description="", position=99,
                    retired_at=start - timedelta(days=1)))  # fmt: skip
    try:
        with time_machine.travel(start, tick=True):
            client = app.test_client()
            sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
            page = client.get("/admin/")
    finally:
        with db.transaction() as s:  # the seeded topics are all the next test expects
            s.execute(delete(Topic).where(Topic.id == 40))
    html = page.data.decode()
    assert re.findall(r'<tr class="nhsuk-table__row" id="growth-([\w-]+)">', html) == [
        "trust-matters",
        "project-fusion",
        "get-involved",
        "careers",
        "sustainability",
        "name-consultation",
    ]
    fusion = _row(page.data, "growth-project-fusion")
    assert fusion.startswith("Project Fusion updates 3 +2")
    assert "Project Fusion updates: 1 12 weeks ago, 3 now (+2)" in fusion  # the sparkline's text alternative
    assert _row(page.data, "growth-careers").startswith("Careers 2 +2")
    assert _row(page.data, "growth-name-consultation").startswith("Name consultation Retired 0 0")
    assert "Retired" not in _row(page.data, "growth-careers")
    weeks = dict(re.findall(r'data-week="([\w-]+)">([^<]*)<', html))
    assert weeks["project-fusion-4"] == "+3" and weeks["project-fusion-9"] == "-1"
    assert weeks["careers-9"] == "+2" and weeks["project-fusion-0"] == "0"
    assert ">4 Jan 2027<" in html and ">22 Mar 2027<" in html  # the first and this week
    # The sparkline rises from 1 to 4 in February and ends at 3: its last point is below its highest.
    points = re.search(r'aria-labelledby="spark-project-fusion".*?points="([^"]+)"', html, re.S).group(1).split()
    ys = [float(p.split(",")[1]) for p in points]
    assert len(ys) == 12 and ys[0] == max(ys) and min(ys) == ys[4] < ys[-1]


# --- imports running ---------------------------------------------------------------------------------------------


def test_running_imports_are_shown_to_publishers_only(app, db):
    with db.transaction() as s:
        s.add(Import(filename="people.csv", channel="admin", status="running", size=1000, bytes_read=400,
                     last_row=41, counts={"rows": 40, "imported": 35}))  # fmt: skip
        s.add(Import(filename="done.csv", channel="admin", status="finished", size=10, bytes_read=10))
    publisher, editor = app.test_client(), app.test_client()
    sign_in(publisher, db, "publisher@hiow.nhs.uk", role="publisher")
    sign_in(editor, db, "editor@hiow.nhs.uk", role="editor")
    page = publisher.get("/admin/")
    running = re.findall(r'id="import-(\d+)"', page.data.decode())
    assert len(running) == 1
    assert "people.csv Running 40% 40%: 40 rows read, 35 new" in _row(page.data, f"import-{running[0]}")
    assert "done.csv" not in page.data.decode()
    assert "Imports running" not in editor.get("/admin/").data.decode()


def test_an_empty_service_has_a_home_page_that_says_so(app, db):
    client = app.test_client()
    sign_in(client, db, "admin@hiow.nhs.uk", role="admin")
    html = client.get("/admin/").data.decode()
    for empty in ("to-approve-none", "own-none", "scheduled-none", "sending-none", "recent-none", "health-none",
                  "imports-none"):  # fmt: skip
        assert f'id="{empty}"' in html, empty
    # Headings in order: one h1, then h2s, h3s only under an h2.
    levels = [int(n) for n in re.findall(r"<h([1-6])", html.split('id="maincontent"')[-1])]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False))


# --- the issues list ---------------------------------------------------------------------------------------------


@pytest.fixture()
def many_issues(db):
    """27 drafts about Careers, 3 in review about Careers, 5 drafts about Trust Matters, oldest first."""
    ids = {"careers-draft": [], "careers-review": [], "trust-draft": []}
    for n in range(27):
        ids["careers-draft"].append(_issue(db, f"Careers {n}", topic="careers"))
    for n in range(3):
        issue_id = _issue(db, f"Careers review {n}", topic="careers")
        with db.transaction() as s:
            submit_issue(s, issue_id)
        ids["careers-review"].append(issue_id)
    for n in range(5):
        ids["trust-draft"].append(_issue(db, f"Trust {n}"))
    return ids


def _listed(page) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class="nhsuk-table__row" id="issue-(\d+)">', page.data.decode())]


def test_the_issues_list_filters_by_status_and_topic_and_pages_keeping_the_filters(app, db, many_issues):
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    everything = client.get("/admin/issues")
    assert everything.status_code == 200
    assert len(_listed(everything)) == 25 and "35 issues" in everything.data.decode()

    page1 = client.get("/admin/issues?status=draft&topic=careers&size=10")
    assert page1.status_code == 200
    assert _listed(page1) == sorted(many_issues["careers-draft"], reverse=True)[:10]
    assert "27 issues, draft, about Careers, newest first (page 1 of 3)" in _text(page1.data)
    links = re.findall(r'href="(/admin/issues\?[^"]+)"', page1.data.decode())
    nxt = next(link for link in links if "page=2" in link).replace("&amp;", "&")
    assert "status=draft" in nxt and "topic=careers" in nxt and "size=10" in nxt

    page3 = client.get(nxt.replace("page=2", "page=3"))
    assert _listed(page3) == sorted(many_issues["careers-draft"], reverse=True)[20:]
    assert 'rel="prev"' in page3.data.decode() and 'rel="next"' not in page3.data.decode()
    # A date for each: created (UK time), nothing scheduled or sent yet.
    assert re.search(r'data-date="created"><time datetime="[^"]+">\d+ \w{3} \d{4}, \d\d:\d\d (GMT|BST)</time>',
                     page3.data.decode())  # fmt: skip

    review = client.get("/admin/issues?status=in+review")  # as the page shows the status, too
    assert _listed(review) == sorted(many_issues["careers-review"], reverse=True)

    beyond = client.get("/admin/issues?topic=careers&page=9")
    assert beyond.status_code == 200 and _listed(beyond) == []
    assert "There is no page 9" in beyond.data.decode()


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("status=bogus", "status", "Status must be one of: draft, in review"),
        ("topic=no-such-topic", "topic", "Unknown topic: no-such-topic"),
        ("page=0", "page", "Page must be a whole number from 1 to 10,000"),
        ("page=lots", "page", "Page must be a whole number from 1 to 10,000"),
        ("page=99999999999999999999", "page", "Page must be a whole number from 1 to 10,000"),
        ("size=7", "size", "Show 10, 25, 50, 100 issues a page"),
    ],
)
def test_a_bad_filter_is_a_400_that_names_it(app, db, query, field, message):
    listed = [_issue(db, "Careers fair", topic="careers"), _issue(db, "Trust Matters: April")]
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    page = client.get(f"/admin/issues?{query}")
    assert page.status_code == 400
    html = page.data.decode()
    assert "There is a problem" in html and message in html
    assert f'href="#filter-{field}"' in html
    assert _listed(page) == listed[::-1]  # the list as if unfiltered, with the form to put it right


def test_the_menu_leads_home_and_to_the_issues(app, db):
    client = app.test_client()
    sign_in(client, db, "editor@hiow.nhs.uk", role="editor")
    page = client.get("/admin/issues")
    assert page.status_code == 200
    nav = page.data.decode().split('<nav class="nhsuk-header__navigation"')[1].split("</nav>")[0]
    menu = [(href, " ".join(text.split())) for href, text in re.findall(r'href="([^"]+)"[^>]*>([^<]+)<', nav)]
    assert ("/admin/", "Home") in menu and ("/admin/issues", "Issues") in menu


def test_the_api_lists_issues_with_the_same_filters_and_pages(client, db, many_issues):
    from mailer.accounts import create_token

    with db.transaction() as s:
        _row, secret = create_token(s, "list client", role="editor")
    headers = {"Authorization": f"Bearer {secret}"}
    answer = client.get("/api/v1/issues?status=draft&topic=careers&size=10&page=3", headers=headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["total"], body["page"], body["size"], body["pages"]) == (27, 3, 10, 3)
    assert [i["id"] for i in body["issues"]] == sorted(many_issues["careers-draft"], reverse=True)[20:]
    assert {(i["status"], i["topic"]) for i in body["issues"]} == {("draft", "careers")}

    for query, field in (("status=bogus", "status"), ("topic=nope", "topic"), ("page=0", "page"), ("size=3", "size")):
        refused = client.get(f"/api/v1/issues?{query}", headers=headers)
        assert refused.status_code == 400, query
        assert field in refused.get_json()["fields"], refused.get_json()
    described = client.get("/api/v1/openapi.json").get_json()["paths"]["/issues"]["get"]
    assert {p["name"] for p in described["parameters"]} == {"status", "topic", "page", "size"}


def test_counts_kept_by_the_hourly_job_give_the_same_figures_as_counting_everything(app, db):
    """`stats.count_topics` (the retention job's) keeps each topic's count; the page adds what started and takes
    away what ended since. Whatever happened after the count, its figures are those of counting every row."""
    from mailer import tasks
    from mailer.models import TopicCount
    from mailer.stats import topic_growth

    def figures():
        with db.sessions() as s:
            return {
                (g.topic.slug, g.current, tuple((w.gained, w.lost, w.total) for w in g.weeks)) for g in topic_growth(s)
            }

    with time_machine.travel(utcnow() - timedelta(weeks=3), tick=True):
        early = _people(db, 4, "early")
    counted_without = figures()
    with time_machine.travel(utcnow() - timedelta(days=1), tick=True):
        assert tasks.retention_job.apply().get()["deleted_unconfirmed"] == 0  # as beat runs it, an hour at a time
    with db.sessions() as s:
        kept = {row.topic_id: row.open_subscriptions for row in s.scalars(select(TopicCount))}
    with db.sessions() as s:
        fusion = topic_by_slug(s, "project-fusion").id
    assert kept[fusion] == 4 and len(kept) == 5
    assert figures() == counted_without

    # After the count: two more join, one who was counted leaves, one joins and leaves again.
    _people(db, 2, "later")
    with db.transaction() as s:
        unsubscribe(s, early[0], fusion)
    again = _people(db, 1, "brief")
    with db.transaction() as s:
        unsubscribe(s, again[0], fusion)
    with db.sessions() as s:  # the kept count is still the day-old one
        assert s.get(TopicCount, fusion).open_subscriptions == 4
    now = figures()
    assert ("project-fusion", 5) in {(slug, current) for slug, current, _weeks in now}
    with db.transaction() as s:
        s.execute(TopicCount.__table__.delete())  # counting everything again, as before any count was kept
    assert figures() == now
