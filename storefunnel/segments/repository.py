"""SQL for segments: set-based membership writes and the reads behind members and growth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import UTCDateTime
from storefunnel.models import Contact, Segment, SegmentMember
from storefunnel.models.contact import stage_loaded
from storefunnel.pagination import paginate
from storefunnel.tenancy import scoped

members_table: sa.Table = SegmentMember.__table__  # type: ignore[assignment]


def segment_by_name(session: Session, workspace_id: int, name: str) -> Segment | None:
    return session.scalars(scoped(Segment, workspace_id).where(Segment.name == name)).first()


def lock_segment(session: Session, workspace_id: int, segment_id: int) -> Segment | None:
    """The segment row, locked on PostgreSQL so two refreshes of one segment take turns."""
    stmt = scoped(Segment, workspace_id).where(Segment.id == segment_id).with_for_update()
    return session.scalars(stmt).first()


def list_segments(
    session: Session, workspace_id: int, cursor: str | None, limit: int, kind: str | None
) -> tuple[Sequence[Segment], str | None]:
    stmt = scoped(Segment, workspace_id)
    if kind is not None:
        stmt = stmt.where(Segment.kind == kind)
    return paginate(session, stmt, Segment.id, cursor, limit)


def dynamic_segments(session: Session, workspace_id: int) -> Sequence[Segment]:
    return session.scalars(scoped(Segment, workspace_id).where(Segment.kind == "dynamic").order_by(Segment.id)).all()


def all_segments(session: Session, workspace_id: int) -> Sequence[Segment]:
    return session.scalars(scoped(Segment, workspace_id).order_by(Segment.id)).all()


def _current(workspace_id: int, segment_id: int) -> sa.Select[Any]:
    cur = members_table.alias("cur")
    return sa.select(cur.c.contact_id).where(
        cur.c.workspace_id == workspace_id, cur.c.segment_id == segment_id, cur.c.left_at.is_(None)
    )


def enter(session: Session, workspace_id: int, segment_id: int, ids: sa.Select[Any], now: dt.datetime) -> int:
    """INSERT the contacts of ``ids`` that are not current members; returns how many entered."""
    fresh = sa.except_(ids, _current(workspace_id, segment_id)).subquery("fresh")
    stmt = members_table.insert().from_select(
        ["workspace_id", "segment_id", "contact_id", "entered_at"],
        sa.select(
            sa.literal(workspace_id, sa.BigInteger()),
            sa.literal(segment_id, sa.BigInteger()),
            fresh.c[0],
            sa.literal(now, UTCDateTime()),
        ),
    )
    # INSERT ... SELECT reports its row count only when asked to keep it.
    result = session.execute(stmt, execution_options={"preserve_rowcount": True})
    return int(result.rowcount)  # type: ignore[attr-defined]


def leave(
    session: Session,
    workspace_id: int,
    segment_id: int,
    gone: sa.Select[Any] | sa.CompoundSelect[Any],
    now: dt.datetime,
) -> int:
    """Close the open stays of the contacts in ``gone``; returns how many left."""
    stmt = (
        members_table.update()
        .where(
            members_table.c.workspace_id == workspace_id,
            members_table.c.segment_id == segment_id,
            members_table.c.left_at.is_(None),
            members_table.c.contact_id.in_(gone),
        )
        .values(left_at=sa.literal(now, UTCDateTime()))
    )
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def sync(
    session: Session, workspace_id: int, segment_id: int, ids: sa.Select[Any], now: dt.datetime
) -> tuple[int, int]:
    """Make the open stays equal the set ``ids``: (entered, left), two set-based statements."""
    left = leave(session, workspace_id, segment_id, sa.except_(_current(workspace_id, segment_id), ids), now)
    entered = enter(session, workspace_id, segment_id, ids, now)
    return entered, left


def count_current(session: Session, workspace_id: int, segment_id: int) -> int:
    stmt = sa.select(sa.func.count()).select_from(_current(workspace_id, segment_id).subquery())
    return int(session.scalar(stmt) or 0)


def count_ids(session: Session, ids: sa.Select[Any]) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(ids.subquery())) or 0)


def sample_contacts(session: Session, workspace_id: int, ids: sa.Select[Any], size: int) -> Sequence[Contact]:
    if size == 0:
        return []
    chosen = ids.order_by(Contact.id.desc()).limit(size).subquery()
    stmt = (
        scoped(Contact, workspace_id)
        .options(stage_loaded())
        .where(Contact.id.in_(sa.select(chosen.c[0])))
        .order_by(Contact.id.desc())
    )
    return session.scalars(stmt).all()


def contacts_by_ids(session: Session, workspace_id: int, ids: Sequence[int]) -> dict[int, Contact]:
    if not ids:
        return {}
    stmt = scoped(Contact, workspace_id).options(stage_loaded()).where(Contact.id.in_(ids))
    return {c.id: c for c in session.scalars(stmt)}


def contact_ids_by_email(session: Session, workspace_id: int, emails: Sequence[str]) -> dict[str, int]:
    """Lower-cased email -> contact id, for the emails that belong to a contact of this workspace."""
    found: dict[str, int] = {}
    lowered = sorted({e.lower() for e in emails})
    for start in range(0, len(lowered), 500):
        chunk = lowered[start : start + 500]
        stmt = sa.select(sa.func.lower(Contact.email), Contact.id).where(
            Contact.workspace_id == workspace_id, sa.func.lower(Contact.email).in_(chunk)
        )
        found.update({str(e): int(i) for e, i in session.execute(stmt)})
    return found


def members_page(
    session: Session, workspace_id: int, segment_id: int, state: str, cursor: str | None, limit: int
) -> tuple[Sequence[SegmentMember], str | None]:
    stmt = scoped(SegmentMember, workspace_id).where(SegmentMember.segment_id == segment_id)
    if state == "current":
        stmt = stmt.where(SegmentMember.left_at.is_(None))
    elif state == "left":
        stmt = stmt.where(SegmentMember.left_at.is_not(None))
    return paginate(session, stmt, SegmentMember.id, cursor, limit)


def _day(column: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)


def daily_moves(session: Session, workspace_id: int, segment_id: int) -> tuple[dict[dt.date, int], dict[dt.date, int]]:
    """Per UTC day: how many stays began, and how many ended."""
    dialect = session.get_bind().dialect.name
    base = [SegmentMember.workspace_id == workspace_id, SegmentMember.segment_id == segment_id]
    result: list[dict[dt.date, int]] = []
    for column in (SegmentMember.entered_at, SegmentMember.left_at):
        day = _day(column, dialect).label("day")
        stmt = sa.select(day, sa.func.count()).where(*base, column.is_not(None)).group_by(day)
        result.append({_as_date(d): int(n) for d, n in session.execute(stmt)})
    return result[0], result[1]


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def referencing(session: Session, workspace_id: int) -> Sequence[tuple[int, str, dict[str, Any] | None]]:
    stmt = sa.select(Segment.id, Segment.name, Segment.rules).where(
        Segment.workspace_id == workspace_id, Segment.kind == "dynamic"
    )
    return [(int(i), str(n), r) for i, n, r in session.execute(stmt)]
