"""An issue that has gone out to some people, as the feedback tests need one: rows in the ledger marked sent."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select, update

BOUNCE_DOMAIN = "bounces.mailer.test"


def bouncy(settings, **fields):
    """The test settings with BOUNCE_DOMAIN set (and any other deliverability fields given)."""
    return settings.with_overrides(
        deliverability=replace(settings.deliverability, bounce_domain=BOUNCE_DOMAIN, **fields)
    )


def people(db, emails, topics=("project-fusion",)) -> dict[str, int]:
    from mailer.audience.subscriptions import confirm_subscription, request_subscription

    ids = {}
    with db.transaction() as s:
        for address in emails:
            outcome = request_subscription(s, email=address, topic_slugs=list(topics))
            confirm_subscription(s, outcome.request_id)
            ids[address] = outcome.subscriber_id
    return ids


def sent_issue(db, subject="Progress", topic="project-fusion") -> tuple[int, dict[int, int]]:
    """An issue sent to everyone on `topic`: (its id, {subscriber id: delivery id}), every row 'sent'."""
    from mailer.audience.segments import topic_audience
    from mailer.compose.issues import create_issue, request_send
    from mailer.delivery import dispatch
    from mailer.models import Delivery
    from support.flows import approve_for_sending, issue_input

    with db.transaction() as s:
        issue = create_issue(s, issue_input(s, subject=subject, body="On track.", topic=topic))
        approve_for_sending(s, issue.id)
        request_send(s, issue.id)
        issue_id = issue.id
    dispatch.plan_issue(db, issue_id, lambda issue: topic_audience(issue.topic_id), 1000)
    with db.transaction() as s:
        s.execute(update(Delivery).where(Delivery.issue_id == issue_id).values(status="sent"))
        rows = dict(s.execute(select(Delivery.subscriber_id, Delivery.id).where(Delivery.issue_id == issue_id)).all())
    return issue_id, rows
