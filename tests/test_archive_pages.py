"""Archive pages are rendered once, when the issue is sent or the update published, and served as kept; what
renders them is bounded when it is saved (size, nesting, blocks), with an error naming the block.

Costs before and after are measured in bench/archive_bench.py; here only what a visitor and a writer see.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from conftest import csrf_from
from mailer.accounts import create_token
from mailer.compose.inputs import ISSUE_TEXT_MAX, TEXT_MAX
from mailer.compose.issues import approve_issue, create_issue, request_send, submit_issue
from mailer.compose.updates import create_update, publish_update
from mailer.models import Issue, Update
from mailer.render.content import MAX_NESTING
from support.flows import issue_input, sign_in, update_input


def _nested_list(levels: int) -> str:
    return "".join("  " * i + f"- level {i + 1}\n" for i in range(levels))


def _publish(db, title: str) -> str:
    with db.transaction() as s:
        made = create_update(s, update_input(s, title=title, topic="project-fusion", body="What changed: **a lot**."))
        publish_update(s, made.id)
        return made.slug


def _send(db, blocks: list[dict], subject="Trust Matters: December", topic="trust-matters") -> Issue:
    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject=subject, body="", topic=topic, blocks=blocks))
        submit_issue(s, issue.id)
        approve_issue(s, issue.id)
        request_send(s, issue.id)
        s.expunge(issue)
        return issue


@pytest.fixture()
def api(client, db):
    with db.transaction() as s:
        _row, secret = create_token(s, "archive tests", role="admin")
    headers = {"Authorization": f"Bearer {secret}"}
    return lambda path, body: client.post(f"/api/v1{path}", json=body, headers=headers)


def test_an_issue_page_is_what_was_sent_kept_from_the_moment_the_send_started(client, db):
    first = _publish(db, "Ward move agreed")
    blocks = [{"type": "text", "markdown": "Hello **all**."}, {"type": "updates", "count": 3}]
    issue = _send(db, blocks, topic="project-fusion")
    assert "<strong>all</strong>" in issue.archive_html and f"/news/updates/{first}" in issue.archive_html

    later = _publish(db, "Clinic opens in Ryde")  # published after the issue went out
    page = client.get(f"/news/{issue.slug}").data.decode()
    assert "Hello <strong>all</strong>." in page and "Ward move agreed" in page
    assert "Clinic opens in Ryde" not in page and later not in page  # the page is what was sent

    # Served as kept, not rendered again per view.
    with db.transaction() as s:
        s.execute(update(Issue).where(Issue.id == issue.id).values(archive_html="<p>As it was kept.</p>"))
    page = client.get(f"/news/{issue.slug}").data.decode()
    assert "<p>As it was kept.</p>" in page and "Hello" not in page


def test_an_update_page_is_rendered_when_published_and_served_as_kept(client, db):
    slug = _publish(db, "Ward move agreed")
    with db.sessions() as s:
        kept = s.scalar(select(Update.archive_html).where(Update.slug == slug))
    assert kept == "<p>What changed: <strong>a lot</strong>.</p>\n"
    assert kept in client.get(f"/news/updates/{slug}").data.decode()
    with db.transaction() as s:
        s.execute(update(Update).where(Update.slug == slug).values(archive_html="<p>As it was kept.</p>"))
    page = client.get(f"/news/updates/{slug}").data.decode()
    assert "<p>As it was kept.</p>" in page and "a lot" not in page


def test_a_page_sent_before_pages_were_kept_is_rendered_on_its_first_view_and_kept(client, db):
    issue = _send(db, [{"type": "text", "markdown": "Sent *long ago*."}])
    slug = _publish(db, "An old update")
    with db.transaction() as s:  # as the rows of issues sent before migration 0009 are
        s.execute(update(Issue).values(archive_html=None))
        s.execute(update(Update).values(archive_html=None))
    assert "Sent <em>long ago</em>." in client.get(f"/news/{issue.slug}").data.decode()
    assert "<strong>a lot</strong>" in client.get(f"/news/updates/{slug}").data.decode()
    with db.sessions() as s:
        assert "Sent <em>long ago</em>." in s.get(Issue, issue.id).archive_html
        assert "<strong>a lot</strong>" in s.scalar(select(Update.archive_html).where(Update.slug == slug))


def test_markdown_nested_too_deeply_is_refused_naming_the_block(api, db):
    fine = api(
        "/issues",
        {
            "subject": "Fine",
            "topic": "trust-matters",
            "blocks": [{"type": "text", "markdown": _nested_list(MAX_NESTING)}],
        },
    )
    assert fine.status_code == 201, fine.get_json()

    blocks = [{"type": "heading", "text": "Lists"}, {"type": "text", "markdown": _nested_list(MAX_NESTING + 1)}]
    response = api("/issues", {"subject": "Deep", "topic": "trust-matters", "blocks": blocks})
    assert response.status_code == 400
    assert "nested too deeply" in response.get_json()["fields"]["blocks[1].markdown"]
    quotes = api("/issues", {"subject": "Deep", "topic": "trust-matters", "body": ">" * 40 + " quoted"})
    assert quotes.status_code == 400 and "nested too deeply" in quotes.get_json()["fields"]["body"]
    update_body = api("/updates", {"title": "Deep", "topic": "project-fusion", "body": _nested_list(30)})
    assert update_body.status_code == 400 and "nested too deeply" in update_body.get_json()["fields"]["body"]
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 1  # only the fine one
        assert s.scalar(select(func.count()).select_from(Update)) == 0


def test_an_issue_holds_a_bounded_amount_of_markdown(api, db):
    words = "Project Fusion brings services together. " * (TEXT_MAX // 41)
    blocks = [{"type": "text", "markdown": words[:TEXT_MAX]} for _ in range(ISSUE_TEXT_MAX // TEXT_MAX + 1)]
    response = api("/issues", {"subject": "Long", "topic": "trust-matters", "blocks": blocks})
    assert response.status_code == 400
    assert f"at most {ISSUE_TEXT_MAX:,} characters" in response.get_json()["fields"]["blocks"]

    body = api("/issues", {"subject": "Long", "topic": "trust-matters", "body": "a" * (ISSUE_TEXT_MAX + 1)})
    assert body.status_code == 400 and f"{ISSUE_TEXT_MAX:,}" in body.get_json()["fields"]["body"]
    many = api("/issues", {"subject": "Many", "topic": "trust-matters", "blocks": [{"type": "divider"}] * 61})
    assert many.status_code == 400 and "at most 60 blocks" in many.get_json()["fields"]["blocks"]
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 0


def test_the_composer_says_which_block_nests_too_deeply(client, db):
    sign_in(client, db, role="editor", email="editor@hiow.nhs.uk")
    page = client.get("/admin/issues/new")
    response = client.post(
        "/admin/issues/new",
        data={
            "csrf_token": csrf_from(page.data),
            "topic": "trust-matters",
            "subject": "November",
            "block-0-type": "text",
            "block-0-markdown": "Fine.",
            "block-1-type": "text",
            "block-1-markdown": _nested_list(MAX_NESTING + 2),
            "action": "save",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert b"This text is nested too deeply" in response.data
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 0
