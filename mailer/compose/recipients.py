"""Who an issue goes to, by its kind, and planning its send for them.

A newsletter goes to its topic's "as it happens" subscribers (and, when it was approved for a segment, only
those who match the rules approved with it); an update email to its topic's subscribers in its areas and
services; a digest email to the people its run put on it. Who is planned is decided once, when the send is
planned; who still wants it is asked again for every chunk a worker claims, so leaving mid-send is honoured.
"""

from __future__ import annotations

from sqlalchemy import Select

from ..audience import segments
from ..db import Database
from ..delivery import dispatch
from ..models import Issue
from .digests import digest_audience
from .issues import stop_unsendable


def planned_audience(issue: Issue) -> Select:
    """Who the issue is planned for: `select(subscriber.id)`."""
    if issue.kind == "update" and issue.progress_update is not None:
        update = issue.progress_update
        return segments.update_audience(issue.topic_id, update.areas, update.services)
    if issue.kind == "digest":
        return digest_audience(issue.id)
    return segments.topic_audience(issue.topic_id, issue.audience_rules)


def still_wanted(kind: str, topic_id: int) -> Select:
    """Who may still get an issue of this kind and topic now: anyone reachable for a digest (what they get in
    it was chosen when the run placed them), the topic's subscribers for anything else."""
    if kind == "digest":
        return segments.reachable_audience()
    return segments.topic_audience(topic_id)


def plan_send(db: Database, issue_id: int, batch_size: int) -> list[tuple[int, int]]:
    """Plan a sending issue's deliveries (once) and return the batch ranges to send; none for an issue whose
    approved rules can no longer be used (it is cancelled, saying why: see issues.stop_unsendable)."""
    with db.transaction() as session:
        if stop_unsendable(session, issue_id):
            return []
    return dispatch.plan_issue(db, issue_id, planned_audience, batch_size)
