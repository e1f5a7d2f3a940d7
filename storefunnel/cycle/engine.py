"""The cycle as set-based SQL: one SQLAlchemy Core construction for SQLite and PostgreSQL.

The history of every contact is computed in one statement: the facts (creation, touches, orders) are unioned and
sorted once; running flags over that one ordering (orders so far, last order, lapses so far, intent since the last
lapse, thank-you since the last order) give each fact its stage; the timed transitions (end of the thank-you
window, lapse) ride on the fact they follow where the gap to the next fact exceeds the window; consecutive equal
stages collapse. ``rules.replay`` states the same rules event by event; the two must always agree.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTableAs
from sqlalchemy.sql.elements import ColumnElement

from storefunnel.config import get_settings
from storefunnel.cycle.rules import CREATED, INTENT, LAPSE, ORDER, THANK_YOU, TOUCH, WINDOW_END, CycleRules
from storefunnel.db import UTCDateTime
from storefunnel.models import Contact, ContactStage, Order, StageChange, Touch
from storefunnel.models.contact import Stage

CONTACTS: sa.Table = Contact.__table__  # type: ignore[assignment]
TOUCHES: sa.Table = Touch.__table__  # type: ignore[assignment]
ORDERS: sa.Table = Order.__table__  # type: ignore[assignment]
CHANGES: sa.Table = StageChange.__table__  # type: ignore[assignment]
CURRENT_STAGES: sa.Table = ContactStage.__table__  # type: ignore[assignment]

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


# The history statement's parameters: built once per rules (``history_select``), given values at execution.
WORKSPACE = sa.bindparam("cycle_workspace_id", type_=sa.BigInteger())
AS_OF = sa.bindparam("cycle_as_of", type_=UTCDateTime())
CONTACT_IDS = sa.bindparam("cycle_contact_ids", expanding=True, type_=sa.BigInteger())


def history_params(workspace_id: int, as_of: dt.datetime, contact_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The values of ``history_select``'s parameters (the contact ids only for a statement built ``by_contact``)."""
    params: dict[str, Any] = {WORKSPACE.key: workspace_id, AS_OF.key: as_of}
    if contact_ids is not None:
        params[CONTACT_IDS.key] = list(contact_ids)
    return params


def _facts(rules: CycleRules, by_contact: bool) -> sa.Subquery:
    def only(col: Any) -> ColumnElement[bool]:
        return col.in_(CONTACT_IDS) if by_contact else sa.true()

    zero = _const(0, sa.Integer())
    intent = sa.case((TOUCHES.c.event.in_(rules.intent_events), 1), else_=0)
    flow = Touch.properties["flow"].as_string()
    thank = sa.case((sa.or_(TOUCHES.c.event.in_(rules.thank_you_events), flow == rules.thank_you_flow), 1), else_=0)
    created = sa.select(
        CONTACTS.c.id.label("cid"),
        CONTACTS.c.created_at.label("at"),
        _const(PRIO_CREATED, sa.Integer()).label("prio"),
        CONTACTS.c.id.label("src"),
        zero.label("intent"),
        zero.label("thank"),
    ).where(CONTACTS.c.workspace_id == WORKSPACE, CONTACTS.c.created_at <= AS_OF, only(CONTACTS.c.id))
    touches = sa.select(
        TOUCHES.c.contact_id,
        TOUCHES.c.occurred_at,
        _const(PRIO_TOUCH, sa.Integer()),
        TOUCHES.c.id,
        intent,
        thank,
    ).where(
        TOUCHES.c.workspace_id == WORKSPACE,
        TOUCHES.c.contact_id.is_not(None),
        TOUCHES.c.occurred_at <= AS_OF,
        only(TOUCHES.c.contact_id),
    )
    orders = sa.select(
        ORDERS.c.contact_id,
        ORDERS.c.placed_at,
        _const(PRIO_ORDER, sa.Integer()),
        ORDERS.c.id,
        zero,
        zero,
    ).where(
        ORDERS.c.workspace_id == WORKSPACE,
        ORDERS.c.contact_id.is_not(None),
        ORDERS.c.placed_at <= AS_OF,
        ORDERS.c.status.not_in(rules.cancelled_statuses),
        only(ORDERS.c.contact_id),
    )
    return sa.union_all(created, touches, orders).subquery("cycle_facts")


def history_select(dialect: str, rules: CycleRules, *, by_contact: bool = False) -> sa.Select[Any]:
    """``(contact_id, changed_at, from_stage, stage, reason)`` for every transition, up to ``as_of``.

    Execute it with ``history_params``: the workspace, ``as_of`` and (``by_contact``) the contacts are parameters,
    so the statement is built once per rules; building it took longer than running it for one contact.

    The facts are sorted once and go through two window passes in that same ordering (each pass a single
    window definition, so a single streaming step: they cost more than the sort). The timed transitions are not
    rows of the sorted stream: at most one window end and one lapse fall between
    a fact and the next one (the window end first, as ``lapse_days > thank_you_window_days``), so each fact row
    carries them, and a final three-way expansion turns each row into its (up to three) transitions.
    """
    return _history_statement(dialect, rules.model_dump_json(), by_contact)


@functools.lru_cache(maxsize=64)
def _history_statement(dialect: str, rules_json: str, by_contact: bool) -> sa.Select[Any]:
    rules = CycleRules.model_validate_json(rules_json)
    cutoff = AS_OF
    window, lapse = rules.thank_you_window_days, rules.lapse_days
    facts = _facts(rules, by_contact)
    is_order = facts.c.prio == PRIO_ORDER

    def over(source: Any, upto: int) -> dict[str, Any]:
        # One window definition (frame included) for every function of a pass: the database then computes
        # them all in one pass over the rows it sorted once (lead and lag ignore the frame).
        return {
            "partition_by": source.c.cid,
            "order_by": (source.c.at, source.c.prio, source.c.src),
            "rows": (None, upto),
        }

    # Pass 1, over the facts: the next fact, and the last order, intent and thank-you so far.
    l1 = sa.select(
        facts.c.cid,
        facts.c.at,
        facts.c.prio,
        facts.c.src,
        facts.c.intent,
        facts.c.thank,
        sa.func.lead(facts.c.at).over(**over(facts, 0)).label("next_at"),
        sa.func.max(sa.case((is_order, facts.c.at))).over(**over(facts, 0)).label("last_order_at"),
        sa.func.max(sa.case((facts.c.intent == 1, facts.c.at))).over(**over(facts, 0)).label("last_intent_at"),
        # A thank-you after the last order was inside its window whenever this fact is: no need to check it here.
        sa.func.max(sa.case((facts.c.thank == 1, facts.c.at))).over(**over(facts, 0)).label("last_thank_at"),
    ).subquery("cycle_running")

    # Only the last fact of an instant counts (only the last step of an instant is recorded; window ends and
    # lapses never share an instant with a later fact). Per such fact: what follows it before the next fact.
    ordered = l1.c.last_order_at.is_not(None)
    in_window = sa.and_(ordered, l1.c.at < add_days(l1.c.last_order_at, window, dialect))
    thanked = sa.and_(l1.c.last_thank_at.is_not(None), l1.c.last_thank_at > l1.c.last_order_at)
    # A lapse follows when the next fact comes later than lapse_days after this one (or never).
    lapse_due = add_days(l1.c.at, lapse, dialect)
    lapse_at = sa.case(
        (sa.and_(sa.or_(l1.c.next_at.is_(None), l1.c.next_at > lapse_due), lapse_due <= cutoff), lapse_due)
    )
    # The window end of the last order follows when this fact is inside the window and the next fact (an order
    # closing it early included) comes after the window's end; a fact at that very instant hides it.
    window_due = add_days(l1.c.last_order_at, window, dialect)
    window_end = sa.and_(in_window, sa.or_(l1.c.next_at.is_(None), l1.c.next_at > window_due), window_due <= cutoff)
    # The stage whenever it does not hinge on "intent since the last lapse" (null: it does).
    by_orders = sa.case(
        (sa.and_(in_window, thanked), Stage.thanked.value),
        (in_window, Stage.buying.value),
        (ordered, Stage.keeping_in_touch.value),
    )
    # The same for the stage after the timed steps that follow this fact, which the next instant starts from.
    after = sa.case(
        (lapse_at.is_not(None), Stage.lapsed.value),
        (window_end, Stage.keeping_in_touch.value),
        else_=by_orders,
    )
    is_touch = l1.c.prio == PRIO_TOUCH
    reason = sa.case(
        (sa.and_(is_touch, l1.c.thank == 1, in_window), THANK_YOU),
        (sa.and_(is_touch, l1.c.intent == 1, l1.c.last_order_at.is_(None)), INTENT),
        (is_touch, TOUCH),
        (l1.c.prio == PRIO_CREATED, CREATED),
        else_=ORDER,
    )
    # Pass 2, over those facts, every frame ending at the previous one: lapses before this instant, and what
    # the previous instant left (its "after", and its last intent for when that hinges on intent).
    before: dict[str, Any] = over(l1, -1)
    l2 = (
        sa.select(
            l1.c.cid,
            l1.c.at,
            l1.c.last_intent_at,
            by_orders.label("by_orders"),
            reason.label("reason"),
            sa.type_coerce(sa.case((window_end, window_due)), UTCDateTime()).label("window_end_at"),
            sa.type_coerce(lapse_at, UTCDateTime()).label("lapse_at"),
            sa.func.max(lapse_at).over(**before).label("last_lapse_at"),
            sa.func.lag(l1.c.at).over(**before).label("prev_at"),
            sa.func.lag(after).over(**before).label("prev_after"),
            sa.func.lag(l1.c.last_intent_at).over(**before).label("prev_intent_at"),
        )
        .where(sa.or_(l1.c.next_at.is_(None), l1.c.next_at != l1.c.at))
        .subquery("cycle_flags")
    )

    # No touch shares an instant with a lapse, so "intent since the last lapse" compares times strictly. For
    # the previous instant the lapses before this one are the right ones too: had a lapse followed it, its
    # "after" would be lapsed and not hinge on intent.
    def by_intent(intent_at: Any) -> ColumnElement[str]:
        intended = sa.and_(intent_at.is_not(None), sa.or_(l2.c.last_lapse_at.is_(None), intent_at > l2.c.last_lapse_at))
        return sa.case((intended, Stage.conversion.value), else_=Stage.prospecting.value)

    l3 = sa.select(
        l2.c.cid,
        l2.c.at,
        sa.func.coalesce(l2.c.by_orders, by_intent(l2.c.last_intent_at)).label("stage"),
        l2.c.reason,
        l2.c.window_end_at,
        l2.c.lapse_at,
        sa.case((l2.c.prev_at.is_not(None), sa.func.coalesce(l2.c.prev_after, by_intent(l2.c.prev_intent_at)))).label(
            "prev"
        ),
    ).subquery("cycle_instants")
    changed = sa.or_(l3.c.prev.is_(None), l3.c.prev != l3.c.stage)
    # A window end always changes the stage (buying or thanked to keeping in touch), and so does a lapse.
    l4 = (
        sa.select(l3)
        .where(sa.or_(changed, l3.c.window_end_at.is_not(None), l3.c.lapse_at.is_not(None)))
        .subquery("cycle_steps")
    )
    step = sa.union_all(*(sa.select(_const(k, sa.Integer()).label("k")) for k in (0, 1, 2))).subquery("cycle_k")
    fact_changed = sa.or_(l4.c.prev.is_(None), l4.c.prev != l4.c.stage)
    emitted = sa.or_(
        sa.and_(step.c.k == 0, fact_changed),
        sa.and_(step.c.k == 1, l4.c.window_end_at.is_not(None)),
        sa.and_(step.c.k == 2, l4.c.lapse_at.is_not(None)),
    )
    before_lapse = sa.case((l4.c.window_end_at.is_not(None), Stage.keeping_in_touch.value), else_=l4.c.stage)
    return sa.select(
        l4.c.cid.label("contact_id"),
        sa.type_coerce(
            sa.case((step.c.k == 0, l4.c.at), (step.c.k == 1, l4.c.window_end_at), else_=l4.c.lapse_at),
            UTCDateTime(),
        ).label("changed_at"),
        sa.case((step.c.k == 0, l4.c.prev), (step.c.k == 1, l4.c.stage), else_=before_lapse).label("from_stage"),
        sa.case(
            (step.c.k == 0, l4.c.stage), (step.c.k == 1, Stage.keeping_in_touch.value), else_=Stage.lapsed.value
        ).label("stage"),
        sa.case((step.c.k == 0, l4.c.reason), (step.c.k == 1, WINDOW_END), else_=LAPSE).label("reason"),
    ).select_from(l4.join(step, emitted))


# Scratch tables of one full recompute: temporary, so never logged, and on PostgreSQL dropped at commit anyway.
SCRATCH = sa.MetaData()


def _scratch(name: str, *columns: sa.Column[Any]) -> sa.Table:
    return sa.Table(name, SCRATCH, *columns, prefixes=["TEMPORARY"], postgresql_on_commit="drop")


def _history_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("from_stage", sa.String(20)),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
    ]


# ``id`` stays null: with nothing stored, the new history is itself the difference (all rows to insert).
NEW_HISTORY = _scratch("cycle_new_history", sa.Column("id", sa.BigInteger()), *_history_columns())
# Rows to delete (``id`` set: a stored row the new history lacks) and to insert (``id`` null: a new row).
DIFF = _scratch("cycle_diff", sa.Column("id", sa.BigInteger()), *_history_columns())
# The same, read again once the contacts are locked (PostgreSQL), to see what changed meanwhile.
DIFF_LOCKED = _scratch("cycle_diff_locked", sa.Column("id", sa.BigInteger()), *_history_columns())
CURRENT = _scratch(
    "cycle_current",
    sa.Column("contact_id", sa.BigInteger(), nullable=False),
    sa.Column("stage", sa.String(20)),
    sa.Column("stage_at", UTCDateTime()),
)
TOUCHED = _scratch("cycle_touched", sa.Column("contact_id", sa.BigInteger(), nullable=False))
CONTENDED = _scratch("cycle_contended", sa.Column("contact_id", sa.BigInteger(), nullable=False))
SCRATCH_TABLES = (NEW_HISTORY, DIFF, DIFF_LOCKED, CURRENT, TOUCHED, CONTENDED)
HISTORY_COLUMNS = ["contact_id", "changed_at", "from_stage", "stage", "reason"]
ANALYZE_AFTER = 100_000  # rows written by a recompute past which it refreshes the planner's statistics
# Full recomputes of one workspace take this lock exclusively, drains of its marks share it (``dirty.py``).
RECOMPUTE_LOCK = 0x5F0C7C1E


def write_full(session: Any, dialect: str, workspace_id: int, rules: CycleRules, as_of: dt.datetime) -> int:
    """Recompute the workspace's whole history and write only the difference; return the number of transitions.

    The new history goes to a temporary table; then only stored rows it lacks are deleted, only rows the store
    lacks are inserted, and only contacts whose stage or stage time differ are updated, so a re-run with nothing
    changed reads a lot and writes almost nothing.

    PostgreSQL, where incremental updates run concurrently: they lock a contact (``FOR NO KEY UPDATE``) before
    writing its rows, and this takes its locks in that same order, the contacts about to change first (by id),
    their rows after. (Deleting the whole history first and updating the contacts last took them the other way
    round: a drain holding a contact and waiting on one of its rows deadlocked with the recompute.) A contact
    whose rows someone else rewrote between the diff and the lock is left as that writer made it (from newer
    facts than this snapshot saw) and marked for the next drain. Drains skip the workspace meanwhile: the
    recompute holds ``RECOMPUTE_LOCK`` exclusively.
    """
    postgres = dialect == "postgresql"
    if postgres:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key, :ws)"), {"key": RECOMPUTE_LOCK, "ws": workspace_id})
        # One sort of every fact: in memory rather than spilled (this transaction only; see the setting).
        work_mem = int(get_settings().cycle_recompute_work_mem_mb)
        session.execute(sa.text(f"SET LOCAL work_mem = '{work_mem}MB'"))
    connection = session.connection()
    history = history_select(dialect, rules)
    params = history_params(workspace_id, as_of)
    for table in SCRATCH_TABLES:
        # Left over only on SQLite, by a recompute that failed on this connection.
        table.drop(connection, checkfirst=True)
        if not (postgres and table is NEW_HISTORY):
            table.create(connection)
    if postgres:
        # CREATE TABLE … AS writes in bulk: 17 s instead of 26 s for INSERT … SELECT at 1M contacts.
        # DDL renders its values inline, so they go into the statement here.
        new = history.params(params).subquery("cycle_history")
        session.execute(
            CreateTableAs(
                sa.select(sa.cast(sa.null(), sa.BigInteger()).label("id"), *(new.c[c] for c in HISTORY_COLUMNS)),
                NEW_HISTORY.name,
                temporary=True,
            )
        )
        session.execute(sa.text(f"ANALYZE {NEW_HISTORY.name}"))
    else:
        session.execute(sa.insert(NEW_HISTORY).from_select(HISTORY_COLUMNS, history), params)
    diff = NEW_HISTORY
    if session.scalar(sa.select(sa.exists().where(CHANGES.c.workspace_id == workspace_id))):
        _diff_into(session, DIFF, workspace_id, None)
        diff = DIFF
    _current_into(session, workspace_id)
    if postgres:
        diff = _lock_touched(session, workspace_id, diff)
    deleted = 0
    if diff is not NEW_HISTORY:
        deleted = session.execute(
            sa.delete(CHANGES).where(CHANGES.c.id.in_(sa.select(diff.c.id).where(diff.c.id.is_not(None))))
        ).rowcount
    inserted = session.execute(
        sa.insert(CHANGES).from_select(
            ["workspace_id", *HISTORY_COLUMNS],
            sa.select(_const(workspace_id, CHANGES.c.workspace_id.type), *(diff.c[c] for c in HISTORY_COLUMNS))
            .where(diff.c.id.is_(None))
            .order_by(diff.c.contact_id, diff.c.changed_at),
        ),
        # Without it SQLAlchemy reports -1 for an INSERT … SELECT, and the ANALYZE below never ran.
        execution_options={"preserve_rowcount": True},
    ).rowcount
    updated = _set_current(session, workspace_id, CURRENT)
    if postgres:
        # After a big rewrite the planner's row counts are stale until autovacuum comes by, and the incremental
        # updates that follow pick sequential scans (seconds instead of milliseconds per batch). Sampling takes
        # about a second, and this transaction's own rows count.
        if deleted + inserted >= ANALYZE_AFTER:
            session.execute(sa.text(f"ANALYZE {CHANGES.name}"))
        if updated >= ANALYZE_AFTER:
            session.execute(sa.text(f"ANALYZE {CURRENT_STAGES.name}"))
    n = int(session.scalar(sa.select(sa.func.count()).select_from(NEW_HISTORY)) or 0)
    for table in SCRATCH_TABLES:
        table.drop(connection)
    return n


def _diff_into(session: Any, target: sa.Table, workspace_id: int, only: sa.Table | None) -> None:
    """Stored rows missing from the new history and new rows missing from the store, in one statement.

    One statement reads one snapshot, which the check after locking relies on.
    """
    stored = sa.select(CHANGES).where(CHANGES.c.workspace_id == workspace_id)
    new = sa.select(NEW_HISTORY)
    if only is not None:
        stored = stored.where(CHANGES.c.contact_id.in_(sa.select(only.c.contact_id)))
        new = new.where(NEW_HISTORY.c.contact_id.in_(sa.select(only.c.contact_id)))
    old_rows, new_rows = stored.subquery("cycle_stored"), new.subquery("cycle_new")
    # Equality on every column (the first stage's from_stage is null), so the join can hash.
    same = sa.and_(
        new_rows.c.contact_id == old_rows.c.contact_id,
        new_rows.c.changed_at == old_rows.c.changed_at,
        new_rows.c.stage == old_rows.c.stage,
        new_rows.c.reason == old_rows.c.reason,
        sa.func.coalesce(new_rows.c.from_stage, "") == sa.func.coalesce(old_rows.c.from_stage, ""),
    )
    stale = old_rows.c.id.is_not(None)

    def pick(column: str) -> ColumnElement[Any]:
        return sa.case((stale, old_rows.c[column]), else_=new_rows.c[column])

    session.execute(
        sa.insert(target).from_select(
            ["id", *HISTORY_COLUMNS],
            sa.select(old_rows.c.id, *(pick(c) for c in HISTORY_COLUMNS))
            .select_from(new_rows.join(old_rows, same, full=True))
            .where(sa.or_(new_rows.c.contact_id.is_(None), old_rows.c.id.is_(None))),
        )
    )


def _current_into(session: Any, workspace_id: int) -> None:
    """Contacts whose stage or stage time differ from their last new transition's (no history: no stage)."""
    last = sa.select(
        NEW_HISTORY.c.contact_id,
        NEW_HISTORY.c.stage,
        NEW_HISTORY.c.changed_at,
        sa.func.row_number()
        .over(partition_by=NEW_HISTORY.c.contact_id, order_by=NEW_HISTORY.c.changed_at.desc())
        .label("rn"),
    ).subquery("cycle_last")
    now = CURRENT_STAGES
    session.execute(
        sa.insert(CURRENT).from_select(
            ["contact_id", "stage", "stage_at"],
            sa.select(CONTACTS.c.id, last.c.stage, last.c.changed_at)
            .select_from(
                CONTACTS.outerjoin(last, sa.and_(last.c.contact_id == CONTACTS.c.id, last.c.rn == 1)).outerjoin(
                    now, now.c.contact_id == CONTACTS.c.id
                )
            )
            .where(
                CONTACTS.c.workspace_id == workspace_id,
                sa.or_(now.c.stage.is_distinct_from(last.c.stage), now.c.stage_at.is_distinct_from(last.c.changed_at)),
            ),
        )
    )


def _set_current(session: Any, workspace_id: int, wanted: sa.Table) -> int:
    """Make ``contact_stages`` say what ``wanted`` (contact_id, stage, stage_at) says; NULL stage: no row.

    Every contact in ``wanted`` is locked by the caller, so no one else inserts or deletes its row meanwhile.
    Returns the number of contacts changed.
    """
    now = CURRENT_STAGES
    ids = sa.select(wanted.c.contact_id)
    deleted = session.execute(
        sa.delete(now).where(now.c.contact_id.in_(ids.where(wanted.c.stage.is_(None)))),
        execution_options={"preserve_rowcount": True},
    ).rowcount
    updated = session.execute(
        sa.update(now)
        .where(now.c.contact_id == wanted.c.contact_id, wanted.c.stage.is_not(None))
        .values(stage=wanted.c.stage, stage_at=wanted.c.stage_at),
        execution_options={"preserve_rowcount": True},
    ).rowcount
    inserted = session.execute(
        sa.insert(now).from_select(
            ["contact_id", "workspace_id", "stage", "stage_at"],
            sa.select(
                wanted.c.contact_id, _const(workspace_id, now.c.workspace_id.type), wanted.c.stage, wanted.c.stage_at
            )
            .where(wanted.c.stage.is_not(None), ~sa.exists().where(now.c.contact_id == wanted.c.contact_id))
            .order_by(wanted.c.contact_id),
        ),
        execution_options={"preserve_rowcount": True},
    ).rowcount
    return int(deleted) + int(updated) + int(inserted)


def _lock_touched(session: Any, workspace_id: int, diff: sa.Table) -> sa.Table:
    """Lock the contacts about to change (by id), set aside those rewritten meanwhile; return the diff to apply."""
    locking = (
        sa.select(CONTACTS.c.id)
        .where(
            CONTACTS.c.workspace_id == workspace_id,
            sa.or_(CONTACTS.c.id.in_(sa.select(diff.c.contact_id)), CONTACTS.c.id.in_(sa.select(CURRENT.c.contact_id))),
        )
        .order_by(CONTACTS.c.id)
        .with_for_update(key_share=True)
    )
    session.execute(sa.insert(TOUCHED).from_select(["contact_id"], locking))
    stored_before = sa.exists().where(diff.c.id.is_not(None))
    stored_now = sa.exists().where(
        CHANGES.c.workspace_id == workspace_id, CHANGES.c.contact_id.in_(sa.select(TOUCHED.c.contact_id))
    )
    if diff is NEW_HISTORY and not session.scalar(sa.select(stored_now)):
        # Nothing was stored and nothing is (a first run): the difference read before the locks still holds.
        return diff
    if diff is DIFF and not session.scalar(sa.select(sa.or_(stored_before, stored_now))):
        return diff
    _diff_into(session, DIFF_LOCKED, workspace_id, TOUCHED)
    # Equal diffs against one new history mean equal stored rows: anyone else's rewrite shows as a difference.
    before, after = diff.alias("cycle_before"), DIFF_LOCKED.alias("cycle_after")
    same = sa.and_(
        sa.func.coalesce(before.c.from_stage, "") == sa.func.coalesce(after.c.from_stage, ""),
        before.c.contact_id == after.c.contact_id,
        before.c.changed_at == after.c.changed_at,
        before.c.stage == after.c.stage,
        before.c.reason == after.c.reason,
        sa.func.coalesce(before.c.id, -1) == sa.func.coalesce(after.c.id, -1),
    )
    session.execute(
        sa.insert(CONTENDED).from_select(
            ["contact_id"],
            sa.select(sa.func.coalesce(before.c.contact_id, after.c.contact_id))
            .select_from(before.join(after, same, full=True))
            .where(sa.or_(before.c.contact_id.is_(None), after.c.contact_id.is_(None)))
            .distinct(),
        )
    )
    contended = sa.select(CONTENDED.c.contact_id)
    session.execute(sa.delete(DIFF_LOCKED).where(DIFF_LOCKED.c.contact_id.in_(contended)))
    session.execute(sa.delete(CURRENT).where(CURRENT.c.contact_id.in_(contended)))
    session.execute(
        sa.text(
            "INSERT INTO cycle_dirty (workspace_id, contact_id, marked_at) "
            "SELECT :ws, contact_id, now() FROM cycle_contended ORDER BY contact_id "
            "ON CONFLICT (workspace_id, contact_id) DO UPDATE SET id = excluded.id, marked_at = excluded.marked_at"
        ),
        {"ws": workspace_id},
    )
    return DIFF_LOCKED


def sync_contacts(session: Any, workspace_id: int, contact_ids: Sequence[int] | None) -> None:
    """Set each contact's current stage from its last transition (no history: no stage); the caller locks them."""
    now = CURRENT_STAGES
    scope = [CHANGES.c.workspace_id == workspace_id]
    gone = [now.c.workspace_id == workspace_id, ~sa.exists().where(CHANGES.c.contact_id == now.c.contact_id)]
    if contact_ids is not None:
        scope.append(CHANGES.c.contact_id.in_(contact_ids))
        gone.append(now.c.contact_id.in_(contact_ids))
    session.execute(sa.delete(now).where(*gone))
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
    wanted = (
        sa.select(last.c.contact_id, _const(workspace_id, now.c.workspace_id.type), last.c.stage, last.c.changed_at)
        .select_from(last.outerjoin(now, now.c.contact_id == last.c.contact_id))
        .where(
            last.c.rn == 1,
            sa.or_(now.c.stage.is_distinct_from(last.c.stage), now.c.stage_at.is_distinct_from(last.c.changed_at)),
        )
    )
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    upsert = insert(now).from_select(["contact_id", "workspace_id", "stage", "stage_at"], wanted)
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=[now.c.contact_id],
            set_={"stage": upsert.excluded.stage, "stage_at": upsert.excluded.stage_at},
        )
    )
