"""The SQL of messaging: claiming due sends, the ledger's state changes, suppressions and the results queries."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.models import (
    Campaign,
    Contact,
    EmailTemplate,
    Flow,
    MessageEvent,
    Order,
    Segment,
    SegmentMember,
    Send,
    Suppression,
)
from storefunnel.models.messaging import EventKind, MessageKind, SendStatus, SuppressionReason

SENDS: sa.Table = Send.__table__  # type: ignore[assignment]
CAP_STATUSES = (SendStatus.sent.value, SendStatus.sending.value, SendStatus.unknown.value)
# Reasons that stop even transactional mail: the address does not exist, or its owner reported us as spam.
HARD_REASONS = (SuppressionReason.hard_bounce.value, SuppressionReason.complaint.value)


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_ignore(session: Session, table: Any, conflict: Sequence[str]) -> Any:
    """INSERT … ON CONFLICT (conflict) DO NOTHING on either backend."""
    ins = postgresql.insert(table) if dialect(session) == "postgresql" else sqlite.insert(table)
    return ins.on_conflict_do_nothing(index_elements=list(conflict))


def normalise_email(email: str) -> str:
    return email.strip().lower()


def suppress(session: Session, workspace_id: int, email: str, reason: SuppressionReason, detail: str = "") -> None:
    """Add an address to the suppression list; an existing entry keeps its (first) reason, unless the new one is a
    hard bounce or complaint and the old one was not: those stop transactional mail too, so they must win."""
    stmt = insert_ignore(session, Suppression.__table__, ["workspace_id", "email"]).values(
        workspace_id=workspace_id,
        email=normalise_email(email),
        reason=reason.value,
        detail=detail[:500],
        created_at=utcnow(),
    )
    session.execute(stmt)
    if reason.value in HARD_REASONS:
        session.execute(
            sa.update(Suppression)
            .where(
                Suppression.workspace_id == workspace_id,
                Suppression.email == normalise_email(email),
                Suppression.reason.not_in(HARD_REASONS),
            )
            .values(reason=reason.value, detail=detail[:500])
            .execution_options(synchronize_session=False)
        )


def claim_due(
    session: Session, now: dt.datetime, limit: int, attempt_id: str, domain: str, workspace_id: int | None = None
) -> list[int]:
    """Move up to ``limit`` due queued sends to ``sending`` under ``attempt_id``; the ids this call won.

    PostgreSQL: the SELECT takes row locks with SKIP LOCKED, so concurrent workers pick disjoint rows (it is a
    statement of its own: inside ``UPDATE … WHERE id IN (subquery)`` the planner may run a LIMIT … SKIP LOCKED
    subquery more than once and claim more than ``limit``). SQLite: two workers may pick the same ids, but the
    UPDATE only takes rows still ``queued`` and holds the database's write lock, so each row is won once and
    RETURNING says by whom. The Message-ID is written by the same UPDATE, before any delivery starts.
    """
    pick = (
        sa.select(Send.id)
        .where(Send.status == SendStatus.queued.value, Send.due_at <= now)
        .order_by(Send.due_at, Send.id)
        .limit(limit)
    )
    if workspace_id is not None:
        pick = pick.where(Send.workspace_id == workspace_id)
    if dialect(session) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    picked = list(session.scalars(pick))
    if not picked:
        return []
    message_id = "<sf." + sa.cast(Send.id, sa.String) + "." + attempt_id + "@" + domain + ">"
    stmt = (
        sa.update(Send)
        .where(Send.id.in_(picked), Send.status == SendStatus.queued.value)
        .values(
            status=SendStatus.sending.value,
            attempt_id=attempt_id,
            claimed_at=now,
            attempts=Send.attempts + 1,
            message_id=message_id,
        )
        .returning(Send.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(int(i) for i in session.scalars(stmt))


def recover_stale(session: Session, cutoff: dt.datetime) -> int:
    """Sends left in ``sending`` by a worker that died: maybe delivered, so ``unknown`` and never sent again."""
    result = session.execute(
        sa.update(Send)
        .where(Send.status == SendStatus.sending.value, Send.claimed_at < cutoff)
        .values(status=SendStatus.unknown.value, detail="the worker stopped during delivery; not resent")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def claimed_rows(session: Session, ids: Sequence[int]) -> list[Any]:
    """Everything needed to write and send each claimed message, in one query."""
    stmt = (
        sa.select(
            Send.id,
            Send.workspace_id,
            Send.contact_id,
            Send.kind,
            Send.message_id,
            Send.campaign_id,
            Send.flow_id,
            Send.flow_step_id,
            Send.template_id,
            Contact.email,
            Contact.email_consent,
            Contact.unsubscribed_at,
            Contact.first_name,
            Contact.last_name,
            Contact.city,
            Contact.region,
            Contact.country,
            Contact.stage,
            EmailTemplate.subject,
            EmailTemplate.html,
            EmailTemplate.text,
            Campaign.name.label("campaign_name"),
            Flow.name.label("flow_name"),
        )
        .join(Contact, sa.and_(Contact.id == Send.contact_id, Contact.workspace_id == Send.workspace_id))
        .join(
            EmailTemplate,
            sa.and_(EmailTemplate.id == Send.template_id, EmailTemplate.workspace_id == Send.workspace_id),
        )
        .outerjoin(Campaign, Campaign.id == Send.campaign_id)
        .outerjoin(Flow, Flow.id == Send.flow_id)
        .where(Send.id.in_(list(ids)))
        .order_by(Send.id)
    )
    found: list[Any] = list(session.execute(stmt).all())
    return found


def suppressed(session: Session, pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """(workspace_id, normalised email) -> suppression reason, for the given addresses."""
    by_ws: dict[int, set[str]] = defaultdict(set)
    for ws, email in pairs:
        by_ws[ws].add(email)
    found: dict[tuple[int, str], str] = {}
    for ws, emails in by_ws.items():
        stmt = sa.select(Suppression.email, Suppression.reason).where(
            Suppression.workspace_id == ws, Suppression.email.in_(sorted(emails))
        )
        for email, reason in session.execute(stmt):
            found[(ws, email)] = reason
    return found


def recent_marketing_counts(
    session: Session, contact_ids: Sequence[int], since: dt.datetime, exclude_attempt: str
) -> dict[int, int]:
    """Marketing messages each contact was sent (or may have been) since ``since``, not counting this batch."""
    if not contact_ids:
        return {}
    stmt = (
        sa.select(Send.contact_id, sa.func.count())
        .where(
            Send.contact_id.in_(list(contact_ids)),
            Send.kind == MessageKind.marketing.value,
            Send.status.in_(CAP_STATUSES),
            Send.claimed_at >= since,
            sa.or_(Send.attempt_id.is_(None), Send.attempt_id != exclude_attempt),
        )
        .group_by(Send.contact_id)
    )
    return {int(c): int(n) for c, n in session.execute(stmt)}


def segment_names(session: Session, contact_ids: Sequence[int]) -> dict[int, list[str]]:
    if not contact_ids:
        return {}
    stmt = (
        sa.select(SegmentMember.contact_id, Segment.name)
        .join(
            Segment, sa.and_(Segment.id == SegmentMember.segment_id, Segment.workspace_id == SegmentMember.workspace_id)
        )
        .where(SegmentMember.contact_id.in_(list(contact_ids)), SegmentMember.left_at.is_(None))
        .order_by(Segment.name)
    )
    out: dict[int, list[str]] = defaultdict(list)
    for cid, name in session.execute(stmt):
        out[int(cid)].append(str(name))
    return out


def finish(
    session: Session, ids: Sequence[int], attempt_id: str, status: SendStatus, detail: str = "", **values: Any
) -> int:
    """Move sends of this attempt out of ``sending``; a row recovered meanwhile (no longer ours) is left alone."""
    if not ids:
        return 0
    result = session.execute(
        sa.update(Send)
        .where(Send.id.in_(list(ids)), Send.attempt_id == attempt_id, Send.status == SendStatus.sending.value)
        .values(status=status.value, detail=detail[:500], **values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def requeue(session: Session, send_id: int, attempt_id: str, due_at: dt.datetime, detail: str) -> int:
    result = session.execute(
        sa.update(Send)
        .where(Send.id == send_id, Send.attempt_id == attempt_id, Send.status == SendStatus.sending.value)
        .values(status=SendStatus.queued.value, attempt_id=None, due_at=due_at, detail=detail[:500])
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def add_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(sa.insert(MessageEvent), list(rows))


# ---- results -------------------------------------------------------------------------------------------------


def results(
    session: Session, workspace_id: int, group: str, attribution_days: int, where: Sequence[Any] = ()
) -> dict[Any, dict[str, int]]:
    """Per ``group`` (``campaign_id``, ``flow_step_id`` or ``template_id``): the ledger and what each message earned.

    Orders are credited to the message whose link the contact clicked last before the order, within
    ``attribution_days`` (last click); cancelled and refunded orders earn nothing.
    """
    key = getattr(Send, group)
    base = [Send.workspace_id == workspace_id, key.is_not(None), *where]
    out: dict[Any, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(
            (
                "queued",
                "sent",
                "delivered",
                "skipped",
                "failed",
                "unknown",
                "bounced",
                "opened",
                "clicked",
                "unsubscribed",
                "complained",
                "orders",
                "revenue",
            ),
            0,
        )
    )
    for k, status, n in session.execute(
        sa.select(key, Send.status, sa.func.count()).where(*base).group_by(key, Send.status)
    ):
        bucket = "queued" if status in (SendStatus.queued.value, SendStatus.sending.value) else status
        out[k][bucket] += int(n)
    event_kinds = (EventKind.bounced, EventKind.opened, EventKind.clicked, EventKind.unsubscribed, EventKind.complained)
    ev = (
        sa.select(key, MessageEvent.kind, sa.func.count(sa.distinct(MessageEvent.send_id)))
        .join(Send, Send.id == MessageEvent.send_id)
        .where(*base, MessageEvent.workspace_id == workspace_id, MessageEvent.kind.in_([e.value for e in event_kinds]))
        .group_by(key, MessageEvent.kind)
    )
    for k, kind, n in session.execute(ev):
        out[k][str(kind)] = int(n)
    for counts in out.values():
        counts["delivered"] = max(0, counts["sent"] - counts["bounced"])
    for k, orders, revenue in session.execute(_attributed(session, workspace_id, key, attribution_days, base)):
        out[k]["orders"] = int(orders)
        out[k]["revenue"] = int(revenue or 0)
    return dict(out)


def _attributed(session: Session, workspace_id: int, key: Any, days: int, base: Sequence[Any]) -> sa.Select[Any]:
    from storefunnel.cycle.engine import add_days
    from storefunnel.cycle.rules import rules_from_settings
    from storefunnel.models import Workspace

    ws = session.get(Workspace, workspace_id)
    cancelled = rules_from_settings(ws.settings if ws else None).cancelled_statuses
    currency = ws.currency if ws else "EUR"
    click = sa.orm.aliased(MessageEvent)
    last_click = (
        sa.select(click.send_id)
        .where(
            click.workspace_id == workspace_id,
            click.contact_id == Order.contact_id,
            click.kind == EventKind.clicked.value,
            click.occurred_at <= Order.placed_at,
            add_days(click.occurred_at.expression, days, dialect(session)) >= Order.placed_at,
        )
        .order_by(click.occurred_at.desc(), click.id.desc())
        .limit(1)
        .correlate(Order)
        .scalar_subquery()
    )
    credited = (
        sa.select(last_click.label("send_id"), Order.total)
        .where(Order.workspace_id == workspace_id, Order.contact_id.is_not(None), Order.status.not_in(cancelled))
        .where(Order.currency == currency)  # revenue in the store's currency; other currencies are not added in
        .where(
            sa.exists().where(
                MessageEvent.workspace_id == workspace_id,
                MessageEvent.contact_id == Order.contact_id,
                MessageEvent.kind == EventKind.clicked.value,
            )
        )
        .subquery()
    )
    return (
        sa.select(key, sa.func.count(), sa.func.sum(credited.c.total))
        .join(Send, Send.id == credited.c.send_id)
        .where(*base)
        .group_by(key)
    )
