"""The live-key cache: a key is looked up once per KEY_TTL_SECONDS, yet a revocation still takes effect at once in
the process that revokes and within the TTL in any other; keys of another kind are never taken from it."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth import keys
from storefunnel.auth.keys import KEY_TTL_SECONDS, create_key, hash_key, revoke_key
from storefunnel.db import utcnow
from storefunnel.models import ApiKey, KeyKind, Workspace


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(keys._live, "clock", fake)
    return fake


def _queries(session: Session) -> list[str]:
    seen: list[str] = []
    sa.event.listen(session.get_bind(), "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_live_key_is_looked_up_once_per_ttl(
    session: Session, client: TestClient, workspace: Workspace, clock: Clock
) -> None:
    _, token = create_key(session, workspace.id, KeyKind.api)
    bearer = {"Authorization": f"Bearer {token}"}
    seen = _queries(session)
    for _ in range(3):
        assert client.get("/api/v1/contacts", headers=bearer).status_code == 200
    assert sum("api_keys" in q for q in seen) == 1
    clock.now += KEY_TTL_SECONDS
    assert client.get("/api/v1/contacts", headers=bearer).status_code == 200
    assert sum("api_keys" in q for q in seen) == 2


def test_revoked_here_is_refused_at_once(session: Session, client: TestClient, workspace: Workspace) -> None:
    key, token = create_key(session, workspace.id, KeyKind.api)
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/contacts", headers=bearer).status_code == 200  # now cached
    assert revoke_key(session, workspace.id, key.id)
    r = client.get("/api/v1/contacts", headers=bearer)
    assert r.status_code == 401
    assert r.json()["detail"] == "the API key is unknown or revoked"


def test_revoked_elsewhere_is_refused_within_the_ttl(
    session: Session, client: TestClient, workspace: Workspace, clock: Clock
) -> None:
    key, token = create_key(session, workspace.id, KeyKind.api)
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/contacts", headers=bearer).status_code == 200
    # another process (the CLI, another server worker) revokes: this process's cache is not told
    session.execute(sa.update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=utcnow()))
    clock.now += KEY_TTL_SECONDS / 2
    assert client.get("/api/v1/contacts", headers=bearer).status_code == 200  # the bounded window
    clock.now += KEY_TTL_SECONDS / 2
    assert client.get("/api/v1/contacts", headers=bearer).status_code == 401


def test_a_look_up_overtaken_by_a_revocation_is_not_kept(session: Session, workspace: Workspace) -> None:
    _, token = create_key(session, workspace.id, KeyKind.api)
    generation = keys._live.generation  # a look-up reads this, then queries and finds the key live…
    keys._live.forget()  # …while a revocation happens
    keys._live.put(hash_key(token), KeyKind.api, workspace.id, generation)
    assert keys.cached_workspace_for_key(token, KeyKind.api) is None


def test_a_cached_write_key_is_no_api_key(session: Session, client: TestClient, workspace: Workspace) -> None:
    _, write = create_key(session, workspace.id, KeyKind.write)
    assert keys.workspace_for_key(session, write, KeyKind.write) == workspace.id  # cached as a write key
    assert keys.cached_workspace_for_key(write, KeyKind.write) == workspace.id
    assert keys.cached_workspace_for_key(write, KeyKind.api) is None
    assert client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {write}"}).status_code == 401


def test_the_cache_is_forgotten_again_when_the_revocation_commits(committed_session: Session) -> None:
    """A look-up between the UPDATE and its COMMIT reads the key as live: the second forget drops what it stored."""
    from storefunnel.workspaces.service import create_workspace

    ws = create_workspace(committed_session, f"revoke-{secrets.token_hex(4)}")
    key, token = create_key(committed_session, ws.id, KeyKind.api)
    committed_session.commit()
    assert revoke_key(committed_session, ws.id, key.id)
    keys._live.put(hash_key(token), KeyKind.api, ws.id, keys._live.generation)  # the look-up in between
    assert keys.cached_workspace_for_key(token, KeyKind.api) == ws.id
    committed_session.commit()
    assert keys.cached_workspace_for_key(token, KeyKind.api) is None
