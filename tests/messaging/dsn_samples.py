"""Bounces and complaints as real mail systems write them (Postfix, Gmail, Exchange Online, a Yahoo-style feedback
loop), around an original message of ours. Each builder returns the raw bytes a bounce mailbox would hold."""

from __future__ import annotations

import email
import email.policy

CRLF = "\r\n"
UNKNOWN_USER = "smtp; 550 5.1.1 <{rcpt}>: Recipient address\n    rejected: User unknown in virtual mailbox table"


def original(message_id: str, to: str, subject: str = "News for Ana", rewrite_message_id: str | None = None) -> bytes:
    """A message as storefunnel composes it (the headers bounces are matched by)."""
    mid = rewrite_message_id or message_id
    return (
        "From: Shop <hello@shop.example>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 23 Nov 2026 10:15:00 +0000\r\n"
        f"Message-ID: {mid}\r\n"
        f"X-Storefunnel-Message: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "Hi Ana\r\n"
    ).encode()


def headers_of(raw: bytes) -> str:
    """The header section of a message (what text/rfc822-headers carries)."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return text.split("\n\n", 1)[0].replace("\n", CRLF) + CRLF


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", CRLF).encode()


def postfix(
    orig: bytes,
    rcpt: str,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = UNKNOWN_USER,
    queue_id: str = "4Q2x1Z3kQZz9sWm",
    headers_only: bool = False,
) -> bytes:
    """Postfix's bounce (or, with ``action="delayed"``, its delay warning)."""
    boundary = f"{queue_id}.1795428902/mx.shop.example"
    subject = "Delayed Mail (still being retried)" if action == "delayed" else "Undelivered Mail Returned to Sender"
    original_part = (
        "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
        + headers_of(orig).replace(CRLF, "\n")
        if headers_only
        else "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n"
        "Content-Transfer-Encoding: 8bit\n\n" + orig.decode().replace(CRLF, "\n")
    )
    retry = "Will-Retry-Until: Mon, 28 Nov 2026 10:15:01 +0000 (UTC)\n" if action == "delayed" else ""
    text = f"""Return-Path: <>
Received: by mx.shop.example (Postfix)
	id {queue_id}; Mon, 23 Nov 2026 10:15:02 +0000 (UTC)
Date: Mon, 23 Nov 2026 10:15:02 +0000 (UTC)
From: MAILER-DAEMON@mx.shop.example (Mail Delivery System)
Subject: {subject}
To: hello@shop.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <20261123101502.{queue_id}.{action}@mx.shop.example>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.shop.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

                   The mail system

<{rcpt}>: host mx1.example.net[203.0.113.25] said: 550 5.1.1
    <{rcpt}>: Recipient address rejected (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.shop.example
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; hello@shop.example
Arrival-Date: Mon, 23 Nov 2026 10:15:01 +0000 (UTC)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx1.example.net
Diagnostic-Code: {diagnostic.format(rcpt=rcpt)}
{retry}
--{boundary}
{original_part}
--{boundary}--
"""
    return _crlf(text)


def gmail(orig: bytes, rcpt: str) -> bytes:
    """Gmail's "Delivery Status Notification (Failure)", with the original's headers only."""
    msg = email.message_from_bytes(orig, policy=email.policy.compat32)
    boundary = "000000000000f1e2d3c4b5a69788"
    text = f"""Delivered-To: hello@shop.example
Return-Path: <>
Received: by 2002:a05:6a10:8f0a:b0:4d1:1234:5678 with SMTP id x10csp1234567pxb;
        Mon, 23 Nov 2026 02:15:03 -0800 (PST)
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: hello@shop.example
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: {msg["Message-ID"]}
In-Reply-To: {msg["Message-ID"]}
X-Failed-Recipients: {rcpt}
Message-ID: <5f2a9c1e.a1b2c3d4.9f8e.7d6c.GMR@mx.google.com>
Date: Mon, 23 Nov 2026 02:15:03 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="{boundary}"; report-type=delivery-status

--{boundary}
Content-Type: multipart/related; boundary="000000000000f1e2d3c4b5a69799"

--000000000000f1e2d3c4b5a69799
Content-Type: text/html; charset="UTF-8"

<html><body><h2>Address not found</h2><p>Your message wasn't delivered to <b>{rcpt}</b> because the address
couldn't be found, or is unable to receive mail.</p></body></html>

--000000000000f1e2d3c4b5a69799--

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; hello@shop.example
Arrival-Date: Mon, 23 Nov 2026 02:15:02 -0800 (PST)
X-Original-Message-ID: {msg["Message-ID"]}

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (2a00:1450:400c:c0b::1a, the server for the domain example.org.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try
 550-5.1.1 double-checking the recipient's email address for typos or
 550-5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser a1si1234567wrx.1 - gsmtp
Last-Attempt-Date: Mon, 23 Nov 2026 02:15:03 -0800 (PST)

--{boundary}
Content-Type: text/rfc822-headers

{headers_of(orig).replace(CRLF, chr(10))}
--{boundary}--
"""
    return _crlf(text)


def exchange(orig: bytes, rcpt: str, status: str = "5.1.10") -> bytes:
    """Exchange Online's non-delivery report ("Undeliverable: …") with the whole original attached."""
    msg = email.message_from_bytes(orig, policy=email.policy.compat32)
    outer, inner = "_000_AM6PR01MB12345A1B2C3D4E5F6AM6PR01MB1234_", "_002_AM6PR01MB12345A1B2C3D4E5F6AM6PR01MB1234_"
    text = f"""From: postmaster@contoso.onmicrosoft.com
To: <hello@shop.example>
Date: Mon, 23 Nov 2026 10:15:04 +0000
Subject: Undeliverable: {msg["Subject"]}
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{outer}"
Content-Language: en-US
Message-ID: <0a1b2c3d-4e5f-6789-abcd-ef0123456789@AM6PR01MB1234.eurprd01.prod.exchangelabs.com>
In-Reply-To: {msg["Message-ID"]}
References: {msg["Message-ID"]}
Thread-Topic: {msg["Subject"]}
X-MS-Exchange-Message-Is-Ndr:
MIME-Version: 1.0

--{outer}
Content-Type: multipart/alternative; differences=Content-Type;
	boundary="{inner}"

--{inner}
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {rcpt} couldn't be delivered.
{rcpt.split("@")[0]} wasn't found at {rcpt.split("@")[1]}.

--{inner}
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Your message to {rcpt} couldn't be delivered.</p></body></html>

--{inner}--

--{outer}
Content-Type: message/delivery-status

Reporting-MTA: dns;AM6PR01MB1234.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;mail.shop.example
Arrival-Date: Mon, 23 Nov 2026 10:15:03 +0000

Final-Recipient: rfc822;{rcpt}
Action: failed
Status: {status}
Diagnostic-Code: smtp;550 {status} RESOLVER.ADR.RecipientNotFound; Recipient {rcpt} not found by SMTP address
 lookup
Remote-MTA: dns;AM6PR01MB1234.eurprd01.prod.exchangelabs.com
X-Display-Name: {rcpt}

--{outer}
Content-Type: message/rfc822

{orig.decode().replace(CRLF, chr(10))}
--{outer}--
"""
    return _crlf(text)


def arf(orig: bytes, rcpt: str, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 feedback report as a mailbox provider's feedback loop sends it (recipient redacted inside)."""
    redacted = orig.decode().replace(rcpt, "redacted@example.com").replace(CRLF, "\n")
    boundary = "----=_Part_1234567_987654321.1795428900000"
    text = f"""From: Feedback Loop <feedbackloop@fbl.mail.example.com>
To: fbl@shop.example
Subject: FW: complaint about a message from shop.example
Date: Mon, 23 Nov 2026 11:00:00 +0000
Message-ID: <fbl.5e6f7a8b9c0d@fbl.mail.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
	boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP 198.51.100.7 on
Mon, 23 Nov 2026 10:15:01 +0000. For more information about this format please see
http://tools.ietf.org/html/rfc5965.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleMail-Feedback/2.0
Version: 1
Original-Mail-From: <bounces@shop.example>
Original-Rcpt-To: <{rcpt}>
Arrival-Date: Mon, 23 Nov 2026 10:15:01 +0000
Source-IP: 198.51.100.7
Reported-Domain: shop.example

--{boundary}
Content-Type: message/rfc822
Content-Disposition: inline

{redacted}
--{boundary}--
"""
    return _crlf(text)


def mbox(*messages: bytes) -> bytes:
    """Messages in one mbox file, ``From `` lines quoted as mbox readers expect."""
    out = []
    for raw in messages:
        body = raw.replace(b"\r\n", b"\n")
        body = b"\n".join(b">" + ln if ln.startswith(b"From ") else ln for ln in body.split(b"\n"))
        out.append(b"From MAILER-DAEMON Mon Nov 23 10:15:02 2026\n" + body.rstrip(b"\n") + b"\n\n")
    return b"".join(out)
