"""Who got an issue and how it went: a filtered, paged view and a streamed CSV export."""

from __future__ import annotations

from flask import abort, render_template, request

from ...compose.issues import issue_progress
from ...delivery import ledger
from ...models import DELIVERY_STATUSES
from ...spreadsheet import SpreadsheetCsv
from ..auth import require_role
from ..context import db_session, runtime_of_app
from ..downloads import csv_download
from . import _load_issue, bp

PAGE = 100


def _status_filter() -> str | None:
    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        abort(400, f"Unknown status {status!r}: use one of {', '.join(DELIVERY_STATUSES)}.")
    return status


def _after() -> int:
    raw = request.args.get("after", "0")
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 18:
        abort(400, "'after' must be a whole number")
    return int(raw)


@bp.get("/issues/<int:issue_id>/recipients")
@require_role("publisher")  # addresses: people's personal data
def issue_recipients(issue_id: int):
    issue = _load_issue(issue_id)
    status = _status_filter()
    rows = ledger.recipients(db_session(), issue.id, status, _after(), PAGE + 1)
    return render_template(
        "admin/issue_recipients.html",
        issue=issue,
        rows=rows[:PAGE],
        next_after=rows[PAGE - 1].delivery_id if len(rows) > PAGE else None,
        status=status,
        statuses=DELIVERY_STATUSES,
        progress=issue_progress(db_session(), issue),
    )


@bp.get("/issues/<int:issue_id>/recipients.csv")
@require_role("publisher")
def issue_recipients_csv(issue_id: int):
    issue = _load_issue(issue_id)
    status = _status_filter()
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
