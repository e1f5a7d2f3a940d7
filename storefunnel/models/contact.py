"""Contacts, the anonymous ids stitched to them, and their history through the sales cycle."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class Stage(enum.StrEnum):
    prospecting = "prospecting"
    conversion = "conversion"
    buying = "buying"
    thanked = "thanked"
    keeping_in_touch = "keeping_in_touch"
    lapsed = "lapsed"


class AgeBand(enum.StrEnum):
    under_18 = "under_18"
    a18_24 = "18-24"
    a25_29 = "25-29"
    a30_39 = "30-39"
    a40_49 = "40-49"
    a50_64 = "50-64"
    a65_plus = "65+"


class Contact(WorkspaceScoped, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "email", name="uq_contacts_workspace_email"),
        sa.UniqueConstraint("workspace_id", "external_id", name="uq_contacts_workspace_external_id"),
        sa.Index("ix_contacts_workspace_lead_at", "workspace_id", "lead_at"),
        sa.Index("ix_contacts_workspace_created_at", "workspace_id", "created_at"),
        sa.Index("ix_contacts_workspace_stage", "workspace_id", "stage"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str | None] = mapped_column(sa.String(254), default=None)
    external_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    first_name: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    last_name: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    phone: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    country: Mapped[str | None] = mapped_column(sa.String(2), default=None)
    region: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    city: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    age_band: Mapped[str | None] = mapped_column(sa.String(8), default=None)
    gender: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    email_consent: Mapped[bool] = mapped_column(default=False)
    consent_source: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    consent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    lead_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    lead_channel: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    stage: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    stage_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Identity(WorkspaceScoped, Base):
    """An anonymous id (cookie, device) known to belong to a contact."""

    __tablename__ = "identities"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "anonymous_id", name="uq_identities_workspace_anonymous_id"),
        sa.Index("ix_identities_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    anonymous_id: Mapped[str] = mapped_column(sa.String(128))
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StageChange(WorkspaceScoped, Base):
    """One transition of a contact's sales cycle.

    No foreign key to ``workspaces``: a row goes with its contact (``ON DELETE CASCADE``), and the contact with its
    workspace. A full recompute writes millions of these in one statement, and each foreign key is a trigger call
    per row (at 2.8M rows the workspace check alone cost 14 s of 44 s).
    """

    __tablename__ = "stage_changes"
    __table_args__ = (sa.Index("ix_stage_changes_contact", "contact_id", "changed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigId)
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    from_stage: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    stage: Mapped[str] = mapped_column(sa.String(20))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(sa.String(200), default="")
