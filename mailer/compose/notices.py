"""Mail to the team itself: a send that paused itself tells every publisher and admin, with its figures.

Built like the subscribers' transactional mail (MJML, text and HTML, compiled once and filled per person) but
for colleagues: no List-Unsubscribe (there is no list to leave: it goes to whoever can act on the send), and an
envelope sender of its own (`verp.envelope_for_person(None, …)`), so a bounce of it never counts against a
subscriber or an issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..config import Settings
from ..feedback import verp
from ..models import AdminUser, Issue, utcnow
from ..render import team_message
from ..stats import issue_figures

# Who can resume or cancel a send: they are the ones told.
DECIDERS = ("publisher", "admin")


@dataclass
class TeamMail:
    """One message to one colleague, ready for the wire."""

    envelope_from: str
    recipient: str
    data: bytes


def deciders(session: Session) -> list[str]:
    """The addresses of every active account that can resume or cancel a send."""
    return list(
        session.scalars(
            select(AdminUser.email)
            .where(AdminUser.active.is_(True), AdminUser.role.in_(DECIDERS))
            .order_by(AdminUser.id)
        )
    )


def paused_notice(session: Session, issue_id: int, settings: Settings, only: list[str] | None = None) -> list[TeamMail]:
    """'Paused by itself: <subject>' for each publisher and admin (or those of them in `only`: a retry for the
    ones a server could not take it for), with the figures and a link to the issue; nothing if the issue is no
    longer paused by itself (a publisher acted first). Audit: issue.paused_notice, naming who is told."""
    issue = session.get(Issue, issue_id)
    if issue is None or issue.status != "paused" or not issue.paused_reason:
        return []
    to = [a for a in deciders(session) if only is None or a in only]
    if not to:
        return []
    figures = issue_figures(session, issue.id)
    subject = f"Paused by itself: {issue.subject}"
    issue_url = f"{settings.base_url}/admin/issues/{issue.id}"
    message = team_message(
        settings,
        template="paused_notice",
        subject=subject,
        preheader="Its first messages bounced or were reported as spam: decide whether it carries on.",
        extra={
            "issue_subject": issue.subject,
            "reason": issue.paused_reason,
            "issue_url": issue_url,
            "sent": f"{figures.sent:,}",
            "recipients": f"{issue.recipient_count or 0:,}",
        },
    )
    envelope = verp.envelope_for_person(None, settings, message.envelope_from)
    stamp = int(utcnow().timestamp())
    mails = [
        TeamMail(
            envelope_from=envelope,
            recipient=address,
            data=message.fill(
                {
                    "to": address,
                    "date": format_datetime(utcnow()),
                    "message_id": f"paused-{issue.id}-{stamp}-{n}@{settings.mail_domain}",
                }
            ),
        )
        for n, address in enumerate(to)
    ]
    audit.record(session, None, "issue.paused_notice", issue, to=to, reason=issue.paused_reason)
    return mails
