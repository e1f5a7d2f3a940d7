"""Workspaces and the people in them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.auth.passwords import hash_password, verify_password
from storefunnel.errors import Conflict, NotFound
from storefunnel.models import Role, User, Workspace


def create_workspace(session: Session, name: str, currency: str = "EUR", timezone: str = "UTC") -> Workspace:
    if session.scalar(sa.select(Workspace.id).where(Workspace.name == name)) is not None:
        raise Conflict(f"a workspace named {name!r} already exists")
    workspace = Workspace(name=name, currency=currency, display_timezone=timezone, settings={})
    session.add(workspace)
    session.flush()
    return workspace


def get_workspace_by_name(session: Session, name: str) -> Workspace:
    workspace = session.scalar(sa.select(Workspace).where(Workspace.name == name))
    if workspace is None:
        raise NotFound(f"no workspace named {name!r}")
    return workspace


def ensure_workspace(session: Session, name: str) -> Workspace:
    existing = session.scalar(sa.select(Workspace).where(Workspace.name == name))
    return existing or create_workspace(session, name)


def locked_settings(session: Session, workspace_id: int) -> dict[str, Any]:
    """The workspace's settings read afresh under its row's write lock, held to the end of the transaction.

    Every settings writer (targets, digest, cycle rules, email, scoring) changes one key of the same JSON
    document: reading it under the lock means two writers at once both land instead of one overwriting the
    other. PostgreSQL: ``SELECT … FOR UPDATE``; SQLite has no row locks, so a no-op UPDATE takes the database's
    write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        stmt = sa.select(Workspace.settings).where(Workspace.id == workspace_id).with_for_update()
    else:
        session.execute(sa.update(Workspace).where(Workspace.id == workspace_id).values(name=Workspace.name))
        stmt = sa.select(Workspace.settings).where(Workspace.id == workspace_id)
    settings = session.execute(stmt).scalar_one_or_none()
    if settings is None and session.get(Workspace, workspace_id) is None:
        raise NotFound(f"workspace: no workspace {workspace_id}")
    return dict(settings or {})


def set_setting(session: Session, workspace_id: int, key: str, value: Any) -> None:
    """Write one key of the workspace's settings, keeping the others as they are now (see ``locked_settings``)."""
    settings = {**locked_settings(session, workspace_id), key: value}
    session.execute(sa.update(Workspace).where(Workspace.id == workspace_id).values(settings=settings))


def create_user(session: Session, workspace_id: int, email: str, password: str, role: Role = Role.owner) -> User:
    email = email.strip().lower()
    if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email!r} already exists")
    user = User(workspace_id=workspace_id, email=email, password_hash=hash_password(password), role=role.value)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    user = session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    ok = verify_password(user.password_hash if user else None, password)
    return user if ok else None
