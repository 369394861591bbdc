"""An issue as mail: frozen when its send starts, then filled in per recipient by delivery.

When a send starts, `freeze` keeps what the issue says (its blocks with the updates and images they pulled in)
and how it looks (the email's HTML and text from MJML, with markers where each recipient's links go). Every
batch, resume, late recipient, test send and preview of that issue is made from what was kept, never from the
issue's rows, the updates or the templates as they are later: one issue is one mail for its whole send. What
each recipient's copy is filled with (To, Message-ID, List-Unsubscribe and their own links) is `recipient_fields`;
a test to the team's own addresses is `send_tests`.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Callable
from datetime import datetime
from email.utils import format_datetime

from sqlalchemy.orm import Session, object_session

from ..config import Settings
from ..db import Database
from ..delivery.ledger import Claimed
from ..feedback import verp
from ..links import Links
from ..models import FrozenContent, Issue, utcnow
from ..render import CompiledMessage, EmailContent, compile_message, render_email
from ..render.headers import message_id_for_a_test
from ..render.message import markers_for, new_marker_prefix
from ..transports import PermanentFailure, TemporaryFailure, Transport
from .blocks import blocks_of, render_blocks, resolve_blocks

BODY_FIELDS = ("unsubscribe_url", "manage_url")
FRAMING = {
    "project-fusion": "Bringing community, mental health and learning disability services together across "
    "Hampshire and the Isle of Wight.",
}
# Digests carry updates of several topics: they are a list of their own, never their first update's topic's.
DIGEST_LIST = ("Trust Matters digest", "digest")


def web_url(issue: Issue, settings: Settings) -> str | None:
    """The issue's page in the public archive ("view in browser"); the archive until it is sent; None for
    an issue sent to a segment, which is not published."""
    if issue.kind == "update" and issue.progress_update is not None:
        return f"{settings.base_url}/news/updates/{issue.progress_update.slug}"
    if issue.segment_id is not None:
        return None
    return f"{settings.base_url}/news/{issue.slug}" if issue.slug else f"{settings.base_url}/news"


def footer(issue: Issue, settings: Settings) -> dict:
    """Why they got it and how to stop, in the footer."""
    if issue.kind == "digest":
        return {
            "reason": f"You are getting this digest because you asked {settings.organisation} for a summary of "
            "updates instead of an email for each one.",
            "unsubscribe_label": "Unsubscribe from everything",
        }
    return {
        "reason": f"You are getting this email because you subscribed to {issue.topic.name} from "
        f"{settings.organisation}.",
        "unsubscribe_label": f"Unsubscribe from {issue.topic.name}",
    }


def issue_content(issue: Issue, settings: Settings, frozen: FrozenContent | None = None) -> EmailContent:
    """What the layout needs for `issue`: from its frozen blocks (given, or kept on the issue); for an issue sent
    before contents were frozen, as its send began (`updates_shown`); otherwise as the issue is now (latest updates:
    its topic's, published by now)."""
    frozen = frozen if frozen is not None else issue.frozen
    if frozen is not None:
        blocks = render_blocks(None, frozen.blocks, settings.base_url)
        subject = frozen.subject
    else:
        topic_id, before = updates_shown(issue)
        session = object_session(issue)
        blocks = render_blocks(session, blocks_of(issue), settings.base_url, topic_id=topic_id, before=before)
        subject = issue.subject
    return EmailContent(
        subject=subject,
        preheader=issue.preheader or "",
        body_html="",
        body_text="",
        template="newsletter",
        organisation=settings.organisation,
        contact_email=settings.contact_email,
        topic_name=subject if issue.kind == "digest" else issue.topic.name,
        extra={
            "blocks": blocks,
            "framing": "" if issue.kind == "digest" else FRAMING.get(issue.topic.slug, ""),
            "web_url": web_url(issue, settings),
            **footer(issue, settings),
        },
    )


def updates_shown(issue: Issue) -> tuple[int | None, datetime]:
    """(topic, published by) of the updates an issue with no frozen contents shows. Every send freezes its
    contents when it starts, so an issue whose send began without them began before migration 0012: its
    emails and its web page then took the newest updates of every topic as of the send's start, and the rest
    of its recipients (and its preview, and a test of it) get the same. A draft: its topic's, as of now."""
    if issue.send_requested_at is not None:
        return None, issue.send_requested_at
    return issue.topic_id, utcnow()


def list_id(issue: Issue, settings: Settings) -> tuple[str, str]:
    """(label, id) of the List-Id header: the topic's list, or for a digest the digests' own."""
    if issue.kind == "digest":
        return DIGEST_LIST[0], f"{DIGEST_LIST[1]}.{settings.mail_domain}"
    return issue.topic.name, f"{issue.topic.slug}.{settings.mail_domain}"


def feedback_id(issue: Issue, settings: Settings) -> str:
    """Gmail's Feedback-ID (its feedback loop counts complaints per field): `issue<id>:<list>:<kind>:<sender>`,
    at most four fields, the last the sender id (FEEDBACK_ID_SENDER, or the From domain). The same for every copy
    of an issue; the list is the topic's (or "digest"), the kind newsletter, update or digest."""
    sender = settings.deliverability.feedback_id_sender or settings.mail_domain
    listed = DIGEST_LIST[1] if issue.kind == "digest" else issue.topic.slug
    return f"issue{issue.id}:{listed}:{issue.kind}:{sender}"


def freeze(session: Session, issue: Issue, settings: Settings | None = None, *, starting: bool = True) -> FrozenContent:
    """Keep what `issue` says now, once: its blocks with the updates and images they pull in (the newest of
    its topic published by the moment the send started), and, given the settings rendering needs, the email
    itself. Called when the send starts, inside its transaction; calling it again changes nothing already
    kept. The caller holds the issue's row lock (or SQLite's write lock), so two processes keep one version.
    `starting=False`: a send already under way without frozen contents (begun before migration 0012) is kept
    as its first recipients got it (`updates_shown`)."""
    frozen = issue.frozen
    if frozen is None:
        topic_id, before = (issue.topic_id, issue.send_requested_at or utcnow()) if starting else updates_shown(issue)
        frozen = FrozenContent(
            issue_id=issue.id,
            subject=issue.subject,
            blocks=resolve_blocks(session, blocks_of(issue), topic_id=topic_id, before=before),
        )
        issue.frozen = frozen
        session.add(frozen)
    if settings is not None and frozen.html is None:
        markers = markers_for(new_marker_prefix(), BODY_FIELDS)
        frozen.html, frozen.text = render_email(issue_content(issue, settings, frozen), markers)
        frozen.markers = markers
        frozen.list_label, frozen.list_id = list_id(issue, settings)
        frozen.rendered_at = utcnow()
    session.flush()
    return frozen


def _rendered(issue: Issue) -> FrozenContent | None:
    frozen = issue.frozen
    return frozen if frozen is not None and frozen.html is not None else None


def _encoded(
    settings: Settings,
    *,
    subject: str,
    html: str,
    text: str,
    markers: dict[str, str],
    list_header: tuple[str, str],
    subject_prefix: str = "",
    unsubscribe_post: bool = True,
    feedback: str | None = None,
) -> CompiledMessage:
    return compile_message(
        subject=subject_prefix + subject,
        mail_from=settings.mail_from,
        reply_to=settings.mail_reply_to,
        html=html,
        text=text,
        body_markers=markers,
        list_id=list_header,
        extra_headers={"Feedback-ID": feedback} if feedback else None,
        unsubscribe_post=unsubscribe_post,
    )


def _kept(frozen: FrozenContent) -> dict:
    return {
        "subject": frozen.subject,
        "html": frozen.html,
        "text": frozen.text,
        "markers": frozen.markers,
        "list_header": (frozen.list_label, frozen.list_id),
    }


def compile_issue(
    issue: Issue, settings: Settings, subject_prefix: str = "", *, unsubscribe_post: bool = True, bulk: bool = True
) -> CompiledMessage:
    """The issue's whole message, encoded once; recipients differ only in the filled-in fields. A sending or
    sent issue is its frozen email, with no rendering; a draft is rendered as it stands now. `bulk`: it goes to
    subscribers and carries Feedback-ID (a test for the team does not)."""
    frozen = _rendered(issue)
    feedback = feedback_id(issue, settings) if bulk else None
    if frozen is not None:
        return _encoded(
            settings,
            **_kept(frozen),
            subject_prefix=subject_prefix,
            unsubscribe_post=unsubscribe_post,
            feedback=feedback,
        )
    markers = markers_for(new_marker_prefix(), BODY_FIELDS)
    html, text = render_email(issue_content(issue, settings), markers)
    return _encoded(
        settings,
        subject=issue.subject,
        html=html,
        text=text,
        markers=markers,
        list_header=list_id(issue, settings),
        subject_prefix=subject_prefix,
        unsubscribe_post=unsubscribe_post,
        feedback=feedback,
    )


def sent_message(db: Database, issue_id: int, settings: Settings) -> CompiledMessage:
    """The message a worker sends for `issue_id`: its frozen email, read and encoded, never rendered. A send
    begun without it rendered (started without settings, or already under way when migration 0012 ran) is
    rendered and kept here once, under the issue's lock, so every worker sends the same."""
    with db.sessions() as session:
        frozen = session.get(FrozenContent, issue_id)
        if frozen is not None and frozen.html is not None:
            return _encoded(settings, **_kept(frozen), feedback=feedback_id(session.get(Issue, issue_id), settings))
    with db.transaction() as session:
        issue = session.get(Issue, issue_id, with_for_update=True)
        frozen = freeze(session, issue, settings, starting=False)
        return _encoded(settings, **_kept(frozen), feedback=feedback_id(issue, settings))


def unsubscribes_from(kind: str, topic_id: int) -> int | None:
    """The topic a recipient's unsubscribe link leaves: the issue's own, or for a digest (which carries updates of
    several topics) None, everything."""
    return None if kind == "digest" else topic_id


def recipient_fields(
    issue_id: int, kind: str, topic_id: int, links: Links, settings: Settings
) -> Callable[[Claimed], dict]:
    """What delivery fills in for each recipient of the issue: To, Message-ID, List-Unsubscribe and the
    unsubscribe and preference links in the body."""
    topic = unsubscribes_from(kind, topic_id)

    def fields(claim: Claimed) -> dict[str, str]:
        unsubscribe = links.unsubscribe_url(claim.public_id, topic)
        return {
            "to": claim.email,
            "message_id": verp.message_id(issue_id, claim.subscriber_id, settings),
            "list_unsubscribe": unsubscribe,
            "unsubscribe_url": unsubscribe,
            "manage_url": links.manage_url(claim.public_id),
        }

    return fields


def send_tests(
    db: Database, issue_id: int, addresses: list[str], settings: Settings, transport: Transport
) -> tuple[dict[str, str], list[str]]:
    """A test of the issue to each address (the team's own), marked [TEST], with example links: what each
    address got ('sent', or 'refused: why'), and the addresses to try again (the server could not take it now)."""
    with db.sessions() as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            return {"skipped": "no such issue"}, []
        message, example = message_for_test(issue, settings)
    outcomes, again = {}, []
    envelope = verp.envelope_for_person(None, settings, message.envelope_from)  # a bounce of a test touches nobody
    for address in addresses:
        data = message.fill(
            {
                "to": address,
                "date": format_datetime(utcnow()),
                "message_id": message_id_for_a_test(issue_id, settings.mail_domain),
                **example,
            }
        )
        try:
            transport.send(envelope, address, data)
            outcomes[address] = "sent"
        except TemporaryFailure:
            again.append(address)
        except PermanentFailure as exc:
            outcomes[address] = f"refused: {exc}"
    return outcomes, again


def message_for_test(issue: Issue, settings: Settings) -> tuple[CompiledMessage, dict[str, str]]:
    """A test of the issue for the team, marked [TEST], and the example links it is filled with.

    A test goes to a colleague, not a subscriber: there is nothing its links could unsubscribe them from. So
    they go to the page where anyone asks for their own preference link (it works for whoever opens it), and
    the mail carries List-Unsubscribe without List-Unsubscribe-Post: RFC 8058 allows the one-click header
    only where a POST to the link really unsubscribes, which a test's cannot."""
    example = {name: f"{settings.base_url}/manage" for name in BODY_FIELDS}
    message = compile_issue(issue, settings, subject_prefix="[TEST] ", unsubscribe_post=False, bulk=False)
    return message, {"list_unsubscribe": example["unsubscribe_url"], **example}


def preview(issue: Issue, settings: Settings) -> tuple[str, str]:
    """(html, text) as a recipient would see them, with sample unsubscribe and manage links: for a sending
    or sent issue, the frozen email itself."""
    sample = {"unsubscribe_url": f"{settings.base_url}/u/example", "manage_url": f"{settings.base_url}/manage/example"}
    frozen = _rendered(issue)
    if frozen is None:
        return render_email(issue_content(issue, settings), sample)
    html, text = frozen.html, frozen.text
    for name, marker in frozen.markers.items():
        html = html.replace(marker, html_lib.escape(sample.get(name, ""), quote=True))
        text = text.replace(marker, sample.get(name, ""))
    return html, text
