"""Transitions as events: subscribers after commit only, and the durable outbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle import events, service
from storefunnel.cycle.events import StageTransition
from storefunnel.models import Contact, CycleOutbox, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.cycle.helpers import day


@pytest.fixture
def received() -> Iterator[list[StageTransition]]:
    got: list[StageTransition] = []
    unsubscribe = events.subscribe(got.append)
    yield got
    unsubscribe()


def test_subscribers_hear_after_commit_not_before_and_not_on_rollback(
    session: Session, workspace: Workspace, make: Any, received: list[StageTransition]
) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    service.update_contacts(session, workspace.id, [c.id], day(1))
    assert received == []
    session.commit()
    assert received == [StageTransition(workspace.id, c.id, None, "prospecting", day(0), "created")]
    make.order(session, workspace.id, c, placed_at=day(2))
    service.on_facts_changed(session, workspace.id, [c.id])
    session.rollback()
    assert len(received) == 1


def test_incremental_writes_only_changes_and_publishes_them(
    session: Session, workspace: Workspace, make: Any, received: list[StageTransition]
) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    assert len(service.update_contacts(session, workspace.id, [c.id], day(1))) == 1
    assert service.update_contacts(session, workspace.id, [c.id], day(1)) == []
    make.order(session, workspace.id, c, placed_at=day(2))
    new = service.update_contacts(session, workspace.id, [c.id], day(3))
    assert [(t.from_stage, t.to_stage, t.at) for t in new] == [("prospecting", "buying", day(2))]
    outbox = session.scalars(sa.select(CycleOutbox).where(CycleOutbox.workspace_id == workspace.id)).all()
    assert [(o.to_stage, o.published_at) for o in outbox] == [("prospecting", None), ("buying", None)]


def test_recompute_publishes_nothing(session: Session, workspace: Workspace, make: Any) -> None:
    make.contact(session, workspace.id, created_at=day(0))
    service.recompute(session, workspace.id, day(1))
    assert session.scalar(sa.select(sa.func.count()).where(CycleOutbox.workspace_id == workspace.id)) == 0


def test_outbox_survives_a_restart_and_drains_once(committed_session: Session) -> None:
    """Committed for real: a consumer in a new session (a restarted process) finds what nobody handled."""
    s = committed_session
    ws = create_workspace(s, f"outbox-{uuid.uuid4().hex[:8]}")
    try:
        c = Contact(workspace_id=ws.id, email="o@example.com", created_at=day(0))
        s.add(c)
        s.flush()
        service.update_contacts(s, ws.id, [c.id], day(100))
        s.commit()
        from storefunnel.db import get_sessionmaker

        got: list[StageTransition] = []
        with get_sessionmaker()() as restarted:
            assert events.drain(restarted, got.append, workspace_id=ws.id) == 2
            restarted.commit()
        with get_sessionmaker()() as again:
            assert events.drain(again, got.append, workspace_id=ws.id) == 0
        assert [t.to_stage for t in got] == ["prospecting", "lapsed"]
    finally:
        s.rollback()
        s.execute(sa.delete(Workspace).where(Workspace.id == ws.id))
        s.commit()


def test_failing_subscriber_does_not_stop_others(
    session: Session, workspace: Workspace, make: Any, received: list[StageTransition]
) -> None:
    def boom(_t: StageTransition) -> None:
        raise RuntimeError("subscriber bug")

    unsubscribe = events.subscribe(boom)
    try:
        c = make.contact(session, workspace.id, created_at=day(0))
        service.update_contacts(session, workspace.id, [c.id], day(1))
        session.commit()
    finally:
        unsubscribe()
    assert len(received) == 1
