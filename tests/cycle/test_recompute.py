"""The full recompute writes only the difference, and on PostgreSQL it takes turns with drains and updates."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle import dirty, engine, service
from storefunnel.cycle.rules import CycleRules, replay
from storefunnel.db import get_sessionmaker
from storefunnel.models import Contact, CycleDirty, StageChange, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.cycle.helpers import day, facts_of, stored
from tests.fixtures.factories import create_contact, create_order, create_touch

AS_OF = day(400)


def ids_and_rows(session: Session, workspace_id: int) -> dict[int, tuple[object, ...]]:
    rows = session.execute(
        sa.select(
            StageChange.id, StageChange.contact_id, StageChange.changed_at, StageChange.from_stage, StageChange.stage
        ).where(StageChange.workspace_id == workspace_id)
    )
    return {r.id: tuple(r)[1:] for r in rows}


def build(session: Session, workspace_id: int) -> list[Contact]:
    """Three contacts: a buyer who lapses, a browser with intent, one created after ``AS_OF`` (no history)."""
    buyer = create_contact(session, workspace_id, created_at=day(0))
    create_touch(session, workspace_id, buyer, occurred_at=day(1), kind="track", event="Product Viewed")
    create_order(session, workspace_id, buyer, placed_at=day(2))
    create_touch(session, workspace_id, buyer, occurred_at=day(3), kind="track", event="Thank You Sent")
    browser = create_contact(session, workspace_id, created_at=day(10))
    create_touch(session, workspace_id, browser, occurred_at=day(11), kind="track", event="Cart Viewed")
    later = create_contact(session, workspace_id, created_at=AS_OF + (AS_OF - day(0)))
    return [buyer, browser, later]


def assert_matches_replay(session: Session, workspace_id: int, contacts: list[Contact]) -> None:
    rules = CycleRules()
    for c in contacts:
        assert stored(session, workspace_id, c.id) == replay(
            rules, as_of=AS_OF, **facts_of(session, workspace_id, c.id, rules)
        )


def test_a_rerun_with_nothing_changed_rewrites_no_row(session: Session, workspace: Workspace) -> None:
    contacts = build(session, workspace.id)
    first = service.recompute(session, workspace.id, AS_OF)
    before = ids_and_rows(session, workspace.id)
    assert first.transitions == len(before) > 0
    again = service.recompute(session, workspace.id, AS_OF)
    assert (again.transitions, again.counts) == (first.transitions, first.counts)
    assert ids_and_rows(session, workspace.id) == before  # same rows under the same ids: nothing rewritten
    assert_matches_replay(session, workspace.id, contacts)


def test_a_change_rewrites_only_that_contacts_rows(session: Session, workspace: Workspace) -> None:
    buyer, browser, later = build(session, workspace.id)
    service.recompute(session, workspace.id, AS_OF)
    before = ids_and_rows(session, workspace.id)
    create_order(session, workspace.id, browser, placed_at=day(12))
    service.recompute(session, workspace.id, AS_OF)
    after = ids_and_rows(session, workspace.id)
    kept = {i: row for i, row in before.items() if row[0] == buyer.id}
    assert kept
    assert all(after.get(i) == row for i, row in kept.items())
    assert {row[0] for i, row in after.items() if i not in before} == {browser.id}
    assert_matches_replay(session, workspace.id, [buyer, browser, later])


def test_recompute_repairs_stored_rows_and_stages(session: Session, workspace: Workspace) -> None:
    buyer, browser, later = build(session, workspace.id)
    service.recompute(session, workspace.id, AS_OF)
    session.execute(sa.delete(StageChange).where(StageChange.contact_id == buyer.id, StageChange.stage == "buying"))
    session.add(StageChange(workspace_id=workspace.id, contact_id=browser.id, stage="thanked", changed_at=day(50)))
    later.stage, later.stage_at = "lapsed", day(1)
    session.flush()
    service.recompute(session, workspace.id, AS_OF)
    session.expire_all()
    assert_matches_replay(session, workspace.id, [buyer, browser, later])
    rows = session.execute(sa.select(Contact.id, Contact.stage).where(Contact.workspace_id == workspace.id))
    stages = dict(rows.tuples().all())
    assert stages == {buyer.id: "lapsed", browser.id: "lapsed", later.id: None}


# ---- PostgreSQL: committed data, two transactions ----


@pytest.fixture
def committed(committed_session: Session) -> Iterator[Workspace]:
    if committed_session.get_bind().dialect.name != "postgresql":
        pytest.skip("row and advisory locks are PostgreSQL's; SQLite runs one writer at a time")
    workspace = create_workspace(committed_session, f"recompute-{uuid.uuid4().hex[:8]}")
    committed_session.commit()
    yield workspace
    committed_session.rollback()
    committed_session.execute(sa.delete(Workspace).where(Workspace.id == workspace.id))
    committed_session.commit()


def wait_until_blocked(session: Session, thread: threading.Thread, blocker: int, timeout: float = 60.0) -> None:
    """Until a backend waits on a lock ``blocker`` (a backend's pid) holds: the recompute running in the thread."""
    deadline = time.monotonic() + timeout
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND CAST(:blocker AS integer) = ANY(pg_blocking_pids(pid))"
    )
    while time.monotonic() < deadline:
        blocked = session.scalar(query, {"blocker": blocker})
        # PostgreSQL reads the activity of other backends once per transaction: end it to look again.
        session.rollback()
        if blocked:
            return
        assert thread.is_alive(), "the recompute ended without waiting on the held contact"
        time.sleep(0.05)
    raise AssertionError("the recompute never waited on the held contact")


def test_recompute_waits_for_a_contact_being_updated_instead_of_deadlocking(
    committed: Workspace, committed_session: Session
) -> None:
    """An update holds a contact, a recompute starts, then the update rewrites that contact's rows.

    Deleting the history before locking the contacts made this a deadlock (one side was killed).
    """
    ws = committed.id
    contacts = build(committed_session, ws)
    committed_session.commit()
    service.recompute(committed_session, ws, AS_OF)
    buyer = contacts[0]
    # Orders for buyer and browser, not yet applied: they cancel stored rows (lapses), so both rewrite them.
    for c in contacts[:2]:
        create_order(committed_session, ws, c, placed_at=day(20))
    committed_session.commit()

    errors: list[BaseException] = []

    def recompute() -> None:
        try:
            with get_sessionmaker()() as other, other.begin():
                service.recompute(other, ws, AS_OF)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with get_sessionmaker()() as holder, holder.begin():
        holder.execute(sa.select(Contact.id).where(Contact.id == buyer.id).with_for_update(key_share=True)).all()
        holder_pid = int(holder.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
        thread = threading.Thread(target=recompute)
        thread.start()
        with get_sessionmaker()() as watcher:
            wait_until_blocked(watcher, thread, holder_pid)
        service.update_contacts(holder, ws, [buyer.id], AS_OF)
    thread.join(60)
    assert not thread.is_alive()
    assert errors == []
    committed_session.expire_all()
    assert_matches_replay(committed_session, ws, contacts)
    # The buyer was rewritten by the update while the recompute waited: left as the update made it, and marked.
    marks = committed_session.scalars(sa.select(CycleDirty.contact_id).where(CycleDirty.workspace_id == ws)).all()
    assert marks == [buyer.id]


def test_drains_leave_a_workspace_alone_while_its_recompute_runs(
    committed: Workspace, committed_session: Session
) -> None:
    ws = committed.id
    contact = create_contact(committed_session, ws, created_at=day(0))
    dirty.mark(committed_session, ws, [contact.id])
    committed_session.commit()
    with get_sessionmaker()() as holder, holder.begin():
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:k, :ws)"), {"k": engine.RECOMPUTE_LOCK, "ws": ws})
        with get_sessionmaker()() as drainer, drainer.begin():
            held = dirty.drain(drainer, workspace_id=ws)
    assert (held.marks, held.contacts, held.deferred) == (0, 0, 1)
    assert dirty.pending(committed_session, ws) == 1
    with get_sessionmaker()() as drainer, drainer.begin():
        free = dirty.drain(drainer, workspace_id=ws)
    assert (free.marks, free.contacts) == (1, 1)


def test_the_recompute_sort_memory_is_a_setting(
    session: Session, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``STOREFUNNEL_CYCLE_RECOMPUTE_WORK_MEM_MB`` is what the recompute's transaction sorts with on PostgreSQL."""
    from storefunnel.config import get_settings

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("work_mem is PostgreSQL's")
    contacts = build(session, workspace.id)
    monkeypatch.setenv("STOREFUNNEL_CYCLE_RECOMPUTE_WORK_MEM_MB", "48")
    get_settings.cache_clear()
    try:
        service.recompute(session, workspace.id, AS_OF)
        assert session.execute(sa.text("SHOW work_mem")).scalar_one() == "48MB"
    finally:
        get_settings.cache_clear()
    assert_matches_replay(session, workspace.id, contacts)


def test_a_large_rewrite_refreshes_the_planner_statistics_of_the_history(
    session: Session, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``ANALYZE_AFTER`` rows written, ``stage_changes`` is analysed in the same transaction.

    Without fresh statistics the incremental updates that follow a first run scan the whole table for each batch.
    """
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("ANALYZE and pg_class are PostgreSQL's")
    build(session, workspace.id)
    monkeypatch.setattr(engine, "ANALYZE_AFTER", 1)
    analyzed = sa.text("SELECT reltuples FROM pg_class WHERE relname = 'stage_changes'")
    before = session.execute(analyzed).scalar_one()
    service.recompute(session, workspace.id, AS_OF)
    rows = session.scalar(sa.select(sa.func.count()).select_from(StageChange))
    after = session.execute(analyzed).scalar_one()
    assert (rows or 0) > 0
    assert after != before
    assert after == rows
