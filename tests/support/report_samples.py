"""Bounce and complaint reports as relays and mailbox providers write them, made for these tests (each shaped
after the kind of server named, with addresses and wording of our own). Each function returns the bytes a
receiver gets; the arguments say who it answers, so a test can aim a sample at a row it made."""

from __future__ import annotations

import base64


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def quoted_headers(message_id: str, to: str, return_path: str | None = None) -> str:
    path = f"Return-Path: <{return_path}>\n" if return_path else ""
    return (
        f"{path}From: Trust Matters <trust-matters@mailer.test>\n"
        f"To: {to}\n"
        "Subject: Trust Matters: November\n"
        "Date: Tue, 01 Dec 2026 09:00:00 +0000\n"
        f"Message-ID: <{message_id}>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
    )


def postfix_dsn(
    recipient: str,
    *,
    to: str = "bounces@mailer.test",
    original_id: str = "issue-1.1@mailer.test",
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str | None = None,
    report_id: str = "20261201100000.4F2C1A0@relay.hospital.test",
) -> bytes:
    """Postfix's bounce: a multipart/report with the reason for people, the delivery-status fields, and the
    original message's headers (text/rfc822-headers)."""
    diagnostic = diagnostic or f"smtp; 550 {status} <{recipient}>: Recipient address rejected:\n    User unknown"
    return _crlf(
        f"""Return-Path: <>
Delivered-To: {to}
Received: by relay.hospital.test (Postfix) id 4F2C1A0; Tue,  1 Dec 2026 10:00:00 +0000 (GMT)
Date: Tue,  1 Dec 2026 10:00:00 +0000 (GMT)
From: MAILER-DAEMON@relay.hospital.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F2C1A0.1764583200/relay.hospital.test"
Message-Id: <{report_id}>

This is a MIME-encapsulated message.

--4F2C1A0.1764583200/relay.hospital.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.hospital.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.org[192.0.2.25] said: 550 {status} No such
    mailbox here (in reply to RCPT TO command)

--4F2C1A0.1764583200/relay.hospital.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.hospital.test
X-Postfix-Queue-ID: 4F2C1A0
X-Postfix-Sender: rfc822; {to}
Arrival-Date: Tue,  1 Dec 2026 09:59:58 +0000 (GMT)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: {diagnostic}

--4F2C1A0.1764583200/relay.hospital.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{quoted_headers(original_id, recipient, to)}
--4F2C1A0.1764583200/relay.hospital.test--
"""
    )


def exchange_dsn(
    recipient: str,
    *,
    to: str = "bounces@mailer.test",
    original_id: str = "issue-1.1@mailer.test",
    report_id: str = "a1b2c3d4-0000-4e5f-9a8b-0123456789ab@nhs365.example.net",
) -> bytes:
    """Exchange Online's (Microsoft 365's) non-delivery report: a text and HTML explanation, the status fields
    with its own 5.1.10 status, and the whole original returned as message/rfc822."""
    return _crlf(
        f"""From: Microsoft Outlook <postmaster@nhs365.example.net>
To: <{to}>
Date: Tue, 1 Dec 2026 10:02:11 +0000
Subject: Undeliverable: Trust Matters: November
Message-ID: <{report_id}>
Content-Language: en-GB
X-MS-Exchange-Message-Is-Ndr: true
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="ndr-boundary-7f3e"

--ndr-boundary-7f3e
Content-Type: multipart/alternative; boundary="ndr-alt-91c2"

--ndr-alt-91c2
Content-Type: text/plain; charset="us-ascii"

Your message to {recipient} couldn't be delivered.
The address wasn't found at the destination domain. It might be misspelled or it might not exist.
Action Required: Recipient
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'

--ndr-alt-91c2
Content-Type: text/html; charset="us-ascii"

<html><body><p>Your message to <b>{recipient}</b> couldn't be delivered.</p></body></html>

--ndr-alt-91c2--

--ndr-boundary-7f3e
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB0001.eurprd01.prod.example.net
Received-From-MTA: dns;relay.hospital.test
Arrival-Date: Tue, 1 Dec 2026 10:02:09 +0000

Final-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found
 by SMTP address lookup
X-Display-Name: {recipient}

--ndr-boundary-7f3e
Content-Type: message/rfc822

{quoted_headers(original_id, recipient)}
Hello from Trust Matters.

--ndr-boundary-7f3e--
"""
    )


def gmail_style_bounce(recipient: str, *, to: str = "bounces@mailer.test", original_id: str = "issue-1.1@mailer.test"):
    """A webmail provider's plain-text bounce with no delivery-status part: only the words and the address."""
    return _crlf(
        f"""Delivered-To: {to}
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@webmail.example.com>
To: {to}
Subject: Delivery Status Notification (Failure)
Date: Tue, 1 Dec 2026 10:05:00 +0000
Message-ID: <gm-bounce-55aa@mx.webmail.example.com>
Auto-Submitted: auto-replied
Content-Type: text/plain; charset=UTF-8

Delivery to the following recipient failed permanently:

     {recipient}

Technical details of permanent failure:
The email account that you tried to reach does not exist. Please try
double-checking the recipient's email address for typos. 550 5.1.1

----- Original message -----

{quoted_headers(original_id, recipient)}
Hello from Trust Matters.
"""
    )


def arf_complaint(
    recipient: str,
    *,
    to: str = "fbl@mailer.test",
    original_id: str = "issue-1.1@mailer.test",
    original_return_path: str | None = None,
    report_id: str = "fbl-2026-12-01-0042@feedback.example.com",
) -> bytes:
    """A mailbox provider's feedback-loop report (ARF): someone pressed "report spam" on our message."""
    return _crlf(
        f"""From: Feedback Loop <fbl@feedback.example.com>
To: {to}
Subject: Complaint about a message from mailer.test
Date: Tue, 1 Dec 2026 11:00:00 +0000
Message-ID: <{report_id}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf-b0undary"

--arf-b0undary
Content-Type: text/plain; charset="us-ascii"

A person using our mail service reported this message as spam.

--arf-b0undary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/2.1
Version: 1
Original-Mail-From: <{original_return_path or "trust-matters@mailer.test"}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Tue, 1 Dec 2026 09:00:03 +0000
Reported-Domain: mailer.test
Source-IP: 192.0.2.10

--arf-b0undary
Content-Type: message/rfc822

{quoted_headers(original_id, recipient, original_return_path)}
Hello from Trust Matters.

--arf-b0undary--
"""
    )


def out_of_office(sender: str, *, to: str = "bounces@mailer.test", how: str = "auto-submitted") -> bytes:
    """An automatic reply: away from the office. `how` picks the sign it carries (an RFC 3834 header, an
    X-Autoreply header, Precedence, only its subject, or a challenge-response system's header)."""
    headers = {
        "auto-submitted": "Auto-Submitted: auto-replied\nSubject: Re: Trust Matters: November\n",
        "x-autoreply": "X-Autoreply: yes\nSubject: Re: Trust Matters: November\n",
        "precedence": "Precedence: auto_reply\nSubject: Re: Trust Matters: November\n",
        "subject": "Subject: Automatic reply: Trust Matters: November\n",
        "challenge": "X-Challenge-Response: yes\nSubject: Please confirm you are a person\n",
    }[how]
    return _crlf(
        f"""From: A Person <{sender}>
To: {to}
Date: Tue, 1 Dec 2026 10:10:00 +0000
Message-ID: <ooo-{how}-771@example.org>
{headers}Content-Type: text/plain; charset=utf-8

I am out of the office until Monday with no access to email.
For anything urgent please contact the ward manager at manager@example.org.
"""
    )


def delayed_dsn(recipient: str, **kwargs) -> bytes:
    """Postfix's warning that a message is still queued: not a bounce."""
    return postfix_dsn(
        recipient,
        action="delayed",
        status="4.4.1",
        diagnostic="X-Postfix; connect to mx.example.org: timed out",
        **kwargs,
    )


def broken_dsn(to: str = "bounces@mailer.test") -> bytes:
    """Says it is a delivery report but its status part names nobody."""
    return _crlf(
        f"""From: MAILER-DAEMON@relay.hospital.test
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-Id: <broken-1@relay.hospital.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="xx"

--xx
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.hospital.test

--xx--
"""
    )


def encoded_status(raw: bytes) -> bytes:
    """The same report with its delivery-status part base64-encoded, as some servers send it."""
    head, rest = raw.split(b"Content-Type: message/delivery-status\r\n\r\n", 1)
    status, tail = rest.split(b"\r\n--", 1)
    encoded = base64.encodebytes(status).replace(b"\n", b"\r\n")
    return (
        head
        + b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + b"\r\n--"
        + tail
    )


def with_another_recipient(raw: bytes, recipient: str, action: str) -> bytes:
    """The same report naming one more recipient, with its own Action."""
    block = f"\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: 2.0.0\r\n".encode()
    head, tail = raw.split(b"\r\nDiagnostic-Code:", 1)
    line, rest = tail.split(b"\r\n\r\n", 1)
    return head + b"\r\nDiagnostic-Code:" + line + b"\r\n" + block + b"\r\n" + rest
