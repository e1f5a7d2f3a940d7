"""Incremental == full == the plain state machine, for generated event streams applied in random batches."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from storefunnel.cycle import service
from storefunnel.cycle.rules import CycleRules, replay
from storefunnel.workspaces.service import create_workspace
from tests.cycle.helpers import T0, facts_of, stored
from tests.fixtures.factories import create_contact, create_order, create_touch

# Coarse times (half-days) make ties with each other and with the window/lapse due times common.
HALF_DAY = dt.timedelta(hours=12)
AS_OF = T0 + 60 * dt.timedelta(days=1)
TOUCH_KINDS = {
    "intent": {"kind": "track", "event": "Product Viewed"},
    "thank_event": {"kind": "track", "event": "Thank You Sent"},
    "thank_flow": {"kind": "track", "event": "Email Opened", "properties": {"flow": "thank_you"}},
    "page": {"kind": "page"},
}
KINDS = [*TOUCH_KINDS, "order", "cancelled"]

when = st.builds(
    lambda half_days, micro: T0 + half_days * HALF_DAY + dt.timedelta(microseconds=micro),
    st.integers(0, 130),
    st.sampled_from([0, 0, 0, 1, 999_999]),
)
event = st.tuples(st.integers(0, 2), st.sampled_from(KINDS), when)
scenario = st.fixed_dictionaries(
    {
        "created": st.lists(when, min_size=3, max_size=3),
        "events": st.lists(event, max_size=25),
        "cuts": st.lists(st.integers(0, 25), max_size=4),
        "window": st.integers(1, 4),
        "lapse_extra": st.integers(1, 10),
    }
)


def _add(session: Session, workspace_id: int, contact: Any, kind: str, at: dt.datetime) -> None:
    if kind == "order":
        create_order(session, workspace_id, contact, placed_at=at)
    elif kind == "cancelled":
        create_order(session, workspace_id, contact, placed_at=at, status="cancelled")
    else:
        fields = dict(TOUCH_KINDS[kind])
        create_touch(session, workspace_id, contact, occurred_at=at, **fields)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scenario)
def test_incremental_equals_full_equals_state_machine(session: Session, data: dict[str, Any]) -> None:
    ws = create_workspace(session, f"prop-{id(data)}-{dt.datetime.now().timestamp()}")
    rules = CycleRules(thank_you_window_days=data["window"], lapse_days=data["window"] + data["lapse_extra"])
    service.set_rules(session, ws.id, rules)
    contacts = [create_contact(session, ws.id, created_at=at) for at in data["created"]]
    service.update_contacts(session, ws.id, [c.id for c in contacts], AS_OF)

    events = data["events"]
    bounds = sorted({0, len(events), *(min(c, len(events)) for c in data["cuts"])})
    for lo, hi in itertools.pairwise(bounds):
        batch = events[lo:hi]
        for who, kind, at in batch:
            _add(session, ws.id, contacts[who], kind, at)
        service.update_contacts(session, ws.id, {contacts[who].id for who, _, _ in batch}, AS_OF)

    incremental = service.stored_history(session, ws.id)
    service.recompute(session, ws.id, AS_OF)
    assert service.stored_history(session, ws.id) == incremental
    for c in contacts:
        assert stored(session, ws.id, c.id) == replay(rules, as_of=AS_OF, **facts_of(session, ws.id, c.id, rules))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scenario, ticks=st.lists(st.integers(0, 130), min_size=1, max_size=5))
def test_live_timeline_with_ticks_equals_full_recompute(
    session: Session, data: dict[str, Any], ticks: list[int]
) -> None:
    """Facts reported as they happen (on_facts_changed) plus ticks give the history of one recompute."""
    ws = create_workspace(session, f"tick-{id(data)}-{dt.datetime.now().timestamp()}")
    rules = CycleRules(thank_you_window_days=data["window"], lapse_days=data["window"] + data["lapse_extra"])
    service.set_rules(session, ws.id, rules)
    contacts = [create_contact(session, ws.id, created_at=at) for at in data["created"]]
    previous = T0 - dt.timedelta(days=1)
    times = sorted({T0 + n * HALF_DAY for n in ticks})
    for now in times:
        arrived = [e for e in data["events"] if previous < e[2] <= now]
        for who, kind, at in arrived:
            _add(session, ws.id, contacts[who], kind, at)
        changed = {contacts[who].id for who, _, _ in arrived}
        changed |= {c.id for c in contacts if previous < c.created_at <= now}
        service.update_contacts(session, ws.id, changed, now)
        service.tick(session, ws.id, now)
        previous = now
    ticked = service.stored_history(session, ws.id)
    service.recompute(session, ws.id, times[-1])
    assert service.stored_history(session, ws.id) == ticked
