"""Imports lose nothing and half-write nothing: rows are read by the csv module, any bad value is that row's
error, an import runs on a Celery worker (progress in the API and the admin), and one that fails for any
reason, a lost worker included, ends `failed` with a truthful report or is finished by another worker.
Exports are safe to open in a spreadsheet and import back unchanged."""

from __future__ import annotations

import codecs
import csv
import io
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

import pytest
import time_machine
from celery import current_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from test_audience_api import _api, add, count, errors_by_row, parse_csv, person
from test_browser import assert_accessible, browser, live_server, page  # noqa: F401 - fixtures for the browser test

from conftest import csrf_from, wait_until
from mailer import tasks
from mailer.audience import changes, importer
from mailer.audience.profiles import profile
from mailer.config import ROOT
from mailer.models import AuditEvent, ConsentEvent, Import, ImportChunk, Subscriber, Subscription, utcnow
from mailer.spreadsheet import cell_value, spreadsheet_cell
from support.flows import sign_in


@pytest.fixture()
def publisher(client, db):
    return _api(client, db, "publisher")


def csv_text(rows: list[list[str]], header=("email", "name", "topics", "consent_source")) -> str:
    out = io.StringIO()
    writer = csv.writer(out)  # CRLF: a cell holding either CR or LF is quoted
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def people_file(n: int, start: int = 0) -> list[list[str]]:
    return [[f"p{i}@example.org", f"Person {i}", "careers", "Ryde fair"] for i in range(start, start + n)]


def import_row(db, import_id: int) -> Import:
    with db.sessions() as s:
        return s.get(Import, import_id)


def import_audits(db) -> list[dict]:
    with db.sessions() as s:
        return [e.details for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "import.run"))]


# --- reading the file ----------------------------------------------------------------------------------


def test_a_quote_inside_an_unquoted_cell_is_part_of_the_name_and_every_row_after_it_is_read(publisher, db):
    """`O"Brien` on row 2 of a 3,001-row file: the hand-written splitter took it for an opening quote and
    read the rest of the file as one row over 64 KB, so 3,000 people were never imported."""
    rows = [["obrien@example.org", 'O"Brien', "careers", "Ryde fair"]]
    rows += [["jojj@example.org", 'Jo "JJ Smith', "careers", "Ryde fair"]]
    rows += people_file(2999)
    body = "email,name,topics,consent_source\n" + "".join(",".join(r) + "\n" for r in rows)  # as typed, unquoted
    report = publisher.import_csv(body).get_json()
    assert report["errors"] == [] and report["rows"] == 3001 and report["imported"] == 3001
    assert person(db, "obrien@example.org").name == 'O"Brien'
    assert person(db, "jojj@example.org").name == 'Jo "JJ Smith'
    assert count(db, Subscriber) == 3001


def test_a_quote_closed_thousands_of_lines_later_is_one_row_reported_with_its_lines_and_the_rest_is_read(publisher, db):
    filler = "".join(f"lost{i}@example.org,Lost {i},careers,Ryde fair\n" for i in range(3000))  # ~110 KB
    body = (
        "email,name,topics,consent_source\n"
        "first@example.org,First,careers,Ryde fair\n"  # 2
        'open@example.org,"Never closed,careers,Ryde fair\n'  # 3: the quoted cell runs on ...
        + filler
        + '",careers,Ryde fair\n'  # ... to here, over 64 KB
        + "after@example.org,After,careers,Ryde fair\n"  # 4
    )
    report = publisher.import_csv(body).get_json()
    errors = errors_by_row(report)
    assert list(errors) == [3]
    assert "longer than 64 KB (lines 3 to 3,004 of the file)" in errors[3] and "double quote" in errors[3]
    assert report["rows"] == 3 and report["imported"] == 2
    assert person(db, "after@example.org") is not None and person(db, "lost5@example.org") is None


def test_a_row_of_many_small_cells_over_the_limit_is_its_error_and_the_next_rows_are_read(publisher, db):
    body = (
        "email,name,topics,consent_source\n"
        + "wide@example.org"
        + ",x" * 40_000
        + "\n"  # 2: 80 KB of cells
        + '"quoted@example.org","'
        + "y" * 70_000
        + '",careers,Fair\n'  # 3: one quoted cell over the limit
        + "next@example.org,Next,careers,Fair\n"  # 4
    )
    report = publisher.import_csv(body).get_json()
    assert sorted(errors_by_row(report)) == [2, 3] and "longer than 64 KB" in errors_by_row(report)[2]
    assert report["imported"] == 1 and person(db, "next@example.org") is not None


def test_a_file_saved_as_utf16_is_refused_with_what_to_do(publisher, db):
    response = publisher.upload_csv("email,topics,consent_source\na@example.org,careers,Fair\n".encode("utf-16"))
    assert response.status_code == 400 and "CSV UTF-8" in response.get_json()["error"]
    assert count(db, Import) == 0


# --- bad values are row errors -------------------------------------------------------------------------


def test_a_date_before_the_calendar_on_row_502_is_that_rows_error_and_the_import_finishes(publisher, db):
    """Today: a 500 after 500 rows were saved, the import `running` for ever, nothing in the audit log."""
    rows = [[f"d{i}@example.org", "D", "careers", "Fair", "2026-01-05"] for i in range(600)]
    rows[500][4] = "0001-01-01T00:00:00+01:00"  # row 502
    rows[510][4] = "9999-12-31T23:59:59-01:00"  # row 512
    report = publisher.import_csv(csv_text(rows, ("email", "name", "topics", "consent_source", "consent_date")))
    assert report.status_code == 200
    body = report.get_json()
    assert body["status"] == "finished" and body["failure"] is None
    assert sorted(errors_by_row(body)) == [502, 512] and "0001-01-01T00:00:00+01:00" in errors_by_row(body)[502]
    assert (body["rows"], body["imported"], body["error_count"]) == (600, 598, 2)
    assert count(db, Subscriber) == 598 and person(db, "d500@example.org") is None
    [audit] = import_audits(db)
    assert audit["status"] == "finished" and audit["imported"] == 598


EDGE_DATES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01",
    "9999-12-31",
    "1999-12-31",
    "29/02/2023",
    "31/12/9999",
    "00/00/0000",
    "1e400",
    "9" * 400,
    "-1",
    "2026-01-01T25:00",
    "2026-01-01T00:00:00+24:00",
    "２０２６-01-01",
    "٢٠/٠١/٢٠٢٦",
    "2026-W01-1",
]
ODD_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
CELLS = {
    "email": st.one_of(
        st.emails(),
        ODD_TEXT,
        st.sampled_from(
            [
                "=cmd|'/Ccalc.exe'!Z0@example.org",
                "a" * 250 + "@example.org",
                "jo@" + "ü" * 60 + ".example.org",
                "jo@" + ".".join(["ü" * 20] * 12) + ".org",
                "x@[127.0.0.1]",
                "\x00@example.org",
                "jo\x00@example.org",
                "'-dash@example.org",
            ]
        ),
    ),
    "name": st.one_of(ODD_TEXT, st.text(min_size=190, max_size=260), st.sampled_from(['O"Brien', "=1+1", "\x00"])),
    "topics": st.one_of(
        st.sampled_from(["careers", "careers:weekly", "trust-matters;project-fusion:monthly", "careers:hourly"]),
        st.sampled_from(["careers;careers:weekly", ";;", "", "careers:" + "9" * 400, "careers\x00"]),
        ODD_TEXT,
    ),
    "area": st.one_of(st.sampled_from(["hampshire", "Isle of Wight", ""]), ODD_TEXT),
    "audience": st.one_of(st.sampled_from(["carer", "Member of staff", ""]), ODD_TEXT),
    "services": st.one_of(st.sampled_from(["community;mental-health", "Mental health services", ""]), ODD_TEXT),
    "consent_source": st.one_of(st.just("Ryde fair"), ODD_TEXT, st.text(min_size=480, max_size=540)),
    "consent_date": st.one_of(
        st.sampled_from(EDGE_DATES),
        st.builds(
            lambda moment, offset: moment.isoformat() + offset,
            st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
            st.sampled_from(["", "Z", "+14:00", "-12:00", "+01:00"]),
        ),
        ODD_TEXT,
    ),
}
ROW = st.fixed_dictionaries(CELLS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=6))
def test_any_value_in_any_column_is_that_rows_error_never_a_failed_import(db, rows):
    """Every row is accounted for exactly once (imported, updated, unchanged, skipped or an error), the import
    finishes, and nothing the database refuses (NUL, overlong text) reaches it."""
    data = csv_text([[r[c] for c in CELLS] for r in rows], header=tuple(CELLS)).encode()
    before = count(db, Subscriber)
    report = importer.run_import(db, io.BytesIO(data), channel="api")
    assert report.status == "finished", report.failure
    meant = sum(1 for r in rows if any(v.strip() for v in r.values()))
    assert report.rows == meant
    assert report.imported + report.updated + report.unchanged + report.skipped + report.error_count == meant
    assert count(db, Subscriber) == before + report.imported


# --- a failure ends the import `failed`, truthfully ----------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [RuntimeError("a bug"), OperationalError("INSERT ...", {}, Exception("server closed the connection"))],
    ids=["unexpected-exception", "database-outage"],
)
def test_an_import_that_fails_mid_file_ends_failed_saying_what_was_written(publisher, db, monkeypatch, fault):
    def add_one(session, data, wanted, origin, known=None):
        if origin.row == 700:
            raise fault
        return changes.add(session, data, wanted, origin, known)

    monkeypatch.setattr(importer, "add", add_one)
    # Only this process has the fault: a worker of the suite's must not take the import first.
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args: True)
    report = publisher.import_csv(csv_text(people_file(1200))).get_json()
    assert report["status"] == "failed"
    # The first batch (rows 2 to 501) was committed; the second, where row 700 failed, was rolled back whole.
    assert (report["rows"], report["imported"]) == (500, 500)
    assert "Rows 2 to 501 were read" in report["failure"] and "nothing after row 501 was written" in report["failure"]
    assert count(db, Subscriber) == 500 and person(db, "p499@example.org") and not person(db, "p500@example.org")
    assert count(db, ConsentEvent) == 500
    [audit] = import_audits(db)
    assert audit["status"] == "failed" and audit["imported"] == 500 and audit["failure"] == report["failure"]
    assert count(db, ImportChunk) == 0  # the file is not kept once the import has ended

    monkeypatch.setattr(importer, "add", changes.add)
    again = publisher.import_csv(csv_text(people_file(1200))).get_json()  # what the failure says to do
    assert (again["status"], again["imported"], again["unchanged"]) == ("finished", 700, 500)


KILLED_WORKER = textwrap.dedent(
    """
    import sys, threading
    from mailer.audience import importer
    from mailer.db import Database

    real, calls = importer._write_batch, []

    def write_batch(*args):
        if calls:  # the first batch is committed: hang in the second until killed
            print("hanging", flush=True)
            threading.Event().wait()
        calls.append(1)
        return real(*args)

    importer._write_batch = write_batch
    importer.process_import(Database(sys.argv[1], email_hash_key=sys.argv[3]), int(sys.argv[2]))
    """
)


def quiet_broker() -> None:
    """No task left over from earlier tests (they enqueue imports whose ids a new import may reuse)."""
    control = current_app.control  # the Celery app create_app configured for this process
    control.purge()
    wait_until(lambda: not any((control.inspect(timeout=1).active() or {}).values()), message="idle workers")


def test_an_import_whose_worker_is_killed_is_finished_by_another_after_the_sweeper_frees_it(
    app, db, settings, celery_workers
):
    quiet_broker()
    rows = people_file(1400)
    rows[1300] = ["p1@example.org", "Person 1 again", "careers", "Ryde fair"]  # row 1302: duplicate of row 3
    import_id = importer.receive_import(db, io.BytesIO(csv_text(rows).encode()), channel="api")
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, settings.database_url, str(import_id), settings.email_hash_key],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout.readline().strip() == "hanging", worker.stderr.read()
    worker.kill()
    worker.wait()
    left = import_row(db, import_id)
    assert (left.status, left.last_row, left.counts["imported"], left.attempts) == ("running", 501, 500, 1)

    assert importer.process_import(db, import_id) == "taken"  # its lease has not run out: it may be alive
    assert tasks.sweep()["imports"] == 0
    with time_machine.travel(utcnow() + timedelta(seconds=settings.lease_seconds + 60), tick=True):
        assert tasks.sweep()["imports"] == 1  # freed and enqueued: a real worker carries on from row 502
    done = wait_until(lambda: (r := import_row(db, import_id)).status == "finished" and r, message="import to finish")
    assert (done.counts["rows"], done.counts["imported"], done.counts["error_count"]) == (1400, 1399, 1)
    assert done.report == [{"row": 1302, "error": "Duplicate of row 3: the same address is in the file twice"}]
    assert done.attempts == 2 and count(db, Subscriber) == 1399 and count(db, ConsentEvent) == 1399
    assert count(db, ImportChunk) == 0


def test_an_import_lost_by_every_worker_it_was_given_to_is_failed_by_the_sweeper(db):
    import_id = importer.receive_import(db, io.BytesIO(csv_text(people_file(3)).encode()), channel="api")
    with db.transaction() as s:
        s.get(Import, import_id).attempts = importer.MAX_ATTEMPTS
        s.get(Import, import_id).status = "running"
    assert importer.stalled_imports(db, timedelta(minutes=5), now=utcnow() + timedelta(minutes=6)) == []
    record = import_row(db, import_id)
    assert record.status == "failed" and "Stopped after 3 tries" in record.failure
    assert "Nothing from the file was written" in record.failure
    assert import_audits(db)[0]["status"] == "failed" and count(db, ImportChunk) == 0


# --- in the background: API and admin --------------------------------------------------------------------


def test_an_api_import_answers_202_and_is_imported_by_a_worker(publisher, db, celery_workers):
    response = publisher.upload_csv(csv_text(people_file(1200)), query="?filename=fair.csv")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["filename"] == "fair.csv" and body["progress"]["rows"] == 0
    location = response.headers["Location"]
    assert location == f"/api/v1/subscribers/imports/{body['id']}"

    def finished():
        status = publisher.get(location.removeprefix("/api/v1")).get_json()
        return status["status"] == "finished" and status

    done = wait_until(finished, message="the import to finish")
    assert (done["rows"], done["imported"], done["errors"]) == (1200, 1200, [])
    assert done["progress"]["percent"] == 100 and done["progress"]["bytes_read"] == done["progress"]["bytes_total"]
    assert count(db, Subscriber) == 1200
    assert publisher.get("/subscribers/imports/999999").status_code == 404


def test_the_admin_import_page_follows_the_import_then_shows_its_report(client, db, monkeypatch):
    queued = []  # held here, not published: the page is seen before any worker could take it
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args: queued.append((task.name, *args)))
    sign_in(client, db, role="publisher", email="pub@hiow.nhs.uk")
    form = client.get("/admin/import")
    body = csv_text(people_file(3) + [["bad", "", "careers", "Fair"]]).encode("cp1252")
    response = client.post(
        "/admin/import",
        data={"csrf_token": csrf_from(form.data), "file": (io.BytesIO(body), "fair.csv"), "consent_source": ""},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    report_page = response.headers["Location"]
    waiting = client.get(report_page).get_data(as_text=True)
    assert "Waiting for a worker" in waiting and "import_progress.js" in waiting
    import_id = int(report_page.rsplit("/", 1)[1])
    progress = client.get(f"/admin/imports/{import_id}/progress.json").get_json()
    assert progress["status"] == "queued" and progress["progress"]["percent"] == 0

    assert queued == [("mailer.run_import", import_id)]
    tasks.run_import_task(import_id)  # what the worker does with it
    done = client.get(report_page).get_data(as_text=True)
    assert "Finished" in done and "import_progress.js" not in done and "Enter an email address" in done
    progress = client.get(f"/admin/imports/{import_id}/progress.json").get_json()
    assert (progress["status"], progress["imported"], progress["error_count"]) == ("finished", 3, 1)


def test_a_consent_source_or_file_name_with_control_characters_cannot_break_the_upload(publisher, db):
    response = publisher.upload_csv(csv_text(people_file(1)), query="?consent_source=" + "x" * 501)
    assert response.status_code == 400 and "consent_source" in response.get_json()["fields"]
    # A NUL anywhere in the address is refused before any view (mailer/web/request_limits.py).
    response = publisher.upload_csv(csv_text(people_file(1)), query="?filename=a%00b.csv")
    assert response.status_code == 400 and "error" in response.get_json()
    response = publisher.import_csv(
        "email,topics\na@example.org,careers\n", query="?filename=..%2Fa%07b.csv&consent_source=Fair%0D%0A"
    )
    assert response.get_json()["status"] == "finished" and response.get_json()["filename"] == "ab.csv"
    with db.sessions() as s:
        assert s.scalar(select(ConsentEvent.details["source"].as_string())) == "Fair"


# --- exports ---------------------------------------------------------------------------------------------


def test_spreadsheet_guarding_is_undone_exactly_on_import():
    for text in ["=1+1", "+44", "-dash", "@SUM(A1)", "\tx", "\rx", "'=x", "''-x", "'plain", "plain", "", "O'Brien"]:
        guarded = spreadsheet_cell(text)
        assert guarded[:1] not in "=+-@\t\r" or guarded == ""
        assert cell_value(guarded) == text


HOSTILE = "=cmd|'/Ccalc.exe'!Z0@example.org"


def _no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), (cell, row)


def test_every_csv_export_neutralises_formulas_and_starts_with_a_bom(publisher, client, db):
    add(publisher, HOSTILE, "careers", name='=HYPERLINK("http://evil.example")')
    add(publisher, "-dash@example.org", "careers", name="@SUM(1+1)")
    add(publisher, "plus@example.org", "careers", name="+44 1983")
    segment = publisher.post(
        "/segments", json={"name": "Careers", "rules": {"all": [{"field": "topic", "op": "is", "value": "careers"}]}}
    ).get_json()
    segment_id = segment["id"]
    sign_in(client, db, role="publisher", email="pub@hiow.nhs.uk")
    for path in (
        "/api/v1/topics/careers/export",
        f"/api/v1/segments/{segment_id}/export",
        "/admin/topics/careers/export.csv",
        f"/admin/segments/{segment_id}/export.csv",
    ):
        response = client.get(path, headers=publisher.headers)
        assert response.status_code == 200, path
        header, *rows = parse_csv(response)
        assert sorted(r[0] for r in rows) == ["'-dash@example.org", "'" + HOSTILE, "plus@example.org"]
        assert {r[1] for r in rows} == {'\'=HYPERLINK("http://evil.example")', "'@SUM(1+1)", "'+44 1983"}
        _no_formula(rows)


def test_the_recipients_csv_neutralises_formulas_and_starts_with_a_bom(client, db):
    from mailer.models import Delivery, Issue, Topic

    with db.transaction() as s:
        topic = s.scalar(select(Topic).where(Topic.slug == "careers"))
        who = Subscriber(email=HOSTILE, email_key=HOSTILE.lower(), email_hash="h", status="active", services=0)
        issue = Issue(subject="Hi", topic_id=topic.id, status="sent", body="Hello")
        s.add_all([who, issue])
        s.flush()
        s.add(Delivery(issue_id=issue.id, subscriber_id=who.id, status="failed", last_error="-550 refused"))
        issue_id = issue.id
    sign_in(client, db, role="publisher", email="pub@hiow.nhs.uk")
    header, *rows = parse_csv(client.get(f"/admin/issues/{issue_id}/recipients.csv"))
    assert rows == [["'" + HOSTILE, "failed", "0", "", "'-550 refused"]]


def _as_excel_saves(exported: bytes, encoding: str, keep_apostrophes: bool) -> bytes:
    """What Excel writes back after opening an export (it reads the BOM as UTF-8): CRLF rows, and either the
    cell text as shown with its guarding apostrophe or as typed without it."""
    rows = list(csv.reader(io.StringIO(exported.decode("utf-8-sig"), newline="")))
    out = io.StringIO()
    writer = csv.writer(out)  # CRLF, minimal quoting
    for row in rows:
        writer.writerow(row if keep_apostrophes else [cell_value(c) for c in row])
    return (codecs.BOM_UTF8 if encoding == "utf-8" else b"") + out.getvalue().encode(encoding)


def _state(db) -> list[dict]:
    with db.sessions() as s:
        return [profile(s, p) for p in s.scalars(select(Subscriber).order_by(Subscriber.id))]


@pytest.mark.parametrize(
    ("encoding", "keep_apostrophes"),
    [("utf-8", True), ("utf-8", False), ("cp1252", True)],
    ids=["csv-utf8", "typed", "csv-1252"],
)
def test_an_export_opened_and_saved_by_excel_imports_back_changing_nothing(publisher, db, encoding, keep_apostrophes):
    add(publisher, "sian@example.org", "trust-matters", ("careers", "weekly"), name="Siân Ní Bhriain", area="hampshire")
    add(publisher, HOSTILE, "trust-matters", name="=1+1", audience="carer", services=["community", "mental-health"])
    add(publisher, "-dash@example.org", ("trust-matters", "monthly"), name="'quoted", area="isle-of-wight")
    add(publisher, "plain@example.org", "trust-matters", "project-fusion")
    exported = publisher.get("/topics/trust-matters/export")
    assert "Siân Ní Bhriain" in exported.get_data().decode("utf-8-sig")
    before, events, subscriptions = _state(db), count(db, ConsentEvent), count(db, Subscription)

    saved = _as_excel_saves(exported.get_data(), encoding, keep_apostrophes)
    report = publisher.import_csv(saved, query="?consent_source=Re-import%20of%20an%20export").get_json()
    assert report["errors"] == [] and report["skipped_rows"] == []
    assert (report["rows"], report["unchanged"], report["imported"], report["updated"]) == (4, 4, 0, 0)
    assert _state(db) == before
    assert (count(db, ConsentEvent), count(db, Subscription)) == (events, subscriptions)


# --- the migration ---------------------------------------------------------------------------------------


def test_the_migration_fails_imports_the_old_code_left_running_and_keeps_the_others(tmp_path):
    from sqlalchemy import text

    from mailer.db import Database
    from mailer.schema import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0005")
    old = Database(url)
    with old.engine.begin() as conn:
        for status in ("running", "finished"):
            conn.execute(
                text(
                    "INSERT INTO imports (channel, status, created_at, counts, report) "
                    "VALUES ('admin', :status, '2026-11-30 10:00:00', '{\"imported\": 5}', '[]')"
                ),
                {"status": status},
            )
    migrate(url)
    with old.sessions() as s:
        stuck, done = s.scalars(select(Import).order_by(Import.id)).all()
    old.dispose()
    assert stuck.status == "failed" and "cannot be finished" in stuck.failure
    assert done.status == "finished" and done.failure is None and done.counts == {"imported": 5}
    assert (done.last_row, done.attempts, done.encoding, done.size) == (1, 0, "utf-8-sig", 0)


# --- as the team sees it -----------------------------------------------------------------------------------


def test_a_publisher_uploads_a_file_and_watches_it_import_in_the_browser(request, db, celery_workers, tmp_path):
    """Upload through the form; the report page follows the worker on its own and ends on the report."""
    from playwright.sync_api import expect

    from mailer.accounts import create_admin

    tab = request.getfixturevalue("page")
    with db.transaction() as s:
        create_admin(s, "publisher@hiow.nhs.uk", "a long enough password", role="publisher")
    rows = people_file(4000) + [["not-an-address", "Bad", "careers", "Ryde fair"]]
    upload = tmp_path / "ryde-fair.csv"
    upload.write_bytes(codecs.BOM_UTF8 + csv_text(rows).encode())

    tab.goto("/admin/login")
    tab.get_by_label("Email address").fill("publisher@hiow.nhs.uk")
    tab.get_by_label("Password").fill("a long enough password")
    tab.get_by_role("button", name="Sign in").click()
    tab.goto("/admin/import")
    tab.get_by_label("CSV file").set_input_files(str(upload))
    tab.get_by_role("button", name="Import").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Import report: ryde-fair.csv")
    assert_accessible(tab, "an import's report page while it runs")
    expect(tab.locator("#import-status")).to_have_text("Finished", timeout=120_000)
    expect(tab.locator("[data-count=imported]")).to_have_text("4,000")
    expect(
        tab.get_by_role("cell", name="Enter an email address in the correct format, like name@example.com")
    ).to_be_visible()
    assert_accessible(tab, "an import's report")
    assert count(db, Subscriber) == 4000
