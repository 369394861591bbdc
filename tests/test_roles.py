"""The role matrix: every admin page and API call, for anonymous, editor, publisher and admin.

Each route's least role is listed here; a route missing from the list fails the test, so a new route
cannot ship without a decision about who may use it.
"""

from __future__ import annotations

import re

import pytest

from conftest import csrf_from
from mailer.accounts import create_admin, create_token

RANKS = ["anonymous", "editor", "publisher", "admin"]

# endpoint (or endpoint:action) → least role. "login": any signed-in account; "public": anyone.
ADMIN = {
    "admin.login": "public",
    "sso.start": "public",
    "sso.callback": "public",
    "admin.login_code": "public",
    "admin.enrol": "public",
    "admin.forgotten_password": "public",
    "admin.reset_password": "public",
    "admin.logout": "login",
    "admin.account": "login",
    "admin.change_password": "login",
    "admin.dashboard": "editor",
    "admin.home_sending": "editor",
    "admin.issues": "editor",
    "admin.new_issue": "editor",
    "admin.issue": "editor",
    "admin.edit_issue": "editor",
    "admin.issue_preview": "editor",
    "admin.issue_progress_json": "editor",
    "admin.issue_stats_page": "editor",
    "admin.test_issue": "editor",
    "admin.issue_action:submit": "editor",
    **{
        f"admin.issue_action:{a}": "publisher"
        for a in ("approve", "return", "schedule", "unschedule", "send", "pause", "resume", "cancel")
    },
    "admin.issue_recipients": "publisher",
    "admin.issue_recipients_csv": "publisher",
    "admin.mail_catcher": "publisher",  # every message sent, with its recipients' addresses and links
    "admin.mail_message": "publisher",
    "admin.segments": "editor",
    "admin.segment": "editor",
    "admin.new_segment": "editor",
    "admin.create_segment": "editor",
    "admin.update_segment": "editor",
    "admin.remove_segment": "editor",
    "admin.count_segment": "editor",
    "admin.export_segment": "publisher",
    "admin.export_topic": "publisher",
    "admin.stats_page": "editor",
    "admin.subscribers": "publisher",
    "admin.subscriber": "publisher",
    "admin.subscriber_preferences": "publisher",
    "admin.subscriber_export": "admin",
    "admin.subscriber_erase": "admin",
    "admin.import_form": "publisher",
    "admin.import_upload": "publisher",
    "admin.import_report": "publisher",
    "admin.import_progress_json": "publisher",
    "admin.team": "admin",
    "admin.add_user": "admin",
    "admin.update_user": "admin",
    "admin.reset_member_factor": "admin",
    "admin.add_token": "admin",
    "admin.remove_token": "admin",
    "admin.audit_log": "admin",
    "admin.updates": "editor",
    "admin.new_update": "editor",
    "admin.update": "editor",
    "admin.publish": "publisher",
    "admin.run_digest_now": "publisher",
    "admin.suppressions": "editor",
    "admin.add_suppression": "publisher",
    "admin.remove_suppression": "publisher",
    # The lists the team manages: what the public is offered and what can be sent is an admin's to change.
    "admin.topics": "editor",
    "admin.areas": "editor",
    "admin.create_topic": "admin",
    "admin.create_area": "admin",
    "admin.change_topic": "publisher",
    "admin.change_area": "publisher",
    "admin.move_topic": "publisher",
    "admin.move_area": "publisher",
    **{f"admin.{kind}_action:{a}": "admin" for kind in ("topic", "area") for a in ("retire", "restore")},
}
API = {
    "api.openapi": "public",
    # The providers' webhooks: no token or role; each checks its own proof (SNS's signature, Notify's bearer token).
    "api.hooks_ses": "public",
    "api.hooks_notify": "public",
    "api.topics": "editor",
    "api.topics_show": "editor",
    "api.topics_create": "admin",
    "api.topics_change": "publisher",
    "api.topics_retire": "admin",
    "api.topics_restore": "admin",
    "api.areas": "editor",
    "api.areas_show": "editor",
    "api.areas_create": "admin",
    "api.areas_change": "publisher",
    "api.areas_retire": "admin",
    "api.areas_restore": "admin",
    "api.create": "editor",
    "api.show": "editor",
    "api.index": "editor",
    "api.submit": "editor",
    "api.test": "editor",
    "api.approve": "publisher",
    "api.schedule": "publisher",
    "api.unschedule": "publisher",
    "api.send": "publisher",
    **{f"api.control:{a}": "publisher" for a in ("pause", "resume", "cancel")},
    "api.deliveries": "publisher",
    "api.segments_list": "editor",
    "api.segments_create": "editor",
    "api.segments_show": "editor",
    "api.segments_update": "editor",
    "api.segments_delete": "editor",
    "api.segments_count": "editor",
    "api.segments_preview_count": "editor",
    "api.segments_export": "publisher",
    "api.topics_export": "publisher",
    "api.subscribers_create": "publisher",
    "api.subscribers_show": "publisher",
    "api.subscribers_import": "publisher",
    "api.subscribers_import_status": "publisher",
    "api.subscribers_export": "admin",
    "api.subscribers_erase": "admin",
    "api.updates_list": "editor",
    "api.updates_show": "editor",
    "api.updates_create": "publisher",
    "api.updates_publish": "publisher",
    "api.digests_run": "publisher",
    "api.suppressions_list": "editor",
    "api.suppressions_show": "editor",
    "api.suppressions_add": "publisher",
    "api.suppressions_remove": "publisher",
}
VALUES = {
    "update_id": "1",
    "issue_id": "1",
    "segment_id": "1",
    "subscriber_id": "1",
    "import_id": "1",
    "user_id": "1",
    "token_id": "1",
    "suppression_id": "1",
    "topic_id": "1",
    "area_id": "1",
}
VALUES |= {"slug": "careers", "email": "nobody@example.org", "name": "x.eml", "token": "not-a-reset-token"}


def _routes(app, prefix: str):
    """(key, method, path) for every route under prefix, with placeholders filled and `any` actions split."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            actions = re.search(r"<any\(([^)]*)\):action>", rule.rule)
            for action in [a.strip() for a in actions.group(1).split(",")] if actions else [None]:
                path = re.sub(r"<any\([^)]*\):action>", action or "", rule.rule)
                path = re.sub(r"<(?:[a-z]+:)?(\w+)>", lambda m: VALUES[m.group(1)], path)
                yield (f"{rule.endpoint}:{action}" if action else rule.endpoint), method, path


def test_every_route_has_a_decided_least_role(app):
    keys = {key for key, _m, _p in _routes(app, "/admin")} | {key for key, _m, _p in _routes(app, "/api/v1")}
    assert keys == set(ADMIN) | set(API), "classify new routes in ADMIN or API"


def _allowed(least: str, who: str) -> bool:
    if least == "public":
        return True
    if least == "login":
        return who != "anonymous"
    return RANKS.index(who) >= RANKS.index(least)


@pytest.mark.parametrize("who", RANKS)
def test_admin_pages_by_role(app, db, who):
    client = app.test_client()
    if who != "anonymous":
        with db.transaction() as s:
            create_admin(s, f"{who}@hiow.nhs.uk", "a long enough password", role=who)
        page = client.get("/admin/login")
        client.post(
            "/admin/login",
            data={
                "csrf_token": csrf_from(page.data),
                "email": f"{who}@hiow.nhs.uk",
                "password": "a long enough password",
            },
        )
    app.config["WTF_CSRF_ENABLED"] = False  # CSRF has its own tests; here only the role decides
    try:
        for key, method, path in _routes(app, "/admin"):
            if key == "admin.logout":
                continue  # would end this client's session for the routes after it
            status = client.open(path, method=method).status_code
            if ADMIN[key] == "public":
                assert status not in (401, 403) and status < 500, (key, path, who, status)
            elif _allowed(ADMIN[key], who):
                # 302 here would be "sign in first": a page that redirects after an action redirects with 303
                assert status not in (302, 401, 403) and status < 500, (key, path, who, status)
            elif who == "anonymous":
                assert status == 302, (key, path, status)  # to the sign-in page
            else:
                assert status == 403, (key, path, who, status)
    finally:
        app.config["WTF_CSRF_ENABLED"] = True


@pytest.mark.parametrize("who", RANKS)
def test_api_calls_by_role(client, db, who):
    headers = {}
    if who != "anonymous":
        with db.transaction() as s:
            headers = {"Authorization": f"Bearer {create_token(s, who, role=who)[1]}"}
    for key, method, path in _routes(client.application, "/api/v1"):
        status = client.open(path, method=method, headers=headers, json={}).status_code
        if _allowed(API[key], who):
            assert status not in (401, 403) and status < 500, (key, path, who, status)
        elif who == "anonymous":
            assert status == 401, (key, path, status)
        else:
            assert status == 403, (key, path, who, status)
