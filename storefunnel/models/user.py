"""People who log in to the dashboard, and the keys machines use."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class Role(enum.StrEnum):
    owner = "owner"
    marketer = "marketer"
    seller = "seller"


class KeyKind(enum.StrEnum):
    api = "api"  # Bearer key for /api/v1
    write = "write"  # Segment write key for /v1 tracking


class User(WorkspaceScoped, Base):
    __tablename__ = "users"
    __table_args__ = (sa.Index("ix_users_workspace", "workspace_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16), default=Role.owner.value)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiKey(WorkspaceScoped, Base):
    """Keys are stored as SHA-256 of a 256-bit random token: shown once, never recoverable, revocable."""

    __tablename__ = "api_keys"
    __table_args__ = (sa.Index("ix_api_keys_workspace", "workspace_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8), default=KeyKind.api.value)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    prefix: Mapped[str] = mapped_column(sa.String(16))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
