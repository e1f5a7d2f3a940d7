"""A contact's timeline: touches, orders and stage changes merged newest first, paginated in SQL.

Each branch reads at most ``limit + 1`` rows from its own (workspace_id, contact_id, time) index, already
cut at the cursor; a UNION ALL merges the three short lists. Only the keys go through the union; the page's
rows are then fetched by id, one query per kind, so the cost is O(limit) whatever the contact's history.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.contacts.schemas import OrderItem, StageChangeItem, TimelineItem, TouchItem
from storefunnel.errors import Invalid
from storefunnel.limits import MAX_ID
from storefunnel.models import Order, StageChange, Touch

# Ties on time are broken by type then id, all descending; the cursor is the (time, type, id) of the last item.
_BRANCHES: tuple[tuple[str, Any, Any], ...] = (
    ("touch", Touch, Touch.occurred_at),
    ("stage_change", StageChange, StageChange.changed_at),
    ("order", Order, Order.placed_at),
)
Cursor = tuple[dt.datetime, str, int]


def encode_cursor(at: dt.datetime, kind: str, row_id: int) -> str:
    raw = f"tl|{at.astimezone(dt.UTC).isoformat()}|{kind}|{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, at, kind, row_id = raw.split("|")
        when = dt.datetime.fromisoformat(at)
        last_id = int(row_id)
        if tag != "tl" or when.tzinfo is None or kind not in {b[0] for b in _BRANCHES} or not 0 < last_id <= MAX_ID:
            raise ValueError(raw)
        return when, kind, last_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise Invalid("cursor: not a cursor this API returned", errors=[{"field": "cursor"}]) from None


def _after_cursor(kind: str, time_col: Any, id_col: Any, cursor: Cursor) -> Any:
    """``(time, kind, id) < cursor`` with ``kind`` a constant of the branch, so the index on time still applies."""
    at, c_kind, c_id = cursor
    if kind < c_kind:
        return time_col <= at
    if kind > c_kind:
        return time_col < at
    return sa.or_(time_col < at, sa.and_(time_col == at, id_col < c_id))


def page_keys(
    session: Session, workspace_id: int, contact_id: int, cursor: Cursor | None, limit: int
) -> Sequence[sa.Row[Any, Any, Any]]:
    branches = []
    for kind, model, time_col in _BRANCHES:
        stmt = sa.select(
            time_col.label("at"), sa.literal_column(f"'{kind}'", sa.String).label("type"), model.id.label("id")
        ).where(model.workspace_id == workspace_id, model.contact_id == contact_id)
        if cursor is not None:
            stmt = stmt.where(_after_cursor(kind, time_col, model.id, cursor))
        # Each branch is limited on its own so the database never merges more than 3 × (limit + 1) rows.
        inner = stmt.order_by(time_col.desc(), model.id.desc()).limit(limit + 1).subquery()
        branches.append(sa.select(inner.c.at, inner.c.type, inner.c.id))
    merged = sa.union_all(*branches).subquery()
    query = (
        sa.select(merged.c.at, merged.c.type, merged.c.id)
        .order_by(merged.c.at.desc(), merged.c.type.desc(), merged.c.id.desc())
        .limit(limit + 1)
    )
    return session.execute(query).all()


def _utc(value: Any) -> dt.datetime:
    """Union columns lose the column type on some drivers: parse what SQLite hands back as text."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def timeline(
    session: Session, workspace_id: int, contact_id: int, cursor: str | None, limit: int
) -> tuple[list[TimelineItem], str | None]:
    keys = page_keys(session, workspace_id, contact_id, decode_cursor(cursor) if cursor else None, limit)
    page = [(_utc(k.at), k.type, k.id) for k in keys[:limit]]
    next_cursor = encode_cursor(*page[-1]) if len(keys) > limit else None

    wanted: dict[str, list[int]] = {kind: [] for kind, _, _ in _BRANCHES}
    for _, kind, row_id in page:
        wanted[kind].append(row_id)
    items: dict[tuple[str, int], TimelineItem] = {}
    if wanted["touch"]:
        for t in session.scalars(
            sa.select(Touch).where(Touch.workspace_id == workspace_id, Touch.id.in_(wanted["touch"]))
        ):
            items["touch", t.id] = TouchItem(
                id=t.id,
                at=t.occurred_at,
                kind=t.kind,
                event=t.event,
                channel=t.channel,
                source=t.source,
                medium=t.medium,
                campaign=t.campaign,
                content=t.content,
                url=t.url,
            )
    if wanted["order"]:
        for o in session.scalars(
            sa.select(Order).where(Order.workspace_id == workspace_id, Order.id.in_(wanted["order"]))
        ):
            items["order", o.id] = OrderItem(
                id=o.id, at=o.placed_at, external_id=o.external_id, status=o.status, currency=o.currency, total=o.total
            )
    if wanted["stage_change"]:
        for s in session.scalars(
            sa.select(StageChange).where(
                StageChange.workspace_id == workspace_id, StageChange.id.in_(wanted["stage_change"])
            )
        ):
            items["stage_change", s.id] = StageChangeItem(
                id=s.id, at=s.changed_at, from_stage=s.from_stage, stage=s.stage, reason=s.reason
            )
    return [items[kind, row_id] for _, kind, row_id in page], next_cursor
