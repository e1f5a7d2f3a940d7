"""Buying groups (segments) and the history of who was in them when."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, JSONType, utcnow
from storefunnel.models.contact import Contact
from storefunnel.models.touch import Touch
from storefunnel.models.workspace import WorkspaceScoped


class Segment(WorkspaceScoped, Base):
    """A dynamic segment is defined by ``rules``; a static one is a hand-kept list (``rules`` is NULL)."""

    __tablename__ = "segments"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name", name="uq_segments_workspace_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    kind: Mapped[str] = mapped_column(sa.String(8), default="dynamic")
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    member_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    refreshed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SegmentMember(WorkspaceScoped, Base):
    """One stay of a contact in a segment: current members have ``left_at`` NULL; past stays are kept."""

    __tablename__ = "segment_members"
    __table_args__ = (
        # At most one open stay per contact and segment, whatever races the writers.
        sa.Index(
            "uq_segment_members_current",
            "segment_id",
            "contact_id",
            unique=True,
            postgresql_where=sa.text("left_at IS NULL"),
            sqlite_where=sa.text("left_at IS NULL"),
        ),
        # Led by the foreign keys (ids are global) so cascading deletes and per-segment reads use them.
        sa.Index("ix_segment_members_segment_entered", "segment_id", "entered_at"),
        sa.Index("ix_segment_members_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    segment_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("segments.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    entered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    left_at: Mapped[dt.datetime | None] = mapped_column(default=None)


# Indexes the segment compiler leans on, declared here (they attach to their own tables) so the
# metadata matches migration 0008: behaviour conditions filter touches by event and time, and the
# commonest contact filter is the country.
sa.Index("ix_touches_event_time", Touch.workspace_id, Touch.event, Touch.occurred_at, Touch.contact_id)
sa.Index("ix_contacts_workspace_country", Contact.workspace_id, Contact.country)
