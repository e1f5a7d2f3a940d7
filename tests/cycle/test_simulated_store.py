"""The cycle over a simulated store: every contact's history equals the plain state machine's."""

from __future__ import annotations

import uuid
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel.cycle import service
from storefunnel.cycle.rules import TouchFact, Transition, replay
from storefunnel.models import Contact, Order, Touch, Workspace
from storefunnel.simulate import simulate_store
from storefunnel.workspaces.service import create_workspace
from tests.cycle.helpers import FAR


def test_simulated_store_histories_match_the_state_machine(engine: Engine, committed_session: Session) -> None:
    s = committed_session
    ws = create_workspace(s, f"sim-cycle-{uuid.uuid4().hex[:8]}")
    s.commit()
    try:
        simulate_store(engine, ws.id, contacts=300, days=120, seed=3)
        result = service.recompute(s, ws.id, FAR)
        s.commit()
        rules = service.get_rules(s, ws.id)
        created = dict(s.execute(sa.select(Contact.id, Contact.created_at).where(Contact.workspace_id == ws.id)).all())
        touches: dict[int, list[TouchFact]] = defaultdict(list)
        for cid, at, event, props in s.execute(
            sa.select(Touch.contact_id, Touch.occurred_at, Touch.event, Touch.properties)
            .where(Touch.workspace_id == ws.id, Touch.contact_id.is_not(None))
            .order_by(Touch.id)
        ):
            touches[cid].append(TouchFact(at, event, (props or {}).get("flow")))
        orders = defaultdict(list)
        for cid, at in s.execute(
            sa.select(Order.contact_id, Order.placed_at).where(
                Order.workspace_id == ws.id,
                Order.contact_id.is_not(None),
                Order.status.not_in(rules.cancelled_statuses),
            )
        ):
            orders[cid].append(at)
        stored: dict[int, list[Transition]] = defaultdict(list)
        for cid, at, frm, stage, reason in service.stored_history(s, ws.id):
            stored[cid].append(Transition(at, frm, stage, reason))
        assert len(created) > 0
        for cid, created_at in created.items():
            assert stored[cid] == replay(rules, created_at, touches[cid], orders[cid], FAR), cid
        buyers = sum(1 for h in stored.values() if any(t.stage == "buying" for t in h))
        assert buyers == sum(1 for placed in orders.values() if placed)
        assert buyers > 0
        assert sum(result.counts.values()) == len(created)
    finally:
        s.rollback()
        s.execute(sa.delete(Workspace).where(Workspace.id == ws.id))
        s.commit()
