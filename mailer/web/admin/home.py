"""The team's home page (what the admin opens on: what needs doing, what is going out, how the lists and their
deliverability are doing) and the issues list with its filters. Each panel is one named read of the room that
owns it: compose (issues), stats (figures), audience (imports)."""

from __future__ import annotations

from flask import render_template, request
from flask_login import current_user, login_required

from ...accounts import has_role
from ...audience.importer import import_status
from ...audience.lookups import parse_in, running_imports, topics
from ...compose.inputs import ISSUES_PAGE_SIZES, IssuesQuery
from ...compose.issues import list_issues, scheduled_issues, sending_now, uk_time, waiting_for
from ...errors import InvalidInput
from ...models import ISSUE_STATUSES
from ...stats import deliverability_health, recent_sends, topic_growth
from ..context import db_session, runtime_of_app
from . import bp

# How often the page asks for the sending panel again while something is sending (static/home.js).
REFRESH_SECONDS = 5


@bp.get("/")
@login_required
def dashboard():
    session = db_session()
    publisher = has_role(current_user.role, "publisher")
    imports = [import_status(record) for record in running_imports(session)] if publisher else []
    return render_template(
        "admin/home.html",
        waiting=waiting_for(session, current_user.id, may_approve=publisher),
        scheduled=scheduled_issues(session),
        sending=sending_now(session),
        recent=recent_sends(session),
        growth=topic_growth(session),
        health=deliverability_health(session, runtime_of_app().settings.deliverability),
        imports=imports,
        can_publish=publisher,
        refresh_seconds=REFRESH_SECONDS,
        uk_time=uk_time,
    )


@bp.get("/home/sending")
@login_required
def home_sending():
    """The home page's sending panel alone, for static/home.js to swap in: live progress without a reload."""
    return render_template("admin/_home_sending.html", sending=sending_now(db_session()))


_FILTERS = ("status", "topic", "page", "size")


@bp.get("/issues")
@login_required
def issues():
    session = db_session()
    asked = {name: request.args.get(name, "") for name in _FILTERS if request.args.get(name)}
    errors, status = {}, 200
    try:
        query = parse_in(session, IssuesQuery, asked)
    except InvalidInput as exc:
        errors, status, query = exc.errors, 400, IssuesQuery()
    found = list_issues(session, query)
    # What the page's links carry: the filters as asked (and the size), never the page number.
    kept = {k: v for k, v in {"status": query.status, "topic": query.topic}.items() if v}
    if query.size != IssuesQuery.model_fields["size"].default:
        kept["size"] = query.size
    return (
        render_template(
            "admin/issues.html",
            found=found,
            query=query,
            asked=asked,
            kept=kept,
            errors=errors,
            statuses=ISSUE_STATUSES,
            topics=topics(session),
            sizes=ISSUES_PAGE_SIZES,
        ),
        status,
    )
