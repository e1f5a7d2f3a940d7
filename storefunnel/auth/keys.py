"""API and write keys: random tokens, stored as SHA-256, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.models import ApiKey, KeyKind

PREFIXES = {KeyKind.api: "sfk_", KeyKind.write: "sfw_"}
# How long a process trusts a key it has seen live without asking the database again. A revocation in this
# process takes effect at once (``revoke_key`` forgets every entry); one in another process (the CLI, another
# server worker) within this many seconds.
KEY_TTL_SECONDS = 2.0
MAX_CACHED_KEYS = 4096


class _LiveKeys:
    """(key hash, kind) -> (workspace id, expiry) for keys recently found live, so a request needs no query.

    A look-up that started before a revocation never stores its answer: ``forget`` bumps a generation that a
    look-up reads before its query and checks before it stores.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.clock = clock

    def get(self, key_hash: str, kind: KeyKind) -> int | None:
        hit = self._entries.get((key_hash, kind.value))
        if hit is None or hit[1] <= self.clock():
            return None
        return hit[0]

    def put(self, key_hash: str, kind: KeyKind, workspace_id: int, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= MAX_CACHED_KEYS:
                self._entries.clear()
            self._entries[(key_hash, kind.value)] = (workspace_id, self.clock() + KEY_TTL_SECONDS)

    def forget(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


_live = _LiveKeys()


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, workspace_id: int, kind: KeyKind, name: str = "") -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    token = PREFIXES[kind] + secrets.token_urlsafe(32)
    key = ApiKey(workspace_id=workspace_id, kind=kind.value, name=name, prefix=token[:12], key_hash=hash_key(token))
    session.add(key)
    session.flush()
    return key, token


def cached_workspace_for_key(token: str, kind: KeyKind) -> int | None:
    """The workspace of a key this process found live less than KEY_TTL_SECONDS ago, else None (ask the database)."""
    if not token or not token.startswith(PREFIXES[kind]):
        return None
    return _live.get(hash_key(token), kind)


def workspace_for_key(session: Session, token: str, kind: KeyKind) -> int | None:
    """The workspace a live key of ``kind`` belongs to, or None. Hash equality on a 256-bit secret leaks nothing."""
    if not token or not token.startswith(PREFIXES[kind]):
        return None
    key_hash = hash_key(token)
    cached = _live.get(key_hash, kind)
    if cached is not None:
        return cached
    generation = _live.generation
    workspace_id = session.scalar(
        sa.select(ApiKey.workspace_id).where(
            ApiKey.key_hash == key_hash, ApiKey.kind == kind.value, ApiKey.revoked_at.is_(None)
        )
    )
    if workspace_id is not None:
        _live.put(key_hash, kind, workspace_id, generation)
    return workspace_id


def revoke_key(session: Session, workspace_id: int, key_id: int) -> bool:
    """Revoke one key. This process stops trusting every cached key now, and again once the revocation commits,
    so a look-up that read the key as live in between cannot keep it alive."""
    result = session.execute(
        sa.update(ApiKey)
        .where(ApiKey.workspace_id == workspace_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    _live.forget()
    event.listen(session, "after_commit", lambda _session: _live.forget(), once=True)
    return bool(result.rowcount)  # type: ignore[attr-defined]
