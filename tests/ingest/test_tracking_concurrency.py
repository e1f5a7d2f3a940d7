"""Two deliveries of one messageId at the same moment still store it once (unique constraint + ON CONFLICT)."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import Contact, KeyKind, Receipt, Touch
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.e2e
SENDERS = 6


def test_concurrent_duplicates_are_stored_once(live_server: LiveServer, committed_session: Session) -> None:
    workspace = create_workspace(committed_session, f"dup-{uuid.uuid4().hex[:8]}")
    key = create_key(committed_session, workspace.id, KeyKind.write)[1]
    committed_session.commit()
    batch = [{"type": "track", "userId": "same-user", "event": "Paid", "messageId": f"dup-{i}"} for i in range(40)]
    batch.append(
        {"type": "identify", "userId": "same-user", "traits": {"email": "s@example.com"}, "messageId": "id-dup"}
    )
    barrier = threading.Barrier(SENDERS)
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=live_server.url, auth=(key, ""), timeout=30) as client:
            barrier.wait()
            statuses.append(client.post("/v1/batch", json={"batch": batch}).status_code)

    threads = [threading.Thread(target=send) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * SENDERS

    def count(model: type, *where: sa.ColumnElement[bool]) -> int:
        return int(
            committed_session.scalar(
                sa.select(sa.func.count()).select_from(model).where(model.workspace_id == workspace.id, *where)  # type: ignore[attr-defined]
            )
        )

    assert count(Touch) == 40
    assert count(Contact) == 1
    assert count(Receipt) == 1


def test_concurrent_single_messages_are_all_stored(live_server: LiveServer, committed_session: Session) -> None:
    """Many writers at once: none waits its way into a 'database is locked' error, none is lost."""
    workspace = create_workspace(committed_session, f"many-{uuid.uuid4().hex[:8]}")
    key = create_key(committed_session, workspace.id, KeyKind.write)[1]
    committed_session.commit()
    per_sender = 25
    barrier = threading.Barrier(SENDERS)
    statuses: list[int] = []

    def send(sender: int) -> None:
        with httpx.Client(base_url=live_server.url, auth=(key, ""), timeout=60) as client:
            barrier.wait()
            for n in range(per_sender):
                kind = ("track", "page", "identify")[n % 3]
                body = {"anonymousId": f"v-{sender}", "messageId": f"s{sender}-{n}", "event": "Tick"}
                if kind == "identify":
                    body["userId"] = f"u-{sender}"
                statuses.append(client.post(f"/v1/{kind}", json=body).status_code)

    threads = [threading.Thread(target=send, args=(s,)) for s in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * (SENDERS * per_sender)
    committed_session.expire_all()
    stored = committed_session.execute(
        sa.select(Touch.anonymous_id, Touch.contact_id).where(Touch.workspace_id == workspace.id)
    ).all()
    identifies = sum(1 for n in range(per_sender) if n % 3 == 2)
    assert len(stored) == SENDERS * (per_sender - identifies)
    # each visitor identified on its third message: every touch ends up on its contact
    owners = dict(
        committed_session.execute(
            sa.select(Contact.external_id, Contact.id).where(Contact.workspace_id == workspace.id)
        ).all()
    )
    assert sorted(owners) == sorted(f"u-{s}" for s in range(SENDERS))
    assert all(contact_id == owners[f"u-{anon.removeprefix('v-')}"] for anon, contact_id in stored)
