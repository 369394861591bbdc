"""One of every kind of email the mailer sends, made by the real code and received by the test SMTP server.

A person signs up on the public form (confirmation) and asks for their link (manage link); the comms team
writes a newsletter with every kind of block in the admin, uploads a photo, sends themselves a test ([TEST])
and sends it; progress updates are published in two topics (update); the weekly digest runs for someone who
chose it for both (digest, mixed topics). Celery workers render and send each one as in production, so what the
rendering checks look at is the message as a reader's mail server got it: headers and both parts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from conftest import csrf_from, wait_until
from support.flows import confirm, send_issue, sign_in, subscribe, update_input
from support.smtp import Received, SmtpTestServer

KINDS = ("confirmation", "manage_link", "newsletter", "test_send", "update", "digest")
PHOTO_SIZE = (1200, 675)

# A newsletter text block with what writers use: emphasis, a link, tables (one fits a phone, one does not), a
# block quote and lists.
NEWSLETTER_MARKDOWN = """\
This month the board agreed how **community, mental health and learning disability services** will come
together. You can [read the board papers on our website](https://www.example.nhs.uk/board/november).

| Milestone | Date | Status |
|---|---|---|
| Public consultation | 12 November 2026 | Done |
| Board decision | 3 December 2026 | Planned |
| New organisation starts | 1 April 2027 | Planned |

Who is doing what (too wide for a phone, so the email writes it as records):

| Workstream | Organisation | Status | Next step |
|---|---|---|---|
| Communications | Hampshire and Isle of Wight Healthcare | Done | 12 November 2026 |
| Interoperability | Southern Health | In progress | Records transfer |
| Estates | Solent | Not started | Site surveys |

> Being asked what matters to us as carers made a real difference to the plans.

What happens next:

- staff briefings in every area
- drop-in sessions on the Isle of Wight
- a progress update each month

1. Read the plan.
2. Tell us what you think.
"""


@dataclass
class SentEmails:
    """The received messages by kind (see KINDS), and what the HTML refers to that a browser must fetch."""

    messages: dict[str, Received]
    media_paths: dict[str, bytes]  # site path (/media/<name>) → the bytes the site serves there

    def html(self, kind: str) -> str:
        return self.messages[kind].html()


def photo(size: tuple[int, int] = PHOTO_SIZE) -> bytes:
    """A JPEG photo-like picture (a gradient with shapes): what the comms team uploads from a camera."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=(0, 60 + 120 * y // height, 140 + 80 * y // height))
    draw.ellipse([width // 5, height // 4, width // 2, height * 3 // 4], fill=(255, 184, 28))
    draw.rectangle([width * 3 // 5, height // 3, width * 9 // 10, height * 5 // 6], fill=(0, 127, 59))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _person(db, email: str, *subscriptions: str) -> None:
    from mailer.audience import commands
    from mailer.audience.inputs import NewSubscriber
    from mailer.audience.lookups import parse_in
    from mailer.audit import SYSTEM

    with db.transaction() as session:
        commands.add_subscriber(
            session,
            parse_in(
                session,
                NewSubscriber,
                {
                    "email": email,
                    "subscriptions": list(subscriptions),
                    "area": "isle-of-wight",
                    "consent": {"source": "Paper form, Newport drop-in", "collected": True},
                },
            ),
            SYSTEM,
        )


def _publish_updates(db) -> list[int]:
    """Two Project Fusion updates and one Get involved update, published as a publisher does; their issue ids."""
    from mailer.audit import Actor
    from mailer.compose.updates import create_update, publish_update

    publisher = Actor("token", None, "rendering checks")
    updates = [
        dict(
            title="New community mental health hub opens in Newport",
            topic="project-fusion",
            summary="The hub brings community and mental health teams into one building on the Isle of Wight.",
            body="Teams moved in on **2 November**. The hub is open Monday to Friday, 8am to 6pm.\n\n"
            "- parking for 40 cars\n- step-free access\n\n"
            "[Find the hub on a map](https://www.example.nhs.uk/hubs/newport)",
            link="https://www.example.nhs.uk/hubs/newport",
        ),
        dict(
            title="Board agrees the timetable for bringing services together",
            topic="project-fusion",
            summary="The new organisation is planned to start on 1 April 2027.",
            body="The board met in public on 3 December and agreed the timetable.",
        ),
        dict(
            title="Carers' forum in Portsmouth: book your place",
            topic="get-involved",
            summary="Come and tell us what matters to you, on 14 January at the Guildhall.",
            body="Places are free. Tell us if you need any support to take part.",
        ),
    ]
    issue_ids = []
    with db.transaction() as session:
        for fields in updates:
            update = create_update(session, update_input(session, **fields), publisher)
            issue_ids.append(publish_update(session, update.id, publisher).id)
    return issue_ids


def _compose_newsletter(client) -> int:
    page = client.get("/admin/issues/new")
    form = {
        "csrf_token": csrf_from(page.data),
        "topic": "project-fusion",  # the topic of the sample updates: its latest-updates block lists two of them
        "subject": "Project Fusion: December 2026",
        "preheader": "The board's decision, a new hub in Newport and how to have your say",
        "block-0-type": "heading",
        "block-0-text": "Bringing our services together",
        "block-1-type": "text",
        "block-1-markdown": NEWSLETTER_MARKDOWN,
        "block-2-type": "image",
        "block-2-alt": "The new community hub in Newport, seen from the car park",
        "block-2-caption": "The Newport hub opened in November.",
        "block-2-link": "https://www.example.nhs.uk/hubs/newport",
        "block-2-file": (io.BytesIO(photo()), "newport-hub.jpg"),
        "block-3-type": "button",
        "block-3-label": "Read the full plan",
        "block-3-url": "https://www.example.nhs.uk/project-fusion/plan",
        "block-4-type": "updates",
        "block-4-count": "3",
        "block-5-type": "divider",
        "block-6-type": "text",
        "block-6-markdown": "Thank you for reading. Reply to this email to tell us what you think.",
        "action": "save",
    }
    response = client.post("/admin/issues/new", data=form, content_type="multipart/form-data")
    assert response.status_code == 303, response.data[:2000]
    return int(response.headers["Location"].rstrip("/").split("/")[-1])


def _sent(db, issue_ids) -> None:
    from mailer.models import Issue
    from mailer.tasks import enqueue, plan_issue

    for issue_id in issue_ids:
        enqueue(plan_issue, issue_id)

    def all_sent():
        with db.sessions() as session:
            return all(session.get(Issue, i).status == "sent" for i in issue_ids)

    wait_until(all_sent, 60, message=f"issues {issue_ids} to be sent")


def send_every_kind(app, db, smtp_server: SmtpTestServer) -> SentEmails:
    """Make the mailer send one email of each kind; needs real Celery workers (the `celery_workers` fixture)."""
    from mailer.compose.digests import run_digest

    client = app.test_client()
    reader, team, fusion, digest_reader = (
        "reader@example.org",
        "comms@example.nhs.uk",
        "fusion.reader@example.org",
        "digest.reader@example.org",
    )
    # A person signs up on the site, confirms, then asks for their preferences link.
    assert subscribe(client, reader, topics=("trust-matters",)).status_code in (200, 303)
    (confirmation,) = smtp_server.wait_for(reader)
    assert confirm(client, confirmation).status_code in (200, 303)
    page = client.get("/manage")
    assert client.post("/manage", data={"csrf_token": csrf_from(page.data), "email": reader}).status_code == 200
    manage_link = smtp_server.wait_for(reader, 2)[1]

    # Updates as they happen to one reader; a weekly digest of two topics to another.
    _person(db, fusion, "project-fusion")
    _person(db, digest_reader, "project-fusion:weekly", "get-involved:weekly")
    _sent(db, _publish_updates(db))
    # The two updates go out in parallel: take the one with a list and a link in its body, whichever came first.
    (update,) = [m for m in smtp_server.wait_for(fusion, 2) if m.message["Subject"].startswith("New community")]
    report = run_digest(db, "weekly")
    _sent(db, report.emails)
    (digest,) = smtp_server.wait_for(digest_reader)

    # The comms team writes the newsletter, tests it on themselves, then sends it.
    sign_in(client, db, email=team, role="admin")
    issue_id = _compose_newsletter(client)
    page = client.get(f"/admin/issues/{issue_id}")
    response = client.post(f"/admin/issues/{issue_id}/test", data={"csrf_token": csrf_from(page.data), "to": team})
    assert response.status_code == 303
    (test_send,) = smtp_server.wait_for(team)
    send_issue(client, issue_id)
    (newsletter,) = [m for m in smtp_server.wait_for(fusion, 3) if m.message["Subject"].startswith("Project Fusion")]

    messages = {
        "confirmation": confirmation,
        "manage_link": manage_link,
        "newsletter": newsletter,
        "test_send": test_send,
        "update": update,
        "digest": digest,
    }
    assert set(messages) == set(KINDS)
    return SentEmails(messages, _media(client, messages.values()))


def _media(client, messages) -> dict[str, bytes]:
    """Every /media/ image the messages show, as the site serves it (a browser fetches it from there)."""
    import re
    from urllib.parse import urlsplit

    paths = {}
    for message in messages:
        for src in re.findall(r'<img[^>]+src="([^"]+)"', message.html()):
            path = urlsplit(src).path
            if path.startswith("/media/") and path not in paths:
                served = client.get(path)
                assert served.status_code == 200, path
                paths[path] = served.data
    return paths
