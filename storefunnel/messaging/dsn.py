"""Reading what the mail system sends back: RFC 3464 delivery status notifications and RFC 5965 feedback reports.

A bounce is a ``multipart/report; report-type=delivery-status`` message: a human-readable part, a
``message/delivery-status`` part (one block of per-message fields, then one block per recipient with
``Final-Recipient``, ``Action`` and ``Status``) and, usually, the original message or its headers
(``message/rfc822`` or ``text/rfc822-headers``). A complaint from a feedback loop is a ``multipart/report;
report-type=feedback-report`` (ARF) with a ``message/feedback-report`` part. Only the stdlib ``email`` package is
used; nothing here touches the database (that is ``bounces.py``).

The original message is recognised by its ``Message-ID`` or ``X-Storefunnel-Message`` header, both of the form
``<sf.SEND_ID.ATTEMPT_ID@host>`` (the second survives relays that rewrite the first).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from typing import Literal

from storefunnel.errors import AppError, Invalid

ReportKind = Literal["delivery-status", "feedback-report"]
ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
# RFC 3463: class.subject.detail, class 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
OUR_ID = re.compile(r"<?sf\.(\d{1,19})\.([0-9a-f]{32})@[^>\s]+>?", re.IGNORECASE)
DSN_PARTS = ("message/delivery-status", "message/global-delivery-status")
FEEDBACK_PARTS = ("message/feedback-report",)
ORIGINAL_MESSAGE = ("message/rfc822", "message/global")
ORIGINAL_HEADERS = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
# ARF feedback types that mean "the recipient does not want this" (not-spam and auth-failure do not).
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus"})


class MalformedReport(AppError):
    """The bytes are not an email message at all (empty, or no header fields)."""

    status, code, title = 400, "malformed-report", "Malformed report"


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a delivery status notification."""

    recipient: str  # Final-Recipient address, lowercased
    original_recipient: str  # Original-Recipient address, if given
    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # "5.1.1"
    diagnostic: str  # Diagnostic-Code, e.g. "smtp; 550 5.1.1 <x@y>: Recipient address rejected"

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")


@dataclass(frozen=True)
class OurMessage:
    """A reference to one of our messages found in the report: the send id and the attempt that sent it."""

    send_id: int
    attempt_id: str


@dataclass(frozen=True)
class Report:
    kind: ReportKind
    report_id: str  # what makes this report the same report when it comes again
    references: tuple[OurMessage, ...]
    recipients: tuple[RecipientStatus, ...] = ()
    feedback_type: str = ""
    original_rcpt: str = ""
    reporting: str = ""  # Reporting-MTA or the feedback User-Agent, for the record
    notes: tuple[str, ...] = field(default_factory=tuple)


def _clean(value: object) -> str:
    """A header value on one line (folded lines joined), without surrounding spaces."""
    return re.sub(r"\s*\r?\n[ \t]+", " ", str(value or "")).strip()


def _address(value: str) -> str:
    """``rfc822; <User@Example.com>`` -> ``user@example.com``; other address types are kept as given."""
    kind, sep, rest = value.partition(";")
    addr = rest if sep else kind
    return addr.strip().strip("<>").strip().lower()


def _payload_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "".join(p.as_string() for p in payload if isinstance(p, Message))
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(payload or "")


def _blocks(text: str) -> list[Message]:
    """Header blocks separated by blank lines (the body of a delivery-status or feedback-report part)."""
    text = text.replace("\r\n", "\n")
    out = []
    for chunk in re.split(r"\n[ \t]*\n", text):
        if chunk.strip():
            out.append(HeaderParser(policy=email.policy.compat32).parsestr(chunk.strip("\n") + "\n"))
    return out


def _field_blocks(part: Message) -> list[Message]:
    """The blocks of a ``message/delivery-status`` part, whether the stdlib split them already or not."""
    payload = part.get_payload()
    if isinstance(payload, list) and part.get_content_type() == "message/delivery-status":
        blocks: list[Message] = []
        for item in payload:
            if not isinstance(item, Message):
                continue
            if item.keys():  # the parser makes an empty block of trailing blank lines
                blocks.append(item)
            rest = item.get_payload()
            if isinstance(rest, str) and rest.strip():  # blocks the parser left in the body (odd line endings)
                blocks.extend(_blocks(rest))
        return blocks
    return _blocks(_payload_text(part))


def _references(headers: list[Message], names: tuple[str, ...]) -> tuple[OurMessage, ...]:
    found: dict[int, OurMessage] = {}
    for h in headers:
        for name in names:
            for value in h.get_all(name) or []:
                for m in OUR_ID.finditer(_clean(value)):
                    ref = OurMessage(int(m.group(1)), m.group(2).lower())
                    found.setdefault(ref.send_id, ref)
    return tuple(found.values())


def _original_headers(report: Message) -> list[Message]:
    """The original message's header fields, from a message/rfc822 or text/rfc822-headers part."""
    out: list[Message] = []
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype in ORIGINAL_MESSAGE:
            payload = part.get_payload()
            if isinstance(payload, list):
                out.extend(p for p in payload if isinstance(p, Message))
            else:
                out.append(HeaderParser(policy=email.policy.compat32).parsestr(_payload_text(part)))
        elif ctype in ORIGINAL_HEADERS:
            out.append(HeaderParser(policy=email.policy.compat32).parsestr(_payload_text(part)))
    return out


def _identity(msg: Message, part_text: str, refs: tuple[OurMessage, ...]) -> str:
    """The report's own Message-ID when it has one; else a digest of what it reports."""
    own = _clean(msg.get("Message-ID"))
    if own:
        return "mid:" + own.lower()
    normal = "\n".join(line.strip() for line in part_text.replace("\r\n", "\n").split("\n") if line.strip())
    basis = normal + "|" + ",".join(f"{r.send_id}.{r.attempt_id}" for r in refs)
    return "sha256:" + hashlib.sha256(basis.encode()).hexdigest()


def _recipient(block: Message, i: int) -> RecipientStatus:
    final = _clean(block.get("Final-Recipient"))
    if not final:
        raise Invalid(f"Final-Recipient: missing in per-recipient block {i + 1} of the delivery-status part")
    action = _clean(block.get("Action")).lower().split(" ")[0]
    if action not in ACTIONS:
        shown = _clean(block.get("Action")) or "missing"
        raise Invalid(
            f"Action: {shown!r} for {_address(final)} is not one of failed, delayed, delivered, relayed, expanded"
        )
    status_value = _clean(block.get("Status"))
    m = STATUS.match(status_value)
    if not m:
        raise Invalid(f"Status: {status_value or 'missing'!r} for {_address(final)} is not an RFC 3463 code like 5.1.1")
    return RecipientStatus(
        recipient=_address(final),
        original_recipient=_address(_clean(block.get("Original-Recipient"))),
        action=action,
        status=".".join(m.groups()),
        diagnostic=_clean(block.get("Diagnostic-Code"))[:400],
    )


def parse(raw: bytes) -> Report:
    """Read one report; raises ``MalformedReport`` (400) or ``Invalid`` (422) with a message naming the problem."""
    if not raw.strip():
        raise MalformedReport("body: empty; send the bounce or complaint message itself (message/rfc822)")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not msg.keys():
        raise MalformedReport("body: not an email message (it starts with no header fields)")
    ctype = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "", header="content-type") or "").lower()
    if ctype != "multipart/report":
        raise Invalid(
            f"Content-Type: {ctype} is not a report; expected multipart/report with report-type=delivery-status "
            "(RFC 3464) or report-type=feedback-report (RFC 5965)"
        )
    if report_type not in ("delivery-status", "feedback-report"):
        raise Invalid(
            f"report-type: {report_type or 'missing'!r}; expected delivery-status (a bounce) or feedback-report "
            "(a complaint)"
        )
    if not msg.is_multipart():
        raise Invalid("multipart/report: the message has no parts (is the boundary parameter right?)")
    parts = [p for p in msg.walk() if p is not msg]
    # The original's headers first; then what some servers add: Exchange answers "In-Reply-To" the original,
    # Gmail repeats its id as X-Original-Message-ID in the per-message fields.
    refs = _references(_original_headers(msg), ("X-Storefunnel-Message", "Message-ID")) or _references(
        [msg], ("In-Reply-To", "References")
    )
    if report_type == "delivery-status":
        status_part = next((p for p in parts if p.get_content_type() in DSN_PARTS), None)
        if status_part is None:
            raise Invalid("message/delivery-status: the report has no delivery-status part")
        blocks = _field_blocks(status_part)
        if len(blocks) < 2:
            raise Invalid(
                "message/delivery-status: no per-recipient block (Final-Recipient, Action, Status) after the "
                "per-message fields"
            )
        recipients = tuple(_recipient(b, i) for i, b in enumerate(blocks[1:]))
        refs = refs or _references(blocks[:1], ("X-Original-Message-ID",))
        return Report(
            kind="delivery-status",
            report_id=_identity(msg, _payload_text(status_part), refs),
            references=refs,
            recipients=recipients,
            reporting=_clean(blocks[0].get("Reporting-MTA")),
        )
    feedback = next((p for p in parts if p.get_content_type() in FEEDBACK_PARTS), None)
    if feedback is None:
        raise Invalid("message/feedback-report: the report has no feedback-report part")
    fields = _field_blocks(feedback)
    first = fields[0] if fields else Message()
    feedback_type = _clean(first.get("Feedback-Type")).lower()
    if not feedback_type:
        raise Invalid("Feedback-Type: missing in the feedback-report part")
    return Report(
        kind="feedback-report",
        report_id=_identity(msg, _payload_text(feedback), refs),
        references=refs,
        feedback_type=feedback_type,
        original_rcpt=_address(_clean(first.get("Original-Rcpt-To"))),
        reporting=_clean(first.get("User-Agent")),
    )
