"""Workspaces and the people in them."""

from __future__ import annotations

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
