"""Tracking touches keep the sales cycle current: requests mark contacts, a drain updates them within seconds."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from storefunnel.auth.keys import create_key
from storefunnel.cli import app as cli_app
from storefunnel.cycle import dirty, service
from storefunnel.db import get_sessionmaker
from storefunnel.jobs.worker import Worker, WorkerOptions
from storefunnel.messaging.smtp import SmtpConfig
from storefunnel.models import Contact, CycleDirty, KeyKind, StageChange, Touch, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.factories import create_contact
from tests.fixtures.server import LiveServer

RECENT = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)


def at(minutes: float) -> str:
    return (RECENT + dt.timedelta(minutes=minutes)).isoformat()


def marked(session: Session, workspace_id: int) -> list[int]:
    return list(
        session.scalars(
            sa.select(CycleDirty.contact_id)
            .where(CycleDirty.workspace_id == workspace_id)
            .order_by(CycleDirty.contact_id)
        )
    )


def stage_of(session: Session, contact_id: int) -> str | None:
    session.expire_all()
    return session.scalar(sa.select(Contact.stage).where(Contact.id == contact_id))


def contact_id_of(session: Session, workspace_id: int, user_id: str) -> int:
    return int(
        session.scalar(
            sa.select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.external_id == user_id)
        )
        or 0
    )


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# ---- through the API, in the test transaction ----


@pytest.fixture
def basic(session: Session, workspace: Workspace) -> tuple[str, str]:
    return (create_key(session, workspace.id, KeyKind.write)[1], "")


def test_intent_touch_moves_the_contact_to_conversion_after_one_drain(
    client: TestClient, basic: tuple[str, str], session: Session, workspace: Workspace
) -> None:
    r = client.post(
        "/v1/identify",
        json={"userId": "u-1", "traits": {"email": "u1@example.com"}, "timestamp": at(0)},
        auth=basic,
    )
    assert r.status_code == 200
    r = client.post("/v1/track", json={"userId": "u-1", "event": "Product Viewed", "timestamp": at(1)}, auth=basic)
    assert r.status_code == 200
    cid = contact_id_of(session, workspace.id, "u-1")
    assert marked(session, workspace.id) == [cid]
    assert stage_of(session, cid) is None  # the request itself computes nothing

    result = dirty.drain(session, workspace_id=workspace.id)
    assert (result.marks, result.contacts) == (1, 1)
    assert stage_of(session, cid) == "conversion"
    # the touch is older than the contact's row, so the history starts at it
    assert [(t.from_stage, t.to_stage, t.reason) for t in result.transitions] == [(None, "conversion", "intent")]
    assert marked(session, workspace.id) == []


def test_stitching_anonymous_intent_marks_the_identified_contact(
    client: TestClient, basic: tuple[str, str], session: Session, workspace: Workspace
) -> None:
    anonymous = {"anonymousId": "browser-7", "event": "Checkout Started", "timestamp": at(0)}
    assert client.post("/v1/track", json=anonymous, auth=basic).status_code == 200
    assert marked(session, workspace.id) == []  # nobody to update yet
    identify = {"userId": "u-7", "anonymousId": "browser-7", "traits": {"email": "u7@example.com"}}
    assert client.post("/v1/identify", json={**identify, "timestamp": at(1)}, auth=basic).status_code == 200
    cid = contact_id_of(session, workspace.id, "u-7")
    assert marked(session, workspace.id) == [cid]
    dirty.drain(session, workspace_id=workspace.id)
    assert stage_of(session, cid) == "conversion"
    # a later anonymous touch of the stitched browser marks its contact again
    page = {"anonymousId": "browser-7", "name": "Home", "timestamp": at(2)}
    assert client.post("/v1/page", json=page, auth=basic).status_code == 200
    assert marked(session, workspace.id) == [cid]


def test_drain_is_idempotent_and_replays_change_nothing(
    client: TestClient, basic: tuple[str, str], session: Session, workspace: Workspace
) -> None:
    body = {"userId": "u-2", "event": "Cart Viewed", "messageId": "m-2", "timestamp": at(0)}
    assert client.post("/v1/track", json=body, auth=basic).status_code == 200
    first = dirty.drain(session, workspace_id=workspace.id)
    history = service.stored_history(session, workspace.id)
    assert len(first.transitions) == 1  # first fact is an intent touch: straight to conversion
    assert client.post("/v1/track", json=body, auth=basic).status_code == 200  # a replay
    again = dirty.drain(session, workspace_id=workspace.id)
    assert again.transitions == []
    assert dirty.drain(session, workspace_id=workspace.id).marks == 0
    assert service.stored_history(session, workspace.id) == history


def test_marks_and_drains_are_scoped_by_workspace(session: Session, workspace: Workspace) -> None:
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    mine, theirs = create_contact(session, workspace.id), create_contact(session, other.id)
    dirty.mark(session, workspace.id, [mine.id, mine.id, None])
    dirty.mark(session, other.id, [theirs.id])
    dirty.mark(session, workspace.id, [mine.id])  # marking twice keeps one mark
    assert (marked(session, workspace.id), marked(session, other.id)) == ([mine.id], [theirs.id])
    assert dirty.pending(session, workspace.id) == 1

    result = dirty.drain(session, workspace_id=workspace.id)
    assert result.contacts == 1
    assert {t.workspace_id for t in result.transitions} == {workspace.id}
    assert (marked(session, workspace.id), marked(session, other.id)) == ([], [theirs.id])
    assert stage_of(session, mine.id) == "prospecting"
    assert stage_of(session, theirs.id) is None


def test_a_contact_gone_before_the_drain_just_loses_its_mark(session: Session, workspace: Workspace) -> None:
    gone = create_contact(session, workspace.id)
    dirty.mark(session, workspace.id, [gone.id])
    session.delete(gone)
    session.flush()
    result = dirty.drain(session, workspace_id=workspace.id)
    assert (result.marks, result.contacts, result.transitions) == (1, 0 if is_postgres(session) else 1, [])
    assert marked(session, workspace.id) == []


def test_drain_takes_the_oldest_marks_first_in_chunks(session: Session, workspace: Workspace) -> None:
    contacts = [create_contact(session, workspace.id) for _ in range(5)]
    for c in contacts:
        dirty.mark(session, workspace.id, [c.id])
    step = dirty.drain(session, workspace_id=workspace.id, limit=2)
    assert step.contacts == 2
    assert marked(session, workspace.id) == [c.id for c in contacts[2:]]
    total = dirty.drain_all(session, workspace_id=workspace.id, limit=2)
    assert total.contacts == 3
    assert {stage_of(session, c.id) for c in contacts} == {"prospecting"}


# ---- committed data: the CLI, the worker, a real server, concurrency ----


@pytest.fixture
def store(committed_session: Session) -> Iterator[tuple[Workspace, str]]:
    workspace = create_workspace(committed_session, f"dirty-{uuid.uuid4().hex[:8]}")
    key = create_key(committed_session, workspace.id, KeyKind.write)[1]
    committed_session.commit()
    yield workspace, key
    committed_session.rollback()
    committed_session.execute(sa.delete(Workspace).where(Workspace.id == workspace.id))
    committed_session.commit()


def in_transaction(fn: Callable[[Session], Any]) -> Any:
    with get_sessionmaker()() as session, session.begin():
        return fn(session)


@pytest.mark.e2e
def test_over_http_the_worker_drain_moves_the_contact(
    live_server: LiveServer, store: tuple[Workspace, str], committed_session: Session
) -> None:
    workspace, key = store
    with httpx.Client(base_url=live_server.url, auth=(key, ""), timeout=30) as http:
        assert http.post("/v1/identify", json={"userId": "w-1", "timestamp": at(0)}).status_code == 200
        r = http.post("/v1/t", json={"userId": "w-1", "event": "Product Added", "timestamp": at(1)})
        assert r.status_code == 200
    cid = contact_id_of(committed_session, workspace.id, "w-1")
    assert stage_of(committed_session, cid) is None
    worker = Worker(get_sessionmaker(), SmtpConfig(host="127.0.0.1", port=1), WorkerOptions(cycle_tick_s=0))
    try:
        [schedule] = [s for s in worker.schedules if s.name == "cycle.drain"]  # what every pass runs when due
        assert schedule.every_s == 5.0
        assert schedule.run() >= 1
    finally:
        worker.sender.close()
    assert stage_of(committed_session, cid) == "conversion"
    assert marked(committed_session, workspace.id) == []


def test_cycle_tick_drains_its_workspace_first(store: tuple[Workspace, str], committed_session: Session) -> None:
    workspace, _ = store
    contact = create_contact(committed_session, workspace.id)
    committed_session.add(
        Touch(workspace_id=workspace.id, contact_id=contact.id, occurred_at=RECENT, kind="track", event="Cart Viewed")
    )
    dirty.mark(committed_session, workspace.id, [contact.id])
    committed_session.commit()
    r = CliRunner().invoke(cli_app, ["cycle", "tick", "-w", workspace.name, "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert (body["drained_contacts"], body["transitions"]) == (1, 1)
    assert stage_of(committed_session, contact.id) == "conversion"
    assert marked(committed_session, workspace.id) == []


def test_a_mark_made_while_a_drain_runs_is_not_lost(
    store: tuple[Workspace, str], committed_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ingest commits a new fact and marks the contact after the drain computed it and before it deletes."""
    if not is_postgres(committed_session):
        pytest.skip("SQLite has one writer: no ingest can commit inside a drain's transaction")
    workspace, _ = store
    contact = create_contact(committed_session, workspace.id)
    dirty.mark(committed_session, workspace.id, [contact.id])
    committed_session.commit()
    real = dirty.update_contacts

    def update_then_ingest(session: Session, ws: int, ids: Any) -> Any:
        transitions = real(session, ws, ids)

        def ingest(other: Session) -> None:
            other.add(
                Touch(workspace_id=ws, contact_id=contact.id, occurred_at=RECENT, kind="track", event="Cart Viewed")
            )
            other.flush()
            dirty.mark(other, ws, [contact.id])

        in_transaction(ingest)  # commits while the drain is still open
        return transitions

    monkeypatch.setattr(dirty, "update_contacts", update_then_ingest)
    first = in_transaction(lambda s: dirty.drain(s, workspace_id=workspace.id))
    assert first.marks == 1
    monkeypatch.setattr(dirty, "update_contacts", real)
    assert stage_of(committed_session, contact.id) == "prospecting"  # the drain could not see the new touch
    assert marked(committed_session, workspace.id) == [contact.id]  # but its mark survived
    in_transaction(lambda s: dirty.drain(s, workspace_id=workspace.id))
    assert stage_of(committed_session, contact.id) == "conversion"


def test_a_contact_locked_elsewhere_keeps_its_mark(store: tuple[Workspace, str], committed_session: Session) -> None:
    if not is_postgres(committed_session):
        pytest.skip("row locks are PostgreSQL's; SQLite runs one writer at a time")
    workspace, _ = store
    busy, free = create_contact(committed_session, workspace.id), create_contact(committed_session, workspace.id)
    dirty.mark(committed_session, workspace.id, [busy.id, free.id])
    committed_session.commit()
    with get_sessionmaker()() as holder, holder.begin():
        holder.execute(sa.update(Contact).where(Contact.id == busy.id).values(first_name="Busy"))
        result = in_transaction(lambda s: dirty.drain(s, workspace_id=workspace.id))
    assert (result.contacts, result.deferred) == (1, 1)
    assert marked(committed_session, workspace.id) == [busy.id]
    assert stage_of(committed_session, free.id) == "prospecting"
    in_transaction(lambda s: dirty.drain(s, workspace_id=workspace.id))
    assert marked(committed_session, workspace.id) == []


@pytest.mark.e2e
def test_concurrent_ingest_and_drains_end_equal_to_a_full_recompute(
    live_server: LiveServer, store: tuple[Workspace, str], committed_session: Session
) -> None:
    """Senders post identified touches while two drainers run; after a last drain, the history is the full one."""
    workspace, key = store
    api_key = in_transaction(lambda s: create_key(s, workspace.id, KeyKind.api)[1])
    users = [f"c-{n}" for n in range(12)]
    events = ["Product Viewed", None, "Thank You Sent", None, "Checkout Started"]
    errors: list[str] = []
    stop = threading.Event()

    def send(sender: int) -> None:
        with httpx.Client(base_url=live_server.url, auth=(key, ""), timeout=60) as http:
            for n in range(30):
                user = users[(sender * 7 + n) % len(users)]
                event = events[n % len(events)]
                when = at(sender + n / 10)
                if n % 9 == 0:
                    body = {"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}}
                elif event is None:
                    body = {"type": "page", "userId": user, "name": "Home"}
                else:
                    body = {"type": "track", "userId": user, "event": event}
                batch = [{**body, "timestamp": when, "messageId": f"{sender}-{n}"}]
                r = http.post("/v1/batch", json={"batch": batch})
                if r.status_code != 200:
                    errors.append(r.text)

    def order() -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=live_server.url, headers=headers, timeout=60) as http:
            for n in range(10):
                body = {
                    "email": f"{users[(n * 5) % len(users)]}@example.com",
                    "placed_at": at(2 + n / 5),
                    "currency": "EUR",
                    "external_id": f"o-{n}",
                    "lines": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": 1200}],
                }
                r = http.post("/api/v1/orders", json=body)
                if r.status_code != 201:
                    errors.append(r.text)

    def drainer() -> None:
        while not stop.is_set():
            try:
                result = in_transaction(lambda s: dirty.drain(s, workspace_id=workspace.id, limit=5))
            except Exception as exc:  # the test fails on any error a drain raises
                errors.append(repr(exc))
                return
            if not result.marks:
                # As the worker does when there is nothing to drain: an empty drain in a tight loop only takes
                # SQLite's one write lock away from the senders.
                time.sleep(0.01)

    senders = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    senders.append(threading.Thread(target=order))
    drainers = [threading.Thread(target=drainer) for _ in range(2)]
    for t in [*drainers, *senders]:
        t.start()
    for t in senders:
        t.join()
    stop.set()
    for t in drainers:
        t.join()
    assert errors == []
    in_transaction(lambda s: dirty.drain_all(s, workspace_id=workspace.id))
    assert marked(committed_session, workspace.id) == []

    committed_session.expire_all()
    incremental = service.stored_history(committed_session, workspace.id)
    current = sa.select(Contact.id, Contact.stage).where(Contact.workspace_id == workspace.id)
    stages = dict(committed_session.execute(current).all())
    duplicates = committed_session.execute(
        sa.select(StageChange.contact_id, StageChange.changed_at, sa.func.count())
        .where(StageChange.workspace_id == workspace.id)
        .group_by(StageChange.contact_id, StageChange.changed_at)
        .having(sa.func.count() > 1)
    ).all()
    assert duplicates == []
    with get_sessionmaker()() as check:
        service.recompute(check, workspace.id)
        full = service.stored_history(check, workspace.id)
        full_stages = dict(check.execute(current).all())
        check.rollback()
    assert {"conversion", "buying"} <= set(stages.values())
    assert incremental == full
    assert stages == full_stages
