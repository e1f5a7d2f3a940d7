"""Delivering due sends: claim, check the rules, write, send over pooled SMTP connections, record; at most once.

One batch is three kinds of commit. (1) The claim: due ``queued`` rows become ``sending`` with this attempt's id
and a Message-ID, and in the same transaction rows that may not be sent (no consent, unsubscribed, suppressed,
over the frequency cap, no address) become ``skipped``. (2) Delivery happens outside any transaction. (3) Each
chunk's outcomes are committed: ``sent``; ``queued`` again with a backoff when the server surely did not take
the message; ``failed`` when it refused it; ``unknown`` when the connection broke after the body went out.
A worker killed between (1) and (3) leaves rows in ``sending``; after the lease they become ``unknown`` and are
never sent again (see docs/email.md: a lost message is preferred to a duplicate).
"""

from __future__ import annotations

import binascii
import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefunnel.config import get_settings
from storefunnel.db import utcnow
from storefunnel.errors import AppError, Invalid
from storefunnel.messaging import links, repository, templates
from storefunnel.messaging.settings import MessagingSettings, messaging_settings
from storefunnel.messaging.smtp import Outcome, SmtpConfig, SmtpConnection
from storefunnel.models import Send, Workspace
from storefunnel.models.messaging import EventKind, MessageKind, SendStatus, SuppressionReason

log = logging.getLogger(__name__)
CHUNK = 50


def mail_domain() -> str:
    host = urlsplit(get_settings().public_url).hostname or "localhost"
    return "localhost" if host.replace(".", "").isdigit() else host


@dataclass
class BatchStats:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0

    def add(self, other: BatchStats) -> None:
        for name in ("claimed", "sent", "skipped", "retried", "failed", "unknown"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Prepared:
    send_id: int
    workspace_id: int
    contact_id: int
    kind: str
    to_email: str
    message_id: str
    flow_name: str | None
    subject: str
    html: str
    text: str
    context: dict[str, Any]
    ws: MessagingSettings
    store: str


@dataclass
class Delivered:
    prepared: Prepared
    outcome: Outcome


@dataclass
class SenderOptions:
    batch: int = 500
    connections: int = 4
    max_attempts: int = 8
    base_backoff_s: float = 30.0
    lease_s: float = 600.0
    workspace_id: int | None = None
    on_chunk: Callable[[int], None] | None = field(default=None, repr=False)


def backoff(attempts: int, base: float) -> dt.timedelta:
    return dt.timedelta(seconds=min(3600.0, base * 2 ** max(0, attempts - 1)))


class Sender:
    """Sends due messages with ``options.connections`` SMTP connections in parallel, reused across batches."""

    def __init__(self, maker: sessionmaker[Session], smtp: SmtpConfig, options: SenderOptions | None = None) -> None:
        self.maker = maker
        self.smtp = smtp
        self.options = options or SenderOptions()
        self._pool = ThreadPoolExecutor(max_workers=self.options.connections, thread_name_prefix="smtp")
        self._connections: dict[int, SmtpConnection] = {}
        self.domain = mail_domain()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for conn in self._connections.values():
            conn.close()

    def recover(self, now: dt.datetime | None = None) -> int:
        now = now or utcnow()
        with self.maker() as session, session.begin():
            return repository.recover_stale(session, now - dt.timedelta(seconds=self.options.lease_s))

    # ---- one batch ---------------------------------------------------------------------------------------------

    def run_once(self, now: dt.datetime | None = None) -> BatchStats:
        """Claim and deliver one batch; the number claimed is 0 when nothing is due."""
        now = now or utcnow()
        attempt = uuid.uuid4().hex
        stats = BatchStats()
        with self.maker() as session, session.begin():
            ids = repository.claim_due(
                session, now, self.options.batch, attempt, self.domain, self.options.workspace_id
            )
            stats.claimed = len(ids)
            if not ids:
                return stats
            ready, skipped = self._prepare(session, ids, attempt, now)
            stats.skipped = skipped
        chunks = [ready[i : i + CHUNK] for i in range(0, len(ready), CHUNK)]
        for delivered in self._pool.map(self._deliver_chunk, chunks):
            stats.add(self._record(delivered, attempt))
            if self.options.on_chunk is not None:
                self.options.on_chunk(len(delivered))
        return stats

    def _prepare(
        self, session: Session, ids: Sequence[int], attempt: str, now: dt.datetime
    ) -> tuple[list[Prepared], int]:
        """Apply the rules to the claimed rows (skipping those that may not be sent) and build their contexts."""
        from storefunnel.messaging.service import related_products

        rows = repository.claimed_rows(session, ids)
        ws_ids = sorted({int(r.workspace_id) for r in rows})
        workspaces = {w.id: w for w in session.scalars(sa.select(Workspace).where(Workspace.id.in_(ws_ids)))}
        settings = {wid: messaging_settings(w.settings) for wid, w in workspaces.items()}
        blocked = repository.suppressed(
            session, [(int(r.workspace_id), repository.normalise_email(r.email)) for r in rows if r.email]
        )
        since = now - dt.timedelta(days=7)
        counts = repository.recent_marketing_counts(session, sorted({int(r.contact_id) for r in rows}), since, attempt)
        skips: dict[str, list[int]] = defaultdict(list)
        keep: list[sa.Row[Any]] = []
        for r in rows:
            reason = self._refusal(r, blocked, counts, settings[int(r.workspace_id)])
            if reason:
                skips[reason].append(int(r.id))
                continue
            if r.kind == MessageKind.marketing.value:
                counts[int(r.contact_id)] = counts.get(int(r.contact_id), 0) + 1
            keep.append(r)
        for reason, skip_ids in skips.items():
            repository.finish(session, skip_ids, attempt, SendStatus.skipped, reason)
        needs_segments = [int(r.contact_id) for r in keep if templates.uses_segments(r.subject, r.html, r.text)]
        segments = repository.segment_names(session, needs_segments)
        related: dict[int, list[dict[str, Any]]] = {}
        for wid in ws_ids:
            wanted = [
                int(r.contact_id)
                for r in keep
                if int(r.workspace_id) == wid and templates.uses_related_products(r.subject, r.html, r.text)
            ]
            if wanted:
                related.update(related_products(session, wid, wanted))
        prepared = []
        for r in keep:
            ws = workspaces[int(r.workspace_id)]
            unsub = links.unsubscribe_url(int(r.workspace_id), int(r.contact_id), int(r.id))
            context = {
                "contact": templates.contact_context(r._mapping),
                "segments": segments.get(int(r.contact_id), []),
                "stage": r.stage or "",
                "related_products": related.get(int(r.contact_id), []),
                "store": ws.name,
                "unsubscribe_url": unsub,
            }
            prepared.append(
                Prepared(
                    send_id=int(r.id),
                    workspace_id=int(r.workspace_id),
                    contact_id=int(r.contact_id),
                    kind=str(r.kind),
                    to_email=str(r.email),
                    message_id=str(r.message_id),
                    flow_name=r.flow_name,
                    subject=r.subject,
                    html=r.html,
                    text=r.text,
                    context=context,
                    ws=settings[int(r.workspace_id)],
                    store=ws.name,
                )
            )
        addressed = [{"id": int(r.id), "to_email": r.email} for r in rows if r.email]
        if addressed:
            # The address used (or refused) at claim time, for the record; ORM bulk UPDATE by primary key.
            session.execute(sa.update(Send), addressed)
        return prepared, sum(len(v) for v in skips.values())

    @staticmethod
    def _refusal(
        r: Any, blocked: dict[tuple[int, str], str], counts: dict[int, int], ws: MessagingSettings
    ) -> str | None:
        if not r.email:
            return "no email address"
        reason = blocked.get((int(r.workspace_id), repository.normalise_email(r.email)))
        if r.kind != MessageKind.marketing.value:
            return f"suppressed: {reason}" if reason in repository.HARD_REASONS else None
        if reason is not None:
            return f"suppressed: {reason}"
        if r.unsubscribed_at is not None:
            return "unsubscribed"
        if not r.email_consent:
            return "no marketing consent"
        if counts.get(int(r.contact_id), 0) >= ws.frequency_cap:
            return f"frequency cap: {ws.frequency_cap} marketing emails in 7 days"
        return None

    # ---- delivery (in the SMTP threads) -----------------------------------------------------------------------------

    def _connection(self) -> SmtpConnection:
        import threading

        key = threading.get_ident()
        conn = self._connections.get(key)
        if conn is None:
            conn = self._connections[key] = SmtpConnection(self.smtp)
        return conn

    def _deliver_chunk(self, chunk: Sequence[Prepared]) -> list[Delivered]:
        conn = self._connection()
        out = []
        for p in chunk:
            try:
                raw = compose(p, self.domain)
            except AppError as exc:
                out.append(Delivered(p, Outcome("rejected", 0, f"template: {exc.detail}")))
                continue
            out.append(Delivered(p, conn.deliver(envelope_sender(p), p.to_email, raw)))
        return out

    # ---- recording ----------------------------------------------------------------------------------------------

    def _record(self, delivered: Sequence[Delivered], attempt: str) -> BatchStats:
        stats = BatchStats()
        now = utcnow()
        with self.maker() as session, session.begin():
            sent = [d.prepared.send_id for d in delivered if d.outcome.result == "sent"]
            stats.sent = repository.finish(session, sent, attempt, SendStatus.sent, sent_at=now)
            ambiguous = [d.prepared.send_id for d in delivered if d.outcome.result == "ambiguous"]
            if ambiguous:
                reason = next(d.outcome.detail for d in delivered if d.outcome.result == "ambiguous")
                stats.unknown = repository.finish(session, ambiguous, attempt, SendStatus.unknown, reason)
            events: list[dict[str, Any]] = []
            for d in delivered:
                p, o = d.prepared, d.outcome
                if o.result == "retry":
                    attempts = session.scalar(sa.select(Send.attempts).where(Send.id == p.send_id)) or 1
                    if attempts >= self.options.max_attempts:
                        stats.failed += repository.finish(
                            session, [p.send_id], attempt, SendStatus.failed, f"gave up after {attempts}: {o.detail}"
                        )
                    else:
                        due = now + backoff(attempts, self.options.base_backoff_s)
                        stats.retried += repository.requeue(session, p.send_id, attempt, due, o.detail)
                elif o.result == "rejected":
                    stats.failed += repository.finish(
                        session, [p.send_id], attempt, SendStatus.failed, f"{o.code} {o.detail}".strip()
                    )
                    if o.permanent_recipient_failure:
                        repository.suppress(
                            session, p.workspace_id, p.to_email, SuppressionReason.hard_bounce, o.detail
                        )
                        events.append(_event(p, EventKind.bounced, now, f"{o.code} {o.detail}"))
            repository.add_events(session, events)
            self._thank_you_touches(session, [d.prepared for d in delivered if d.outcome.result == "sent"])
        return stats

    @staticmethod
    def _thank_you_touches(session: Session, sent: Sequence[Prepared]) -> None:
        """A sent thank-you is a touch the cycle engine counts as thanking the customer."""
        from storefunnel.cycle.rules import rules_from_settings
        from storefunnel.messaging import tracking

        flows = [p for p in sent if p.flow_name]
        if not flows:
            return
        rules: dict[int, str] = {}
        for p in flows:
            if p.workspace_id not in rules:
                ws = session.get(Workspace, p.workspace_id)
                rules[p.workspace_id] = rules_from_settings(ws.settings if ws else None).thank_you_flow
            if p.flow_name != rules[p.workspace_id]:
                continue
            send = session.get(Send, p.send_id)
            if send is not None:
                props = tracking.touch_properties(session, send)
                tracking.write_touch(session, send, tracking.SENT_THANKS, props, None, f"email-thanks:{send.id}")


def _event(p: Prepared, kind: EventKind, at: dt.datetime, detail: str = "") -> dict[str, Any]:
    return {
        "workspace_id": p.workspace_id,
        "send_id": p.send_id,
        "contact_id": p.contact_id,
        "kind": kind.value,
        "occurred_at": at,
        "url": None,
        "detail": detail[:500],
    }


def envelope_sender(p: Prepared) -> str:
    return parseaddr(p.ws.from_address or f"noreply@{mail_domain()}")[1] or f"noreply@{mail_domain()}"


def _header(value: str) -> str:
    """A header value as 7-bit text: as is when it is short ASCII, else RFC 2047 encoded words."""
    if value.isascii() and len(value) < 900 and "\n" not in value and "\r" not in value:
        return value
    return Header(value, "utf-8", maxlinelen=76).encode()


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (binascii is C: the composing cost per message stays small)."""
    return binascii.b2a_qp(text.replace("\r\n", "\n").encode(), istext=True).replace(b"\n", b"\r\n")


def compose(p: Prepared, domain: str) -> bytes:
    """The RFC 5322 message: text and HTML parts, and for marketing the unsubscribe link and RFC 8058 headers.

    Written directly as bytes: ``email.message.EmailMessage`` with the SMTP policy costs milliseconds per
    message in header folding, which at campaign size is most of the sending time.
    """
    rendered = templates.render(p.subject, p.html, p.text, p.context)
    if not p.to_email.isascii():
        raise Invalid("to_email: internationalised addresses (SMTPUTF8) are not supported")
    sender = p.ws.from_address or formataddr((p.store, f"noreply@{domain}"), charset="utf-8")
    if not sender.isascii():
        name, addr = parseaddr(sender)
        sender = formataddr((name, addr), charset="utf-8")
    headers = [
        f"From: {sender}",
        f"To: {p.to_email}",
        f"Subject: {_header(rendered.subject)}",
        f"Date: {format_datetime(utcnow())}",
        f"Message-ID: {p.message_id}",
        # The same id again: some relays rewrite Message-ID, and bounces are matched by it (messaging/dsn.py).
        f"X-Storefunnel-Message: {p.message_id}",
        "MIME-Version: 1.0",
    ]
    if p.ws.reply_to:
        headers.append(f"Reply-To: {_header(p.ws.reply_to)}")
    text, html = rendered.text, rendered.html
    if p.kind == MessageKind.marketing.value:
        unsub = p.context["unsubscribe_url"]
        mailto = p.ws.unsubscribe_mailto or envelope_sender(p)
        headers.append(f"List-Unsubscribe: <{unsub}>, <mailto:{mailto}?subject=unsubscribe>")
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        if unsub not in text:
            text = (text + "\n\n" if text else "") + f"Unsubscribe: {unsub}\n"
        if html and unsub not in html:
            footer = f'<p style="font-size:12px;color:#666"><a href="{unsub}">Unsubscribe</a></p>'
            idx = html.lower().rfind("</body>")
            html = html[:idx] + footer + html[idx:] if idx >= 0 else html + footer
    part_headers = b"Content-Transfer-Encoding: quoted-printable\r\n"
    text_part = b'Content-Type: text/plain; charset="utf-8"\r\n' + part_headers + b"\r\n" + _qp(text or " ")
    head = "\r\n".join(headers).encode()
    if not html:
        return head + b"\r\n" + text_part + b"\r\n"
    html = links.track_html(html, p.send_id)
    html_part = b'Content-Type: text/html; charset="utf-8"\r\n' + part_headers + b"\r\n" + _qp(html)
    boundary = f"=_sf_{uuid.uuid4().hex}".encode()
    return b"".join(
        [
            head,
            b'\r\nContent-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
            b"--" + boundary + b"\r\n",
            text_part,
            b"\r\n--" + boundary + b"\r\n",
            html_part,
            b"\r\n--" + boundary + b"--\r\n",
        ]
    )
