"""The cycle as set-based SQL: one SQLAlchemy Core construction for SQLite and PostgreSQL.

The history of every contact is computed in one statement: the facts (creation, touches, orders) are unioned,
the timed transitions (end of the thank-you window, lapse) are generated as synthetic rows where the gap to the
next fact exceeds the window, running flags (orders so far, last order, lapses so far, intent since the last
lapse, thank-you since the last order) give each row its stage, and consecutive equal stages collapse.
``rules.replay`` states the same rules event by event; the two must always agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from storefunnel.cycle.rules import CREATED, INTENT, LAPSE, ORDER, THANK_YOU, TOUCH, WINDOW_END, CycleRules
from storefunnel.db import UTCDateTime
from storefunnel.models import Contact, Order, StageChange, Touch
from storefunnel.models.contact import Stage

CONTACTS: sa.Table = Contact.__table__  # type: ignore[assignment]
TOUCHES: sa.Table = Touch.__table__  # type: ignore[assignment]
ORDERS: sa.Table = Order.__table__  # type: ignore[assignment]
CHANGES: sa.Table = StageChange.__table__  # type: ignore[assignment]

# Same-instant order: window end, lapse, creation, touch, order (a touch at the very second of an order
# happened before it, so it cannot be that order's thank-you).
PRIO_WINDOW_END, PRIO_LAPSE, PRIO_CREATED, PRIO_TOUCH, PRIO_ORDER = 0, 1, 2, 3, 4


def add_days(expr: ColumnElement[Any], days: int, dialect: str) -> ColumnElement[dt.datetime]:
    """``expr + days`` in UTC, exact to the microsecond, on either backend (the one dialect difference)."""
    if dialect == "sqlite":
        # Times are stored as 'YYYY-MM-DD HH:MM:SS.ffffff'. SQLite rounds the fraction to milliseconds (and may
        # carry into the seconds), so shift the whole seconds alone and glue the untouched fraction back on.
        seconds = sa.func.substr(expr, 1, 19)
        whole = sa.type_coerce(sa.func.strftime("%Y-%m-%d %H:%M:%S", seconds, f"+{int(days)} days"), sa.String())
        return sa.type_coerce(whole + sa.type_coerce(sa.func.substr(expr, 20), sa.String()), UTCDateTime())
    # Hours, not days: a day interval on timestamptz follows the session's daylight-saving rules.
    interval = sa.literal_column(f"INTERVAL '{int(days) * 24} hours'", sa.Interval())
    return sa.type_coerce(expr + interval, UTCDateTime())


def seconds_between(start: ColumnElement[Any], end: ColumnElement[Any], dialect: str) -> ColumnElement[float]:
    """``end - start`` in seconds as a float."""
    if dialect == "sqlite":
        return sa.type_coerce((sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0, sa.Float())
    return sa.type_coerce(sa.extract("epoch", end - start), sa.Float())


def _const(value: int | str, type_: Any) -> ColumnElement[Any]:
    text = f"'{value}'" if isinstance(value, str) else str(int(value))
    return sa.literal_column(text, type_)


def _facts(
    workspace_id: int, rules: CycleRules, as_of: ColumnElement[Any], contact_ids: Sequence[int] | None
) -> sa.CTE:
    def only(col: Any) -> ColumnElement[bool]:
        return col.in_(contact_ids) if contact_ids is not None else sa.true()

    zero = _const(0, sa.Integer())
    intent = sa.case((TOUCHES.c.event.in_(rules.intent_events), 1), else_=0)
    flow = Touch.properties["flow"].as_string()
    thank = sa.case((sa.or_(TOUCHES.c.event.in_(rules.thank_you_events), flow == rules.thank_you_flow), 1), else_=0)
    created = sa.select(
        CONTACTS.c.id.label("cid"),
        CONTACTS.c.created_at.label("at"),
        _const(PRIO_CREATED, sa.Integer()).label("prio"),
        CONTACTS.c.id.label("src"),
        zero.label("is_order"),
        zero.label("intent"),
        zero.label("thank"),
        _const(CREATED, sa.String()).label("kind"),
    ).where(CONTACTS.c.workspace_id == workspace_id, CONTACTS.c.created_at <= as_of, only(CONTACTS.c.id))
    touches = sa.select(
        TOUCHES.c.contact_id,
        TOUCHES.c.occurred_at,
        _const(PRIO_TOUCH, sa.Integer()),
        TOUCHES.c.id,
        zero,
        intent,
        thank,
        _const(TOUCH, sa.String()),
    ).where(
        TOUCHES.c.workspace_id == workspace_id,
        TOUCHES.c.contact_id.is_not(None),
        TOUCHES.c.occurred_at <= as_of,
        only(TOUCHES.c.contact_id),
    )
    orders = sa.select(
        ORDERS.c.contact_id,
        ORDERS.c.placed_at,
        _const(PRIO_ORDER, sa.Integer()),
        ORDERS.c.id,
        _const(1, sa.Integer()),
        zero,
        zero,
        _const(ORDER, sa.String()),
    ).where(
        ORDERS.c.workspace_id == workspace_id,
        ORDERS.c.contact_id.is_not(None),
        ORDERS.c.placed_at <= as_of,
        ORDERS.c.status.not_in(rules.cancelled_statuses),
        only(ORDERS.c.contact_id),
    )
    return sa.union_all(created, touches, orders).cte("cycle_facts")


def history_select(
    dialect: str,
    workspace_id: int,
    rules: CycleRules,
    as_of: dt.datetime,
    contact_ids: Sequence[int] | None = None,
) -> sa.Select[Any]:
    """``(contact_id, changed_at, from_stage, stage, reason)`` for every transition, up to ``as_of``."""
    cutoff = sa.literal(as_of, UTCDateTime())
    window, lapse = rules.thank_you_window_days, rules.lapse_days
    facts = _facts(workspace_id, rules, cutoff, contact_ids)
    zero = _const(0, sa.Integer())

    # Lapse: after each fact, if the next fact comes later than lapse_days (or never), lapse at the due time.
    nxt = sa.select(
        facts.c.cid,
        facts.c.at,
        facts.c.src,
        sa.func.lead(facts.c.at)
        .over(partition_by=facts.c.cid, order_by=(facts.c.at, facts.c.prio, facts.c.src))
        .label("next_at"),
    ).subquery("cycle_next")
    lapse_due = add_days(nxt.c.at, lapse, dialect)
    lapses = sa.select(
        nxt.c.cid,
        lapse_due,
        _const(PRIO_LAPSE, sa.Integer()),
        nxt.c.src,
        zero,
        zero,
        zero,
        _const(LAPSE, sa.String()),
    ).where(sa.or_(nxt.c.next_at.is_(None), nxt.c.next_at > lapse_due), lapse_due <= cutoff)

    # Window end: after each order, if the next order comes later than the window (or never).
    nxo = (
        sa.select(
            facts.c.cid,
            facts.c.at,
            facts.c.src,
            sa.func.lead(facts.c.at)
            .over(partition_by=facts.c.cid, order_by=(facts.c.at, facts.c.src))
            .label("next_order_at"),
        )
        .where(facts.c.is_order == 1)
        .subquery("cycle_next_order")
    )
    window_due = add_days(nxo.c.at, window, dialect)
    window_ends = sa.select(
        nxo.c.cid,
        window_due,
        _const(PRIO_WINDOW_END, sa.Integer()),
        nxo.c.src,
        zero,
        zero,
        zero,
        _const(WINDOW_END, sa.String()),
    ).where(sa.or_(nxo.c.next_order_at.is_(None), nxo.c.next_order_at > window_due), window_due <= cutoff)

    rows = sa.union_all(sa.select(facts), lapses, window_ends).subquery("cycle_rows")
    # Every window below uses this one ordering, so the database sorts the rows once and streams the rest.
    order = (rows.c.at, rows.c.prio, rows.c.src)
    running: dict[str, Any] = {"partition_by": rows.c.cid, "order_by": order, "rows": (None, 0)}
    l1 = sa.select(
        rows,
        sa.func.sum(rows.c.is_order).over(**running).label("n_orders"),
        sa.func.max(sa.case((rows.c.is_order == 1, rows.c.at))).over(**running).label("last_order_at"),
        sa.func.max(sa.case((rows.c.kind == LAPSE, rows.c.at))).over(**running).label("last_lapse_at"),
        sa.func.max(sa.case((rows.c.intent == 1, rows.c.at))).over(**running).label("last_intent_at"),
    ).subquery("cycle_running")

    in_window = sa.and_(l1.c.n_orders > 0, l1.c.at < add_days(l1.c.last_order_at, window, dialect))
    thank_ok = sa.and_(l1.c.thank == 1, in_window)
    running1: dict[str, Any] = {"partition_by": l1.c.cid, "order_by": (l1.c.at, l1.c.prio, l1.c.src)}
    l2 = sa.select(
        l1.c.cid,
        l1.c.at,
        l1.c.prio,
        l1.c.src,
        l1.c.kind,
        l1.c.intent,
        l1.c.n_orders,
        l1.c.last_order_at,
        sa.case((in_window, 1), else_=0).label("in_window"),
        sa.case((thank_ok, 1), else_=0).label("thank_ok"),
        # No touch shares an instant with a lapse, and a thank-you at the instant of an order precedes it,
        # so "since the last lapse / order" is a strict comparison of times.
        sa.case(
            (
                sa.and_(
                    l1.c.last_intent_at.is_not(None),
                    sa.or_(l1.c.last_lapse_at.is_(None), l1.c.last_intent_at > l1.c.last_lapse_at),
                ),
                1,
            ),
            else_=0,
        ).label("intended"),
        sa.func.max(sa.case((thank_ok, l1.c.at))).over(**running1, rows=(None, 0)).label("last_thank_at"),
        sa.func.lead(l1.c.at).over(**running1).label("next_at"),
    ).subquery("cycle_flags")

    thanked = sa.and_(l2.c.last_thank_at.is_not(None), l2.c.last_thank_at > l2.c.last_order_at)
    stage = sa.case(
        (l2.c.kind == LAPSE, Stage.lapsed.value),
        (l2.c.kind == WINDOW_END, Stage.keeping_in_touch.value),
        (sa.and_(l2.c.in_window == 1, thanked), Stage.thanked.value),
        (l2.c.in_window == 1, Stage.buying.value),
        (l2.c.n_orders > 0, Stage.keeping_in_touch.value),
        (l2.c.intended == 1, Stage.conversion.value),
        else_=Stage.prospecting.value,
    )
    reason = sa.case(
        (sa.and_(l2.c.kind == TOUCH, l2.c.thank_ok == 1), THANK_YOU),
        (sa.and_(l2.c.kind == TOUCH, l2.c.intent == 1, l2.c.n_orders == 0), INTENT),
        else_=l2.c.kind,
    )
    # Only the last row of an instant counts; then keep the instants where the stage changes.
    l3 = (
        sa.select(
            l2.c.cid,
            l2.c.at,
            stage.label("stage"),
            reason.label("reason"),
            sa.func.lag(stage).over(partition_by=l2.c.cid, order_by=(l2.c.at, l2.c.prio, l2.c.src)).label("prev"),
        )
        .where(sa.or_(l2.c.next_at.is_(None), l2.c.next_at != l2.c.at))
        .subquery("cycle_instants")
    )
    return sa.select(
        l3.c.cid.label("contact_id"),
        l3.c.at.label("changed_at"),
        l3.c.prev.label("from_stage"),
        l3.c.stage.label("stage"),
        l3.c.reason.label("reason"),
    ).where(sa.or_(l3.c.prev.is_(None), l3.c.prev != l3.c.stage))


def write_full(session: Any, dialect: str, workspace_id: int, rules: CycleRules, as_of: dt.datetime) -> int:
    """Replace the workspace's whole history (delete + insert) and return the number of transitions."""
    if dialect == "postgresql":
        # One big sort of all facts: let it happen in memory rather than spill (this transaction only).
        session.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    session.execute(sa.delete(CHANGES).where(CHANGES.c.workspace_id == workspace_id))
    hist = history_select(dialect, workspace_id, rules, as_of).subquery("cycle_history")
    source = sa.select(
        _const(workspace_id, CHANGES.c.workspace_id.type),
        hist.c.contact_id,
        hist.c.from_stage,
        hist.c.stage,
        hist.c.changed_at,
        hist.c.reason,
    )
    session.execute(
        sa.insert(CHANGES).from_select(
            ["workspace_id", "contact_id", "from_stage", "stage", "changed_at", "reason"], source
        )
    )
    sync_contacts(session, workspace_id, None)
    # INSERT … SELECT reports no row count on every driver; counting is one index scan.
    counted = session.scalar(sa.select(sa.func.count()).where(CHANGES.c.workspace_id == workspace_id))
    return int(counted or 0)


def sync_contacts(session: Any, workspace_id: int, contact_ids: Sequence[int] | None) -> None:
    """Set ``contacts.stage/stage_at`` from the last transition of each contact (one UPDATE … FROM)."""
    scope = [CHANGES.c.workspace_id == workspace_id]
    if contact_ids is not None:
        scope.append(CHANGES.c.contact_id.in_(contact_ids))
    last = (
        sa.select(
            CHANGES.c.contact_id,
            CHANGES.c.stage,
            CHANGES.c.changed_at,
            sa.func.row_number()
            .over(partition_by=CHANGES.c.contact_id, order_by=(CHANGES.c.changed_at.desc(), CHANGES.c.id.desc()))
            .label("rn"),
        )
        .where(*scope)
        .subquery("cycle_last")
    )
    session.execute(
        sa.update(CONTACTS)
        .where(
            CONTACTS.c.workspace_id == workspace_id,
            CONTACTS.c.id == last.c.contact_id,
            last.c.rn == 1,
            sa.or_(
                CONTACTS.c.stage.is_distinct_from(last.c.stage),
                CONTACTS.c.stage_at.is_distinct_from(last.c.changed_at),
            ),
        )
        .values(stage=last.c.stage, stage_at=last.c.changed_at)
    )
    no_history = ~sa.exists().where(CHANGES.c.workspace_id == workspace_id, CHANGES.c.contact_id == CONTACTS.c.id)
    cleared = [CONTACTS.c.workspace_id == workspace_id, CONTACTS.c.stage.is_not(None), no_history]
    if contact_ids is not None:
        cleared.append(CONTACTS.c.id.in_(contact_ids))
    session.execute(sa.update(CONTACTS).where(*cleared).values(stage=None, stage_at=None))
