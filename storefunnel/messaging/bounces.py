"""Acting on bounces and complaints (see ``dsn.py`` for reading them): record, suppress, count soft bounces.

A report is matched to one of this workspace's sends by the ``<sf.SEND.ATTEMPT@host>`` id in the original
message's headers; a report that matches nothing changes nothing (it may be about mail the store sent by hand,
or forged backscatter). For a matched send:

* ``Action: failed`` with a 5.x.x status is a **hard bounce**: a ``bounced`` event and the address on the
  suppression list (``hard_bounce``), which stops every message, transactional ones too.
* ``Action: failed`` with a 4.x.x status is a **soft bounce**: a ``bounced`` event. When the last
  ``soft_bounce_limit`` messages sent to the address (3 by default, a messaging setting) all soft-bounced and none
  was opened, clicked or reported delivered, the address is suppressed (``soft_bounce``): no more marketing.
* ``Action: delayed`` is a ``delayed`` event only (the relay is still trying); ``delivered``/``relayed``/
  ``expanded`` a ``delivered`` event, which also breaks a run of soft bounces.
* A feedback report (ARF) of type abuse, fraud or virus is a **complaint**: a ``complained`` event, the address
  suppressed (``complaint``), consent withdrawn.

Each event carries a dedupe key made from the report's identity, so the same report read twice (from the
mailbox and again from the API) changes nothing the second time.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.messaging import repository, service
from storefunnel.messaging.dsn import COMPLAINT_TYPES, RecipientStatus, Report
from storefunnel.messaging.settings import messaging_settings
from storefunnel.models import MessageEvent, Send, Workspace
from storefunnel.models.messaging import EventKind, SendStatus, SuppressionReason

MAX_REPORT_BYTES = 5 * 1024 * 1024
SIGNS_OF_LIFE = (EventKind.opened.value, EventKind.clicked.value, EventKind.delivered.value)


@dataclass(frozen=True)
class Outcome:
    """What one report (or one recipient of a report) did."""

    kind: str  # hard_bounce, soft_bounce, delayed, delivered, complaint, ignored
    email: str | None
    send_id: int | None
    status: str
    matched: bool
    suppressed: bool
    duplicate: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _matched(
    kind: str, send: Send, email: str, status: str, detail: str, suppressed: bool = False, duplicate: bool = False
) -> Outcome:
    return Outcome(kind, email, send.id, status, True, suppressed, duplicate, detail)


def _match(session: Session, workspace_id: int, report: Report) -> Send | None:
    """The send the report is about: its id and attempt must both agree with what we sent."""
    for ref in report.references:
        send = session.scalar(sa.select(Send).where(Send.workspace_id == workspace_id, Send.id == ref.send_id))
        if send is not None and (send.message_id or "").lower().startswith(f"<sf.{send.id}.{ref.attempt_id}@"):
            return send
    return None


def _key(report: Report, what: str) -> str:
    return "rpt:" + hashlib.sha256(f"{report.report_id}|{what}".encode()).hexdigest()


def _record(session: Session, send: Send, kind: EventKind, key: str, status: str = "", detail: str = "") -> bool:
    """Insert the event unless this report was seen before; True when it is new."""
    stmt = repository.insert_ignore(session, MessageEvent.__table__, ["workspace_id", "dedupe_key"]).values(
        workspace_id=send.workspace_id,
        send_id=send.id,
        contact_id=send.contact_id,
        kind=kind.value,
        occurred_at=utcnow(),
        url=None,
        detail=detail[:500],
        status_code=status,
        dedupe_key=key,
    )
    return session.execute(stmt.returning(MessageEvent.__table__.c.id)).first() is not None


def soft_bounce_run(session: Session, send: Send, limit: int) -> int:
    """How many of the last ``limit`` messages to this address soft-bounced in a row, newest first.

    A message that was opened, clicked or reported delivered ends the run, and so does a message with no
    bounce (yet): a report that comes later counts again then.
    """
    email = repository.normalise_email(send.to_email or "")
    recent = list(
        session.scalars(
            sa.select(Send.id)
            .where(
                Send.workspace_id == send.workspace_id,
                Send.contact_id == send.contact_id,
                sa.func.lower(Send.to_email) == email,
                Send.status.in_([SendStatus.sent.value, SendStatus.unknown.value]),
            )
            .order_by(Send.claimed_at.desc(), Send.id.desc())
            .limit(limit)
        )
    )
    if not recent:
        return 0
    events: dict[int, set[str]] = {i: set() for i in recent}
    rows = session.execute(
        sa.select(MessageEvent.send_id, MessageEvent.kind, MessageEvent.status_code).where(
            MessageEvent.workspace_id == send.workspace_id, MessageEvent.send_id.in_(recent)
        )
    )
    for sid, kind, status in rows:
        if kind == EventKind.bounced.value and str(status or "").startswith("4"):
            events[int(sid)].add("soft")
        elif kind in SIGNS_OF_LIFE:
            events[int(sid)].add("alive")
    run = 0
    for sid in recent:
        if events[sid] != {"soft"}:
            break
        run += 1
    return run


def _pick(send: Send, recipients: tuple[RecipientStatus, ...]) -> tuple[RecipientStatus, ...]:
    """The blocks about the address we sent to; all of them when none names it (a forward changed it)."""
    ours = repository.normalise_email(send.to_email or "")
    named = tuple(r for r in recipients if ours in (r.recipient, r.original_recipient))
    return named or recipients


def _bounce(session: Session, send: Send, report: Report, r: RecipientStatus, limit: int) -> Outcome:
    email = repository.normalise_email(send.to_email or r.recipient)
    what = f"{send.id}|{r.recipient}|{r.action}|{r.status}"
    if r.action == "delayed":
        new = _record(session, send, EventKind.delayed, _key(report, what), r.status, r.diagnostic)
        return _matched("delayed", send, email, r.status, r.diagnostic, duplicate=not new)
    if r.action in ("delivered", "relayed", "expanded"):
        new = _record(session, send, EventKind.delivered, _key(report, what), r.status, r.diagnostic)
        return _matched("delivered", send, email, r.status, r.action, duplicate=not new)
    hard = r.permanent
    kind = "hard_bounce" if hard else "soft_bounce"
    new = _record(session, send, EventKind.bounced, _key(report, what), r.status, r.diagnostic)
    if not new:
        return _matched(kind, send, email, r.status, r.diagnostic, duplicate=True)
    note = f"bounced ({'hard' if hard else 'soft'}) {r.status}: {r.diagnostic}"
    if send.status in (SendStatus.sent.value, SendStatus.unknown.value):
        send.detail = note[:500]
    suppressed = False
    if hard:
        repository.suppress(session, send.workspace_id, email, SuppressionReason.hard_bounce, note)
        suppressed = True
    else:
        session.flush()
        if soft_bounce_run(session, send, limit) >= limit:
            detail = f"{limit} soft bounces in a row, the last {r.status}: {r.diagnostic}"
            repository.suppress(session, send.workspace_id, email, SuppressionReason.soft_bounce, detail)
            suppressed = True
    return _matched(kind, send, email, r.status, r.diagnostic, suppressed=suppressed)


def _complaint(session: Session, send: Send, report: Report) -> Outcome:
    email = repository.normalise_email(send.to_email or report.original_rcpt)
    if report.feedback_type not in COMPLAINT_TYPES:
        why = f"feedback type {report.feedback_type!r} is not a complaint"
        return _matched("ignored", send, email, "", why)
    detail = f"feedback report ({report.feedback_type}) from {report.reporting or 'a feedback loop'}"
    new = _record(session, send, EventKind.complained, _key(report, f"{send.id}|complaint"), "", detail)
    if not new:
        return _matched("complaint", send, email, "", detail, duplicate=True)
    repository.suppress(session, send.workspace_id, email, SuppressionReason.complaint, detail)
    service._stop_marketing(session, send.workspace_id, email)
    return _matched("complaint", send, email, "", detail, suppressed=True)


def apply(session: Session, workspace_id: int, report: Report) -> list[Outcome]:
    """Record what the report says about this workspace's send; one outcome per recipient block (or complaint)."""
    send = _match(session, workspace_id, report)
    if send is None:
        email = report.original_rcpt or (report.recipients[0].recipient if report.recipients else None)
        status = report.recipients[0].status if report.recipients else ""
        why = (
            "the report names no message of ours (no Message-ID or X-Storefunnel-Message header of the original)"
            if not report.references
            else "no message of this workspace has that Message-ID"
        )
        return [Outcome("ignored", email, None, status, False, False, False, why + ": nothing changed")]
    if report.kind == "feedback-report":
        out = [_complaint(session, send, report)]
    else:
        ws = session.get(Workspace, workspace_id)
        limit = messaging_settings(ws.settings if ws else None).soft_bounce_limit
        out = [_bounce(session, send, report, r, limit) for r in _pick(send, report.recipients)]
    session.flush()
    return out


def summarise(outcomes: list[Outcome]) -> dict[str, int]:
    counts = dict.fromkeys(
        ("hard_bounce", "soft_bounce", "delayed", "delivered", "complaint", "ignored", "suppressed", "duplicate"), 0
    )
    for o in outcomes:
        counts[o.kind] += 1
        counts["suppressed"] += int(o.suppressed)
        counts["duplicate"] += int(o.duplicate)
    return counts
