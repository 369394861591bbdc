"""Running the app's own tasks in this process with another way out (TRANSPORT=ses or notify), and an issue to send."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

from mailer.audience.segments import topic_audience
from mailer.audience.subscriptions import confirm_subscription, request_subscription
from mailer.compose.issues import create_issue, request_send
from mailer.delivery import dispatch
from mailer.runtime import Runtime, runtime, set_runtime
from support.flows import approve_for_sending, issue_input


def with_deliverability(settings, **changes):
    return settings.with_overrides(deliverability=replace(settings.deliverability, **changes))


@contextmanager
def running_as(settings):
    """The tasks of mailer.tasks, called here, run with `settings` (the runtime is put back after)."""
    before = runtime()
    rt = Runtime.build(settings)
    set_runtime(rt)
    try:
        yield rt
    finally:
        set_runtime(before)
        rt.db.dispose()


def readers(db, emails, topic="project-fusion") -> dict[str, int]:
    ids = {}
    with db.transaction() as s:
        for email in emails:
            outcome = request_subscription(s, email=email, topic_slugs=[topic])
            confirm_subscription(s, outcome.request_id)
            ids[email] = outcome.subscriber_id
    return ids


def planned_issue(db, subject="Progress update", body="We are on track.", topic="project-fusion"):
    """An issue sending to everyone on `topic`, planned into one batch: (issue id, [(lo, hi)])."""
    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject=subject, body=body, topic=topic))
        approve_for_sending(s, issue.id)
        request_send(s, issue.id)
        issue_id = issue.id
    return issue_id, dispatch.plan_issue(db, issue_id, lambda issue: topic_audience(issue.topic_id), 1000)
