"""Newsletter issues: write, preview, send, follow."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..delivery import ledger
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Issue, Segment, Topic, utcnow
from ..render.content import clean_text, has_control_characters

SUBJECT_MAX = 200
BODY_MAX = 200_000


@dataclass
class IssueInput:
    subject: str
    body: str
    topic: str  # slug
    preheader: str = ""
    segment: int | None = None  # only the topic's subscribers who match this segment


def _validated(session: Session, data: IssueInput) -> tuple[dict, Topic | None]:
    errors: dict[str, str] = {}
    subject = (data.subject or "").strip()
    body = clean_text(data.body or "")  # stray invisible characters pasted from elsewhere are dropped
    preheader = (data.preheader or "").strip()
    if not subject:
        errors["subject"] = "Enter a subject"
    elif len(subject) > SUBJECT_MAX or "\n" in subject or "\r" in subject:
        errors["subject"] = f"Subject must be one line of {SUBJECT_MAX} characters or fewer"
    elif has_control_characters(subject):
        errors["subject"] = "Subject contains invisible control characters: retype it"
    if not body.strip():
        errors["body"] = "Write the body of the issue"
    elif len(body) > BODY_MAX:
        errors["body"] = f"Body must be {BODY_MAX:,} characters or fewer"
    if len(preheader) > 200 or "\n" in preheader or has_control_characters(preheader):
        errors["preheader"] = "Preview text must be one line of 200 characters or fewer"
    topic = session.scalar(select(Topic).where(Topic.slug == (data.topic or "").strip())) if data.topic else None
    if topic is None:
        errors["topic"] = "Choose a topic" if not data.topic else f"Unknown topic: {data.topic}"
    segment_id = data.segment
    if segment_id is not None:
        if isinstance(segment_id, bool) or not isinstance(segment_id, int) or not 0 < segment_id <= MAX_ID:
            errors["segment"] = "Segment must be the id of a segment"
        elif session.get(Segment, segment_id) is None:
            errors["segment"] = f"No segment with id {segment_id}"
    if errors:
        raise InvalidInput(errors)
    return {"subject": subject, "body": body, "preheader": preheader, "segment_id": segment_id}, topic


def create_issue(session: Session, data: IssueInput, created_by_id: int | None = None) -> Issue:
    """A new draft issue; InvalidInput names every field that is wrong."""
    values, topic = _validated(session, data)
    issue = Issue(topic_id=topic.id, status="draft", created_by_id=created_by_id, **values)
    issue.topic = topic
    session.add(issue)
    session.flush()
    return issue


def update_issue(session: Session, issue_id: int, data: IssueInput) -> Issue:
    """Change a draft; an issue that has started sending can no longer change."""
    issue = get_issue(session, issue_id)
    if issue.status != "draft":
        raise Conflict(f"Issue {issue.id} is {issue.status} and can no longer be edited")
    values, topic = _validated(session, data)
    for key, value in values.items():
        setattr(issue, key, value)
    issue.topic_id = topic.id
    issue.topic = topic
    session.flush()
    return issue


MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database; anything larger cannot exist


def get_issue(session: Session, issue_id: int) -> Issue:
    if not 0 < issue_id <= MAX_ID:
        raise NotFound(f"No issue with id {issue_id}")
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise NotFound(f"No issue with id {issue_id}")
    return issue


def list_issues(session: Session, limit: int = 100) -> list[Issue]:
    return list(session.scalars(select(Issue).order_by(Issue.id.desc()).limit(limit)))


def request_send(session: Session, issue_id: int) -> Issue:
    """Move a draft to `sending`. The caller enqueues planning after its transaction commits."""
    issue = _locked(session, issue_id)
    if issue.status != "draft":
        raise Conflict(f"Issue {issue.id} is already {issue.status}")
    issue.status = "sending"
    issue.send_requested_at = utcnow()
    # The segment's rules as they were when the send started: later edits change future sends only.
    issue.audience_rules = issue.segment.rules if issue.segment is not None else None
    session.flush()
    return issue


def _locked(session: Session, issue_id: int) -> Issue:
    issue = session.get(Issue, issue_id, with_for_update=True) if 0 < issue_id <= MAX_ID else None
    if issue is None:
        raise NotFound(f"No issue with id {issue_id}")
    return issue


def pause_issue(session: Session, issue_id: int) -> Issue:
    """Stop claiming more recipients; what is in flight finishes. Resume carries on where it stopped."""
    issue = _locked(session, issue_id)
    if issue.status != "sending":
        raise Conflict(f"Only a sending issue can be paused; issue {issue.id} is {issue.status}")
    issue.status = "paused"
    issue.paused_at = utcnow()
    session.flush()
    return issue


def resume_issue(session: Session, issue_id: int) -> Issue:
    """Carry on a paused send. Only rows still pending are sent: a row that was sent never goes again.

    The caller enqueues planning after the commit (it re-plans nothing: it cuts the pending rows into batches).
    """
    issue = _locked(session, issue_id)
    if issue.status != "paused":
        raise Conflict(f"Only a paused issue can be resumed; issue {issue.id} is {issue.status}")
    issue.status = "sending"
    issue.paused_at = None
    session.flush()
    return issue


def cancel_issue(session: Session, issue_id: int) -> Issue:
    """Stop for good: every recipient not yet sent to becomes `cancelled`."""
    issue = _locked(session, issue_id)
    if issue.status not in ("sending", "paused"):
        raise Conflict(f"Only a sending or paused issue can be cancelled; issue {issue.id} is {issue.status}")
    issue.status = "cancelled"
    issue.cancelled_at = utcnow()
    ledger.cancel_pending(session, issue.id)
    session.flush()
    return issue


def issue_progress(session: Session, issue: Issue) -> dict:
    """The issue as the API and the progress page show it."""
    counts = ledger.status_counts(session, issue.id)
    return {
        "id": issue.id,
        "subject": issue.subject,
        "preheader": issue.preheader,
        "topic": issue.topic.slug,
        "segment": issue.segment_id,
        "status": issue.status,
        "recipients": issue.recipient_count,
        "counts": counts,
        "created_at": issue.created_at.isoformat(),
        "send_requested_at": issue.send_requested_at.isoformat() if issue.send_requested_at else None,
        "finished_at": issue.finished_at.isoformat() if issue.finished_at else None,
    }
