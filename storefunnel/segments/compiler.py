"""Rules -> one SELECT of contact ids, scoped by workspace, with the same meaning on SQLite and PostgreSQL.

Every predicate is two-valued (never NULL), so ``not`` is the exact complement of what it wraps:
a positive test on a missing value is false, a negative one (``neq``, ``not_in``) is true.
Order facts come from one pre-aggregated CTE joined once; each behaviour condition is one
aggregate over touches LEFT JOINed by contact (a hash join, never a per-contact subquery and
never ``NOT IN``, whose plan degrades badly on PostgreSQL when the set is large). Time windows are
computed from ``now`` in Python and bound as parameters, so no dialect date arithmetic is needed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from storefunnel.db import UTCDateTime
from storefunnel.models import Contact, ContactStage, Order, SegmentMember, Touch
from storefunnel.segments.rules import (
    ORDER_FIELDS,
    RFM_FIELDS,
    Behaviour,
    Condition,
    Group,
    Membership,
    Node,
    Not,
    fields_used,
    parse_datetime,
)

# Orders that did not end in a sale do not count towards order facts.
EXCLUDED_ORDER_STATUSES = ("cancelled", "refunded", "voided")
RFM_BUCKETS = 5

Pred = ColumnElement[bool]


@dataclass(frozen=True)
class Resolved:
    """A segment a rule refers to: dynamic ones are inlined by their rules, static ones read their members."""

    kind: str
    rules: Node | None


@dataclass
class _State:
    joins: list[tuple[Any, Any]] = field(default_factory=list)
    facts: Any = None
    rfm: Any = None
    stages: Any = None


def compile_rules(
    node: Node,
    workspace_id: int,
    *,
    dialect: str,
    now: dt.datetime,
    segments: Mapping[int, Resolved] | None = None,
) -> sa.Select[Any]:
    """``SELECT contacts.id FROM contacts ... WHERE workspace_id = :ws AND <rules>`` as one statement."""
    compiler = _Compiler(workspace_id, dialect, now, segments or {})
    compiler.candidates = _candidates(compiler, node, segments or {})
    predicate = compiler.pred(node)
    source: Any = Contact.__table__
    for target, onclause in compiler.state.joins:
        source = source.outerjoin(target, onclause)
    return sa.select(Contact.id).select_from(source).where(Contact.workspace_id == workspace_id, predicate)


def _uses_rfm(node: Node) -> bool:
    return bool(fields_used(node) & RFM_FIELDS)


def _candidates(compiler: _Compiler, node: Node, segments: Mapping[int, Resolved]) -> list[Pred]:
    """Contact-column conditions every match must meet (top-level ``all``), used to narrow the order facts.

    Order facts of contacts who fail these can never matter, so aggregating only the others returns the same
    answer for a fraction of the work. RFM needs every customer to rank them, so then nothing is narrowed.
    """
    if not isinstance(node, Group) or node.mode != "all":
        return []
    if _uses_rfm(node) or any(r.rules is not None and _uses_rfm(r.rules) for r in segments.values()):
        return []
    # The stage is a joined column of the main statement, not of the narrowing subquery: leave it out there.
    plain = [
        c
        for c in node.children
        if isinstance(c, Condition) and c.field not in ORDER_FIELDS and c.field not in RFM_FIELDS and c.field != "stage"
    ]
    return [compiler.condition(c) for c in plain]


def _notnull(expr: Any, cmp: Pred) -> Pred:
    return sa.and_(expr.is_not(None), cmp)


def _or_null(expr: Any, cmp: Pred) -> Pred:
    return sa.or_(expr.is_(None), cmp)


def _when(value: dt.datetime) -> Any:
    return sa.literal(value, UTCDateTime())


def _count_cmp(expr: Any, op: str, n: int) -> Pred:
    return {
        ">=": expr >= n,
        ">": expr > n,
        "=": expr == n,
        "<=": expr <= n,
        "<": expr < n,
        "!=": expr != n,
    }[op]


def string_pred(expr: Any, op: str, value: Any) -> Pred:
    """String operators; contains/starts_with ignore case, and LIKE wildcards in the value are literal."""
    if op == "eq":
        return _notnull(expr, expr == value)
    if op == "neq":
        return _or_null(expr, expr != value)
    if op == "in":
        return _notnull(expr, expr.in_(value))
    if op == "not_in":
        return _or_null(expr, expr.not_in(value))
    if op == "contains":
        return _notnull(expr, sa.func.lower(expr).contains(value.lower(), autoescape=True))
    if op == "starts_with":
        return _notnull(expr, sa.func.lower(expr).startswith(value.lower(), autoescape=True))
    if op == "is_set":
        return _notnull(expr, expr != "")
    if op == "is_not_set":
        return _or_null(expr, expr == "")
    raise ValueError(op)


def number_pred(expr: Any, op: str, value: Any) -> Pred:
    if op == "neq":
        return _or_null(expr, expr != value)
    cmp: Pred
    if op == "eq":
        cmp = expr == value
    elif op == "gt":
        cmp = expr > value
    elif op == "gte":
        cmp = expr >= value
    elif op == "lt":
        cmp = expr < value
    elif op == "lte":
        cmp = expr <= value
    elif op == "between":
        cmp = sa.and_(expr >= value[0], expr <= value[1])
    elif op == "in":
        cmp = expr.in_(value)
    else:
        raise ValueError(op)
    return _notnull(expr, cmp)


def date_pred(expr: Any, op: str, value: Any, now: dt.datetime) -> Pred:
    """``before`` is strictly earlier, ``after`` strictly later, ``between`` inclusive at both ends."""
    if op == "is_set":
        return expr.is_not(None)
    if op == "is_not_set":
        return expr.is_(None)
    if op == "within_last_days":
        return _notnull(expr, expr >= _when(now - dt.timedelta(days=value)))
    if op == "not_within_last_days":
        return _notnull(expr, expr < _when(now - dt.timedelta(days=value)))
    if op == "before":
        return _notnull(expr, expr < _when(_dt(value)))
    if op == "after":
        return _notnull(expr, expr > _when(_dt(value)))
    if op == "between":
        return _notnull(expr, sa.and_(expr >= _when(_dt(value[0])), expr <= _when(_dt(value[1]))))
    raise ValueError(op)


def _dt(value: Any) -> dt.datetime:
    parsed = parse_datetime(value)
    assert parsed is not None  # validated by the parser
    return parsed


def days_since_pred(last: Any, op: str, value: Any, now: dt.datetime) -> Pred:
    """Whole days since ``last`` (floor), rewritten as bounds on ``last`` so an index can serve it.

    ``days >= k`` is ``last <= now - k days`` and ``days <= k`` is ``last > now - (k + 1) days``.
    """

    def gte(k: float) -> Pred:
        return last <= _when(now - dt.timedelta(days=math.ceil(k)))

    def lte(k: float) -> Pred:
        return last > _when(now - dt.timedelta(days=math.floor(k) + 1))

    def eq(k: float) -> Pred:
        return sa.and_(gte(k), lte(k)) if k == int(k) else sa.false()

    if op == "neq":
        return _or_null(last, sa.not_(eq(value)))
    cmp = {
        "eq": lambda: eq(value),
        "gt": lambda: gte(math.floor(value) + 1),
        "gte": lambda: gte(value),
        "lt": lambda: lte(math.ceil(value) - 1),
        "lte": lambda: lte(value),
        "between": lambda: sa.and_(gte(value[0]), lte(value[1])),
        "in": lambda: sa.or_(*(eq(v) for v in value)),
    }[op]()
    return _notnull(last, cmp)


class _Compiler:
    def __init__(self, workspace_id: int, dialect: str, now: dt.datetime, segments: Mapping[int, Resolved]) -> None:
        self.ws = workspace_id
        self.dialect = dialect
        self.now = now
        self.segments = segments
        self.state = _State()
        self.aliases = 0
        self.candidates: list[Pred] = []

    def pred(self, node: Node) -> Pred:
        if isinstance(node, Group):
            parts = [self.pred(c) for c in node.children]
            return sa.and_(*parts) if node.mode == "all" else sa.or_(*parts)
        if isinstance(node, Not):
            return sa.not_(self.pred(node.child))
        if isinstance(node, Condition):
            return self.condition(node)
        if isinstance(node, Behaviour):
            return self.behaviour(node)
        if isinstance(node, Membership):
            return self.membership(node)
        raise TypeError(type(node).__name__)

    def _alias(self) -> str:
        self.aliases += 1
        return f"sf{self.aliases}"

    # --- contact attributes and traits -------------------------------------------------------------
    def condition(self, c: Condition) -> Pred:
        if c.trait_path:
            return self.trait(c)
        if c.field in ORDER_FIELDS:
            return self.order_fact(c)
        if c.field in RFM_FIELDS:
            return number_pred(self.rfm_column(c.field.split(".")[1]), c.op, c.value)
        column = self.stage_column() if c.field == "stage" else getattr(Contact, c.field)
        if c.kind == "string":
            return string_pred(column, c.op, c.value)
        if c.kind == "date":
            return date_pred(column, c.op, c.value, self.now)
        if c.kind == "bool":
            return column == (sa.true() if c.op == "is_true" else sa.false())
        return number_pred(column, c.op, c.value)

    def trait(self, c: Condition) -> Pred:
        """A trait compares only with values of its own JSON type (a number 42 never equals the string "42")."""
        keys = c.trait_path
        if self.dialect == "postgresql":
            jtype: Any = sa.func.jsonb_typeof(sa.func.jsonb_extract_path(Contact.traits, *keys))
            text: Any = sa.func.jsonb_extract_path_text(Contact.traits, *keys)
            string_type = "string"
            number_types: tuple[str, ...] = ("number",)
            as_string: Any = text
            as_number: Any = sa.cast(text, sa.Float)
            is_true: Pred = sa.and_(jtype == "boolean", text == "true")
            is_false: Pred = sa.and_(jtype == "boolean", text == "false")
        else:
            json_path = "$." + ".".join(f'"{k}"' for k in keys)
            jtype = sa.func.json_type(Contact.traits, json_path)
            raw = sa.func.json_extract(Contact.traits, json_path)
            string_type, number_types = "text", ("integer", "real")
            as_string, as_number = raw, raw
            is_true, is_false = jtype == "true", jtype == "false"
        if c.op == "is_true":
            return sa.and_(jtype.is_not(None), is_true)
        if c.op == "is_false":
            return sa.and_(jtype.is_not(None), is_false)
        if c.op == "is_set":
            return sa.and_(jtype.is_not(None), jtype != "null")
        if c.op == "is_not_set":
            return sa.or_(jtype.is_(None), jtype == "null")
        if c.kind == "string":
            value: Any = sa.case((jtype == string_type, as_string), else_=sa.null())
            return string_pred(value, c.op, c.value)
        number: Any = sa.case((jtype.in_(number_types), as_number), else_=sa.null())
        return number_pred(number, c.op, c.value)

    def stage_column(self) -> Any:
        """The current stage by one outer join: a subquery per contact took 6x longer at 1M contacts."""
        if self.state.stages is None:
            stages: sa.Table = ContactStage.__table__  # type: ignore[assignment]
            self.state.stages = stages
            self.state.joins.append((stages, stages.c.contact_id == Contact.id))
        return self.state.stages.c.stage

    # --- order facts and RFM ---------------------------------------------------------------------
    def facts(self) -> Any:
        if self.state.facts is None:
            grouped = (
                sa.select(
                    Order.contact_id.label("contact_id"),
                    sa.func.count().label("order_count"),
                    sa.func.sum(Order.total).label("revenue"),
                    sa.func.min(Order.placed_at).label("first_order_at"),
                    sa.func.max(Order.placed_at).label("last_order_at"),
                )
                .where(
                    Order.workspace_id == self.ws,
                    Order.contact_id.is_not(None),
                    Order.status.not_in(EXCLUDED_ORDER_STATUSES),
                )
                .group_by(Order.contact_id)
            )
            if self.candidates:
                narrowed = sa.select(Contact.id).where(Contact.workspace_id == self.ws, *self.candidates)
                grouped = grouped.where(Order.contact_id.in_(narrowed))
            facts = grouped.cte("order_facts")
            self.state.facts = facts
            self.state.joins.append((facts, facts.c.contact_id == Contact.id))
        return self.state.facts

    def order_fact(self, c: Condition) -> Pred:
        f = self.facts()
        if c.field == "order_count":
            return number_pred(sa.func.coalesce(f.c.order_count, 0), c.op, c.value)
        if c.field == "revenue":
            return number_pred(sa.func.coalesce(f.c.revenue, 0), c.op, c.value)
        if c.field == "days_since_last_order":
            return days_since_pred(f.c.last_order_at, c.op, c.value, self.now)
        return date_pred(f.c[c.field], c.op, c.value, self.now)

    def rfm_column(self, name: str) -> Any:
        """Quintile scores over the workspace's customers; ties broken by contact id so both backends agree.

        Higher is better: 5 is the most recent last order, the most orders, the most revenue.
        """
        if self.state.rfm is None:
            f = self.facts()
            rfm = sa.select(
                f.c.contact_id,
                sa.func.ntile(RFM_BUCKETS).over(order_by=(f.c.last_order_at, f.c.contact_id)).label("recency"),
                sa.func.ntile(RFM_BUCKETS).over(order_by=(f.c.order_count, f.c.contact_id)).label("frequency"),
                sa.func.ntile(RFM_BUCKETS).over(order_by=(f.c.revenue, f.c.contact_id)).label("monetary"),
            ).cte("rfm")
            self.state.rfm = rfm
            self.state.joins.append((rfm, rfm.c.contact_id == Contact.id))
        return self.state.rfm.c[name]

    # --- behaviour and membership ----------------------------------------------------------------
    def behaviour(self, b: Behaviour) -> Pred:
        conds: list[Pred] = [Touch.workspace_id == self.ws, Touch.contact_id.is_not(None)]
        if b.event is not None:
            conds.append(Touch.event == b.event)
        if b.touch_kind is not None:
            conds.append(Touch.kind == b.touch_kind)
        if b.channel is not None:
            conds.append(Touch.channel == b.channel)
        if b.within_days is not None:
            conds.append(Touch.occurred_at >= _when(self.now - dt.timedelta(days=b.within_days)))
        counts = (
            sa.select(Touch.contact_id.label("contact_id"), sa.func.count().label("n"))
            .where(*conds)
            .group_by(Touch.contact_id)
            .subquery(self._alias())
        )
        self.state.joins.append((counts, counts.c.contact_id == Contact.id))
        return _count_cmp(sa.func.coalesce(counts.c.n, 0), b.op, b.count)

    def membership(self, m: Membership) -> Pred:
        target = self.segments.get(m.segment)
        if target is None:
            raise KeyError(m.segment)  # the service resolves every reference before compiling
        if target.kind == "dynamic" and target.rules is not None:
            inner = self.pred(target.rules)
        else:
            members = (
                sa.select(SegmentMember.contact_id.label("contact_id"))
                .where(
                    SegmentMember.workspace_id == self.ws,
                    SegmentMember.segment_id == m.segment,
                    SegmentMember.left_at.is_(None),
                )
                .subquery(self._alias())
            )
            self.state.joins.append((members, members.c.contact_id == Contact.id))
            inner = members.c.contact_id.is_not(None)
        return inner if m.op == "in" else sa.not_(inner)
