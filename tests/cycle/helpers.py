"""Shared helpers: build one contact's facts, run the engine, compare with the plain state machine."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle import service
from storefunnel.cycle.rules import CycleRules, TouchFact, Transition, replay
from storefunnel.models import Contact, Order, Touch

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FAR = T0 + dt.timedelta(days=3650)


def day(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def facts_of(session: Session, workspace_id: int, contact_id: int, rules: CycleRules) -> dict[str, Any]:
    """The contact's facts as ``replay`` takes them, read back from the database (touches in id order)."""
    contact = session.get(Contact, contact_id)
    assert contact is not None
    touches = session.scalars(
        sa.select(Touch).where(Touch.workspace_id == workspace_id, Touch.contact_id == contact_id).order_by(Touch.id)
    ).all()
    orders = session.scalars(
        sa.select(Order.placed_at).where(
            Order.workspace_id == workspace_id,
            Order.contact_id == contact_id,
            Order.status.not_in(rules.cancelled_statuses),
        )
    ).all()
    return {
        "created_at": contact.created_at,
        "touches": [TouchFact(t.occurred_at, t.event, (t.properties or {}).get("flow")) for t in touches],
        "orders": list(orders),
    }


def stored(session: Session, workspace_id: int, contact_id: int) -> list[Transition]:
    return [
        Transition(r.changed_at, r.from_stage, r.stage, r.reason)
        for r in service.history(session, workspace_id, contact_id)
    ]


def run(session: Session, workspace_id: int, contact_id: int, as_of: dt.datetime = FAR) -> list[tuple[Any, ...]]:
    """Recompute the workspace, check the SQL against the state machine, return ``(stage, at, reason)`` rows."""
    service.recompute(session, workspace_id, as_of)
    rules = service.get_rules(session, workspace_id)
    got = stored(session, workspace_id, contact_id)
    expected = replay(rules, as_of=as_of, **facts_of(session, workspace_id, contact_id, rules))
    assert got == expected
    contact = session.get(Contact, contact_id)
    assert contact is not None
    session.refresh(contact)
    if got:
        assert (contact.stage, contact.stage_at) == (got[-1].stage, got[-1].at)
    else:
        assert contact.stage is None
    return [(t.stage, t.at, t.reason) for t in got]
