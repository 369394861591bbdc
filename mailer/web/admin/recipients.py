"""Who got an issue and how it went: a filtered, paged view and a streamed CSV export."""

from __future__ import annotations

from flask import abort, render_template, request

from ...compose.inputs import DeliveriesQuery
from ...compose.issues import deliveries_page, issue_progress
from ...delivery import ledger
from ...errors import InvalidInput
from ...inputs import parse
from ...models import DELIVERY_STATUSES
from ...spreadsheet import SpreadsheetCsv
from ..auth import require_role
from ..context import db_session, runtime_of_app
from ..downloads import csv_download
from . import _load_issue, bp

PAGE = 100


def _query() -> DeliveriesQuery:
    """The page asked for, read by the model the API's deliveries list uses (a 400 page saying what is wrong)."""
    try:
        return parse(DeliveriesQuery, request.args.to_dict() | {"limit": str(PAGE)})
    except InvalidInput as exc:
        abort(400, str(exc))


@bp.get("/issues/<int:issue_id>/recipients")
@require_role("publisher")  # addresses: people's personal data
def issue_recipients(issue_id: int):
    issue = _load_issue(issue_id)
    query = _query()
    page = deliveries_page(db_session(), issue.id, query.status, query.after, query.limit, query.who)
    return render_template(
        "admin/issue_recipients.html",
        issue=issue,
        rows=page.rows,
        heard=page.heard,
        next_after=page.next_after,
        status=query.status,
        who=query.who,
        statuses=DELIVERY_STATUSES,
        progress=issue_progress(db_session(), issue),
    )


@bp.get("/issues/<int:issue_id>/recipients.csv")
@require_role("publisher")
def issue_recipients_csv(issue_id: int):
    issue = _load_issue(issue_id)
    status = _query().status
    db = runtime_of_app().db

    def generate():
        out = SpreadsheetCsv(["email", "status", "attempts", "sent_at", "reason"])
        yield out.take()
        after = 0
        with db.sessions() as session:  # its own session: streaming outlives the request's
            while True:
                rows = ledger.recipients(session, issue_id, status, after, 5000)
                if not rows:
                    break
                for row in rows:
                    out.row(
                        [
                            row.email or "(erased)",
                            row.status,
                            row.attempts,
                            row.sent_at.isoformat() if row.sent_at else "",
                            row.last_error,
                        ]
                    )
                after = rows[-1].delivery_id
                yield out.take()

    return csv_download(generate(), f"issue-{issue.id}-recipients{'-' + status if status else ''}.csv")
