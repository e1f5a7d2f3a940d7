"""The outbox of stage transitions: every change the cycle engine makes, kept until a consumer stamps it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class CycleOutbox(WorkspaceScoped, Base):
    """Written in the same transaction as the history change, so a consumer that was down misses nothing."""

    __tablename__ = "cycle_outbox"
    __table_args__ = (
        sa.Index("ix_cycle_outbox_unpublished", "published_at", "id"),
        sa.Index("ix_cycle_outbox_contact", "workspace_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    from_stage: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    to_stage: Mapped[str] = mapped_column(sa.String(20))
    at: Mapped[dt.datetime]
    reason: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CycleDirty(WorkspaceScoped, Base):
    """Contacts whose facts changed since their stage was last computed: the tracking API's cheap ingest hook.

    One row per contact. Marking it again gives the row a new ``id`` (PostgreSQL), so a drainer, which deletes
    only the ids it read, never drops a mark made after it read. No foreign key to contacts: a mark must not
    take a lock on the contact row, and merges must not move it; a mark of a deleted contact drains to nothing.
    """

    __tablename__ = "cycle_dirty"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "contact_id", name="uq_cycle_dirty_contact"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigId)
    marked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
