"""Cycle operations: full recompute, incremental update, tick, rules, and the read models; never commits."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from storefunnel.cycle import engine
from storefunnel.cycle.events import StageTransition, publish
from storefunnel.cycle.rules import SETTINGS_KEY, STAGE_ORDER, CycleRules, rules_from_settings
from storefunnel.db import utcnow
from storefunnel.errors import Invalid
from storefunnel.models import Contact, ContactStage, Order, StageChange, Touch, Workspace
from storefunnel.models.contact import Stage
from storefunnel.tenancy import get_scoped
from storefunnel.workspaces.service import set_setting

CHUNK = 2000
HistoryKey = tuple[int, dt.datetime, str | None, str, str]


@dataclass(frozen=True)
class RecomputeResult:
    workspace_id: int
    as_of: dt.datetime
    transitions: int
    counts: dict[str, int]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def get_rules(session: Session, workspace_id: int) -> CycleRules:
    workspace = get_scoped_workspace(session, workspace_id)
    try:
        return rules_from_settings(workspace.settings)
    except ValidationError as exc:
        raise Invalid(f"stored cycle rules are invalid: {exc.errors()[0]['msg']}") from None


def get_scoped_workspace(session: Session, workspace_id: int) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise Invalid(f"workspace {workspace_id} does not exist")
    return workspace


def set_rules(session: Session, workspace_id: int, rules: CycleRules) -> CycleRules:
    """Store the rules (the whole object, so later default changes do not silently alter a tuned store)."""
    get_scoped_workspace(session, workspace_id)
    set_setting(session, workspace_id, SETTINGS_KEY, rules.model_dump(mode="json"))
    return rules


def recompute(session: Session, workspace_id: int, as_of: dt.datetime | None = None) -> RecomputeResult:
    """Rebuild the whole workspace's history in the caller's transaction.

    A rebuild publishes nothing: it restates history, it is not something that happened to a contact.
    """
    as_of = as_of or utcnow()
    rules = get_rules(session, workspace_id)
    n = engine.write_full(session, _dialect(session), workspace_id, rules, as_of)
    return RecomputeResult(workspace_id, as_of, n, stage_counts(session, workspace_id))


def update_contacts(
    session: Session, workspace_id: int, contact_ids: Iterable[int], as_of: dt.datetime | None = None
) -> list[StageTransition]:
    """Recompute just these contacts with the same SQL, write only the differences, publish the new rows.

    On PostgreSQL the contacts are locked first (FOR NO KEY UPDATE, in id order), so two transactions updating
    one contact take turns instead of both writing the same new rows.
    """
    as_of = as_of or utcnow()
    ids = sorted(set(contact_ids))
    if not ids:
        return []
    rules = get_rules(session, workspace_id)
    dialect = _dialect(session)
    published: list[StageTransition] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        if dialect == "postgresql":
            session.execute(
                sa.select(Contact.id)
                .where(Contact.workspace_id == workspace_id, Contact.id.in_(chunk))
                .order_by(Contact.id)
                .with_for_update(key_share=True)
            ).all()
        fresh: set[HistoryKey] = {
            (r.contact_id, r.changed_at, r.from_stage, r.stage, r.reason)
            for r in session.execute(
                engine.history_select(dialect, rules, by_contact=True),
                engine.history_params(workspace_id, as_of, chunk),
            )
        }
        stored: dict[HistoryKey, int] = {
            (r.contact_id, r.changed_at, r.from_stage, r.stage, r.reason): r.id
            for r in session.execute(
                sa.select(
                    StageChange.id,
                    StageChange.contact_id,
                    StageChange.changed_at,
                    StageChange.from_stage,
                    StageChange.stage,
                    StageChange.reason,
                ).where(StageChange.workspace_id == workspace_id, StageChange.contact_id.in_(chunk))
            )
        }
        stale = [row_id for key, row_id in stored.items() if key not in fresh]
        added = sorted((key for key in fresh if key not in stored), key=lambda k: (k[0], k[1]))
        if not stale and not added:
            continue
        if stale:
            session.execute(sa.delete(engine.CHANGES).where(engine.CHANGES.c.id.in_(stale)))
        if added:
            session.execute(
                sa.insert(engine.CHANGES),
                [
                    {
                        "workspace_id": workspace_id,
                        "contact_id": cid,
                        "changed_at": at,
                        "from_stage": from_stage,
                        "stage": stage,
                        "reason": reason,
                    }
                    for cid, at, from_stage, stage, reason in added
                ],
            )
        engine.sync_contacts(session, workspace_id, chunk)
        published.extend(StageTransition(workspace_id, k[0], k[2], k[3], k[1], k[4]) for k in added)
    publish(session, published)
    return published


def on_facts_changed(session: Session, workspace_id: int, contact_ids: Iterable[int]) -> list[StageTransition]:
    """Call after writing touches or orders (in the same transaction) so stages stay current."""
    return update_contacts(session, workspace_id, contact_ids)


def due_contacts(session: Session, workspace_id: int, now: dt.datetime) -> list[int]:
    """Contacts with a timed transition due by ``now``, or never computed: one set-based query."""
    rules = get_rules(session, workspace_id)
    window_start = now - dt.timedelta(days=rules.thank_you_window_days)
    lapse_start = now - dt.timedelta(days=rules.lapse_days)

    def order_since(start: dt.datetime) -> Any:
        return (
            sa.exists()
            .where(
                Order.workspace_id == workspace_id,
                Order.contact_id == Contact.id,
                Order.placed_at > start,
                Order.placed_at <= now,
                Order.status.not_in(rules.cancelled_statuses),
            )
            .correlate(Contact)
        )

    touch_since_lapse_start = (
        sa.exists()
        .where(
            Touch.workspace_id == workspace_id,
            Touch.contact_id == Contact.id,
            Touch.occurred_at > lapse_start,
            Touch.occurred_at <= now,
        )
        .correlate(Contact)
    )
    stage = ContactStage.stage
    window_over = sa.and_(stage.in_([Stage.buying.value, Stage.thanked.value]), ~order_since(window_start))
    # No fact at all in (now - lapse_days, now]; creation counts as a fact.
    gone_quiet = sa.and_(
        stage != Stage.lapsed.value,
        ~sa.and_(Contact.created_at > lapse_start, Contact.created_at <= now),
        ~touch_since_lapse_start,
        ~order_since(lapse_start),
    )
    stmt = (
        sa.select(Contact.id)
        .outerjoin(ContactStage, ContactStage.contact_id == Contact.id)
        .where(Contact.workspace_id == workspace_id, sa.or_(stage.is_(None), window_over, gone_quiet))
    )
    return list(session.scalars(stmt))


def tick(session: Session, workspace_id: int, now: dt.datetime | None = None) -> list[StageTransition]:
    """Advance the time-driven transitions (window end, lapse) to ``now`` for everyone who has one due."""
    now = now or utcnow()
    return update_contacts(session, workspace_id, due_contacts(session, workspace_id, now), now)


def stage_counts(session: Session, workspace_id: int) -> dict[str, int]:
    counts = dict.fromkeys(STAGE_ORDER, 0)
    stmt = (
        sa.select(ContactStage.stage, sa.func.count())
        .where(ContactStage.workspace_id == workspace_id)
        .group_by(ContactStage.stage)
    )
    for stage, n in session.execute(stmt):
        counts[str(stage)] = int(n)
    return counts


def history(session: Session, workspace_id: int, contact_id: int) -> Sequence[StageChange]:
    get_scoped(session, Contact, workspace_id, contact_id)
    return session.scalars(
        sa.select(StageChange)
        .where(StageChange.workspace_id == workspace_id, StageChange.contact_id == contact_id)
        .order_by(StageChange.changed_at, StageChange.id)
    ).all()


def stored_history(session: Session, workspace_id: int) -> list[tuple[Any, ...]]:
    """Every stored transition of the workspace, in a canonical order (for comparisons and exports)."""
    rows = session.execute(
        sa.select(
            StageChange.contact_id,
            StageChange.changed_at,
            StageChange.from_stage,
            StageChange.stage,
            StageChange.reason,
        )
        .where(StageChange.workspace_id == workspace_id)
        .order_by(StageChange.contact_id, StageChange.changed_at)
    )
    return [tuple(r) for r in rows]


Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927), sound near 0 and 1 and for small n."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def pipeline(session: Session, workspace_id: int, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Stage entries in ``[start, end)``, where each went next (before ``end``), and how long it stayed.

    Rates are cohort rates: of the contacts that entered stage A in the period, the share whose next stage
    was B; numerator and denominator are the same people, so the Wilson interval applies.
    """
    if start >= end:
        raise Invalid("from: must be before to")
    dialect = _dialect(session)
    sc = engine.CHANGES
    seq = (
        sa.select(
            sc.c.contact_id,
            sc.c.stage,
            sc.c.changed_at,
            sa.func.lead(sc.c.stage).over(partition_by=sc.c.contact_id, order_by=sc.c.changed_at).label("next_stage"),
            sa.func.lead(sc.c.changed_at).over(partition_by=sc.c.contact_id, order_by=sc.c.changed_at).label("next_at"),
        )
        .where(sc.c.workspace_id == workspace_id)
        .subquery("cycle_seq")
    )
    end_p = sa.literal(end, engine.UTCDateTime())
    start_p = sa.literal(start, engine.UTCDateTime())
    exited = sa.and_(seq.c.next_at.is_not(None), seq.c.next_at < end_p)
    next_stage = sa.case((exited, seq.c.next_stage), else_=None)
    in_period = sa.and_(seq.c.changed_at >= start_p, seq.c.changed_at < end_p)
    flows = session.execute(
        sa.select(seq.c.stage, next_stage.label("next_stage"), sa.func.count())
        .where(in_period)
        .group_by(seq.c.stage, next_stage)
    ).all()
    at_end = session.execute(
        sa.select(seq.c.stage, sa.func.count())
        .where(seq.c.changed_at < end_p, sa.or_(seq.c.next_at.is_(None), seq.c.next_at >= end_p))
        .group_by(seq.c.stage)
    ).all()
    durations = session.execute(
        sa.select(seq.c.stage, engine.seconds_between(seq.c.changed_at, seq.c.next_at, dialect)).where(
            in_period, exited
        )
    ).all()

    entered = dict.fromkeys(STAGE_ORDER, 0)
    moved: dict[tuple[str, str], int] = {}
    for stage, nxt, n in flows:
        entered[stage] = entered.get(stage, 0) + int(n)
        if nxt is not None:
            moved[(stage, nxt)] = int(n)
    contacts = dict.fromkeys(STAGE_ORDER, 0)
    for stage, n in at_end:
        contacts[stage] = int(n)
    by_stage: dict[str, list[float]] = {}
    for stage, seconds in durations:
        by_stage.setdefault(stage, []).append(float(seconds))

    stages = []
    for stage in STAGE_ORDER:
        secs = by_stage.get(stage, [])
        stages.append(
            {
                "stage": stage,
                "contacts": contacts.get(stage, 0),
                "entered": entered.get(stage, 0),
                "exited": len(secs),
                "median_days_in_stage": float(np.median(secs)) / 86400.0 if secs else None,
            }
        )
    conversions = []
    for (a, b), n in sorted(moved.items(), key=lambda kv: (STAGE_ORDER.index(kv[0][0]), STAGE_ORDER.index(kv[0][1]))):
        low, high = wilson(n, entered[a])
        conversions.append(
            {
                "from_stage": a,
                "to_stage": b,
                "count": n,
                "of": entered[a],
                "rate": n / entered[a],
                "low": low,
                "high": high,
            }
        )
    return {"from": start, "to": end, "stages": stages, "conversions": conversions}
