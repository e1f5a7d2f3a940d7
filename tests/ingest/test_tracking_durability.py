"""A 2xx means committed: kill the server with SIGKILL mid-load and find every acknowledged message once."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import KeyKind, Touch
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.server import start_server

pytestmark = pytest.mark.e2e
BATCH = 50


def test_acknowledged_messages_survive_sigkill(database_url: str, committed_session: Session) -> None:
    workspace = create_workspace(committed_session, f"durable-{uuid.uuid4().hex[:8]}")
    key = create_key(committed_session, workspace.id, KeyKind.write)[1]
    committed_session.commit()
    server = start_server(database_url)
    acked: list[str] = []
    failures: list[int] = []
    sent_batches = threading.Semaphore(0)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, auth=(key, ""), timeout=10) as client:
            n = 0
            while not stop.is_set():
                ids = [f"d-{n}-{i}" for i in range(BATCH)]
                n += 1
                batch = [
                    {"type": "track", "anonymousId": f"v{i % 7}", "event": "Tick", "messageId": m}
                    for i, m in enumerate(ids)
                ]
                try:
                    response = client.post("/v1/batch", json={"batch": batch})
                except httpx.HTTPError:
                    sent_batches.release()
                    return  # the server is gone: whatever was not acknowledged may or may not be stored
                if response.status_code != 200:
                    failures.append(response.status_code)
                    sent_batches.release()
                    return
                acked.extend(ids)
                sent_batches.release()

    worker = threading.Thread(target=load)
    worker.start()
    try:
        for _ in range(20):  # let 20 batches through, then kill the server while the next ones are in flight
            assert sent_batches.acquire(timeout=30)
        server.process.kill()
        server.process.wait(10)
    finally:
        stop.set()
        worker.join(30)
        if server.process.poll() is None:
            server.process.kill()
    assert failures == []
    assert len(acked) >= 20 * BATCH

    committed_session.expire_all()
    stored = dict(
        committed_session.execute(
            sa.select(Touch.message_id, sa.func.count())
            .where(Touch.workspace_id == workspace.id)
            .group_by(Touch.message_id)
        ).all()
    )
    missing = [m for m in acked if m not in stored]
    assert missing == []
    assert all(count == 1 for count in stored.values())
