"""Who got an issue and how it went: a filtered, paged view and a streamed CSV export."""

from __future__ import annotations

import csv
import io

from flask import Response, abort, render_template, request, stream_with_context

from ...audience.export import spreadsheet_cell as _cell
from ...compose.issues import issue_progress
from ...delivery import ledger
from ...models import DELIVERY_STATUSES
from .. import db_session, require_role, runtime_of_app
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
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["email", "status", "attempts", "sent_at", "reason"])
        after = 0
        with db.sessions() as session:  # its own session: streaming outlives the request's
            while True:
                rows = ledger.recipients(session, issue_id, status, after, 5000)
                if not rows:
                    break
                for row in rows:
                    writer.writerow(
                        [
                            _cell(row.email or "(erased)"),
                            row.status,
                            row.attempts,
                            row.sent_at.isoformat() if row.sent_at else "",
                            _cell(row.last_error),
                        ]
                    )
                after = rows[-1].delivery_id
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()

    name = f"issue-{issue.id}-recipients{'-' + status if status else ''}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
