"""How fast one issue becomes per-recipient bytes, against building an EmailMessage per recipient.

Prints figures and, last, one JSON line. The peer (what most mailers do) is measured in the same run, so
the ratio holds on whatever machine runs it. `BENCH_RECIPIENTS` sets the count (default 20000).
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from mailer.compose.blocks import Rendered
from mailer.links import Links
from mailer.models import utcnow
from mailer.render import EmailContent, compile_message, markdown_to_html, markdown_to_text, render_email
from mailer.render.message import markers_for, new_marker_prefix

BODY = "\n\n".join(
    f"## Update {i}\n\nProject Fusion is bringing community, mental health and learning disability services "
    f"together. Read [the plan for {i}](https://example.nhs.uk/plan/{i}) and tell us what you think.\n\n"
    "* Community services\n* Mental health services\n* Learning disability services"
    for i in range(40)
)


def issue_content() -> EmailContent:
    """The issue every send bench measures: 40 sections of text and links (about 34 KB as sent)."""
    return EmailContent(
        subject="Trust Matters: November",
        body_html=markdown_to_html(BODY),
        body_text=markdown_to_text(BODY),
        organisation="Hampshire and Isle of Wight Healthcare NHS Foundation Trust",
        contact_email="communications@example.nhs.uk",
        topic_name="Trust Matters",
        extra={
            "blocks": [Rendered("text", html=markdown_to_html(BODY), text=markdown_to_text(BODY))],
            "framing": "",
            "web_url": "https://mailer.example.nhs.uk/news/2026-11-trust-matters",
            "reason": "You are getting this email because you subscribed to Trust Matters.",
            "unsubscribe_label": "Unsubscribe from Trust Matters",
        },
    )


def main() -> None:
    n = int(os.environ.get("BENCH_RECIPIENTS", "20000"))
    links = Links("bench-secret", "https://mailer.example.nhs.uk")
    content = issue_content()
    date = format_datetime(utcnow())

    t0 = time.perf_counter()
    markers = markers_for(new_marker_prefix(), ("unsubscribe_url", "manage_url"))
    html, text = render_email(content, markers)
    message = compile_message(
        subject=content.subject,
        mail_from="Trust Matters <tm@example.nhs.uk>",
        html=html,
        text=text,
        body_markers=markers,
        list_id=("Trust Matters", "trust-matters.example.nhs.uk"),
    )
    render_ms = (time.perf_counter() - t0) * 1000

    def fill_all(count: int) -> int:
        size = 0
        for sid in range(count):
            public_id = f"{sid:032x}"
            url = links.unsubscribe_url(public_id, 1)
            data = message.fill(
                {
                    "to": f"reader{sid}@example.org",
                    "date": date,
                    "message_id": f"issue-1.{sid}@example.nhs.uk",
                    "list_unsubscribe": url,
                    "unsubscribe_url": url,
                    "manage_url": links.manage_url(public_id),
                }
            )
            size = len(data)
        return size

    t0 = time.perf_counter()
    size = fill_all(n)
    ours = n / (time.perf_counter() - t0)
    # Memory separately (tracing slows the loop): it must not grow with the count.
    tracemalloc.start()
    fill_all(min(n, 2000))
    peak_kb = tracemalloc.get_traced_memory()[1] / 1024
    tracemalloc.stop()

    # The peer: the whole message built per recipient with the standard library (the HTML rendered once,
    # as any sensible mailer would; MJML per recipient would be far slower still).
    peer_n = max(n // 20, 200)
    t0 = time.perf_counter()
    for sid in range(peer_n):
        url = links.unsubscribe_url(f"{sid:032x}", 1)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = "Trust Matters <tm@example.nhs.uk>"
        msg["To"] = f"reader{sid}@example.org"
        msg["Subject"] = content.subject
        msg["Date"] = date
        msg["Message-ID"] = f"<issue-1.{sid}@example.nhs.uk>"
        msg["List-Unsubscribe"] = f"<{url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(text.replace(markers["unsubscribe_url"], url))
        msg.add_alternative(html.replace(markers["unsubscribe_url"], url), subtype="html")
        msg.as_bytes()
    peer = peer_n / (time.perf_counter() - t0)

    print(f"render once (Jinja + MJML + MIME encode): {render_ms:.1f} ms, HTML {len(html) / 1024:.1f} KB")
    print(f"per-recipient fill:        {ours:,.0f} messages/s ({size / 1024:.1f} KB each), peak {peak_kb:.0f} KB")
    print(f"EmailMessage per recipient: {peer:,.0f} messages/s (same content)")
    print(f"ratio: {ours / peer:.1f}x")
    print(
        json.dumps(
            {
                "recipients": n,
                "render_once_ms": round(render_ms, 1),
                "html_kb": round(len(html) / 1024, 1),
                "message_kb": round(size / 1024, 1),
                "fill_msgs_per_s": round(ours),
                "emailmessage_msgs_per_s": round(peer),
                "ratio": round(ours / peer, 1),
                "fill_peak_kb": round(peak_kb),
            }
        )
    )


if __name__ == "__main__":
    main()
