"""API and write keys: random tokens, stored as SHA-256, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.models import ApiKey, KeyKind

PREFIXES = {KeyKind.api: "sfk_", KeyKind.write: "sfw_"}


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, workspace_id: int, kind: KeyKind, name: str = "") -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    token = PREFIXES[kind] + secrets.token_urlsafe(32)
    key = ApiKey(workspace_id=workspace_id, kind=kind.value, name=name, prefix=token[:12], key_hash=hash_key(token))
    session.add(key)
    session.flush()
    return key, token


def workspace_for_key(session: Session, token: str, kind: KeyKind) -> int | None:
    """The workspace a live key of ``kind`` belongs to, or None. Hash equality on a 256-bit secret leaks nothing."""
    if not token or not token.startswith(PREFIXES[kind]):
        return None
    return session.scalar(
        sa.select(ApiKey.workspace_id).where(
            ApiKey.key_hash == hash_key(token), ApiKey.kind == kind.value, ApiKey.revoked_at.is_(None)
        )
    )


def revoke_key(session: Session, workspace_id: int, key_id: int) -> bool:
    result = session.execute(
        sa.update(ApiKey)
        .where(ApiKey.workspace_id == workspace_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
