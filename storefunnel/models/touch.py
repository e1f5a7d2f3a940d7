"""Touches: every interaction of a contact or anonymous visitor, with the channel it came from."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId
from storefunnel.models.workspace import WorkspaceScoped


class Touch(WorkspaceScoped, Base):
    __tablename__ = "touches"
    __table_args__ = (
        sa.Index("ix_touches_contact_time", "contact_id", "occurred_at"),
        sa.Index("ix_touches_anonymous", "workspace_id", "anonymous_id"),
        sa.Index("ix_touches_time", "workspace_id", "occurred_at"),
        sa.UniqueConstraint("workspace_id", "message_id", name="uq_touches_workspace_message_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), default=None
    )
    anonymous_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    occurred_at: Mapped[dt.datetime]
    # kind: page, screen, track, email_open, email_click, ad_click, ...; event: the track event name.
    kind: Mapped[str] = mapped_column(sa.String(32))
    event: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    channel: Mapped[str] = mapped_column(sa.String(40), default="Unassigned")
    source: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    medium: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    campaign: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    content: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    term: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    url: Mapped[str | None] = mapped_column(sa.Text, default=None)
    referrer: Mapped[str | None] = mapped_column(sa.Text, default=None)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
