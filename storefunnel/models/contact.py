"""Contacts, the anonymous ids stitched to them, and their history through the sales cycle."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload

from storefunnel.db import Base, BigId, created_with_tables, utcnow
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
    # Loaded on first use; lists that show the stage load it for all their rows at once (``selectinload``).
    current_stage: Mapped[ContactStage | None] = relationship(
        primaryjoin="Contact.id == foreign(ContactStage.contact_id)",
        back_populates="contact",
        cascade="all, delete-orphan",
        passive_deletes=True,
        uselist=False,
    )

    @hybrid_property
    def stage(self) -> str | None:
        """Where the contact stands in the sales cycle (None until the cycle has been computed)."""
        return self.current_stage.stage if self.current_stage is not None else None

    @stage.inplace.setter
    def _stage_setter(self, value: str | None) -> None:
        if value is None:
            self.current_stage = None
        else:
            self._current_stage().stage = value

    @stage.inplace.expression
    @classmethod
    def _stage_expression(cls) -> sa.ColumnElement[str | None]:
        return _current(ContactStage.stage)

    @hybrid_property
    def stage_at(self) -> dt.datetime | None:
        """When the contact entered its current stage."""
        return self.current_stage.stage_at if self.current_stage is not None else None

    @stage_at.inplace.setter
    def _stage_at_setter(self, value: dt.datetime | None) -> None:
        if value is not None or self.current_stage is not None:
            self._current_stage().stage_at = value

    @stage_at.inplace.expression
    @classmethod
    def _stage_at_expression(cls) -> sa.ColumnElement[dt.datetime | None]:
        return _current(ContactStage.stage_at)

    def _current_stage(self) -> ContactStage:
        if self.current_stage is None:
            self.current_stage = ContactStage(workspace_id=self.workspace_id)
        return self.current_stage


class ContactStage(Base):
    """A contact's current stage: the last row of its history, kept apart from the wide ``contacts`` row.

    A first full recompute gives a million contacts a stage at once. Inserting narrow rows here takes seconds;
    rewriting a million ``contacts`` rows and their seven indexes took half a minute.

    No foreign keys, for the same reason as ``stage_changes``: a trigger on ``contacts`` deletes a deleted
    contact's rows here and in its history (migration ``0017contactstages``), so no path that deletes contacts,
    the workspace cascade included, can leave one behind.
    """

    __tablename__ = "contact_stages"
    __table_args__ = (sa.Index("ix_contact_stages_workspace_stage", "workspace_id", "stage"),)

    contact_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    workspace_id: Mapped[int] = mapped_column(BigId)
    stage: Mapped[str] = mapped_column(sa.String(20))
    stage_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    contact: Mapped[Contact] = relationship(
        primaryjoin="Contact.id == foreign(ContactStage.contact_id)", back_populates="current_stage"
    )


@sa.event.listens_for(ContactStage, "before_insert")
def _stage_in_contact_workspace(mapper: Any, connection: Any, target: ContactStage) -> None:
    """A stage set in the constructor (``Contact(stage=…, workspace_id=…)``) may come before the workspace."""
    if target.workspace_id is None:
        target.workspace_id = target.contact.workspace_id


def stage_loaded() -> Any:
    """The loader option for lists that show each contact's stage: one query for the whole list, not one each."""
    return selectinload(Contact.current_stage)


def _current(column: Any) -> sa.ColumnElement[Any]:
    """A column of the contact's current stage, for queries: NULL for a contact without one."""
    table: sa.Table = ContactStage.__table__  # type: ignore[assignment]
    return sa.select(column).where(table.c.contact_id == Contact.id).correlate_except(table).scalar_subquery()


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

    No foreign keys: a full recompute writes millions of these in one statement, and each foreign key is a trigger
    call per row (at 2.8M rows the workspace check cost 14 s of 44 s, the contact check 18 s of 31 s). The rows go
    with their contact by the trigger on ``contacts`` (see ``ContactStage``), and the contact with its workspace.
    """

    __tablename__ = "stage_changes"
    __table_args__ = (sa.Index("ix_stage_changes_contact", "contact_id", "changed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigId)
    contact_id: Mapped[int] = mapped_column(BigId)
    from_stage: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    stage: Mapped[str] = mapped_column(sa.String(20))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(sa.String(200), default="")


# Deleting a contact deletes its stage rows: a statement trigger on PostgreSQL (one DELETE per statement, fired by
# the workspace cascade too), a row trigger on SQLite, which has no other kind. Created by migration
# ``0017contactstages``; these are the same statements for schemas made by ``create_all``.
FORGET_STAGES_DDL = {
    "postgresql": [
        """CREATE FUNCTION contacts_forget_stages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM stage_changes WHERE contact_id IN (SELECT id FROM gone);
    DELETE FROM contact_stages WHERE contact_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$""",
        """CREATE TRIGGER contacts_forget_stages AFTER DELETE ON contacts REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION contacts_forget_stages()""",
    ],
    "sqlite": [
        """CREATE TRIGGER contacts_forget_stages AFTER DELETE ON contacts BEGIN
    DELETE FROM stage_changes WHERE contact_id = OLD.id;
    DELETE FROM contact_stages WHERE contact_id = OLD.id;
END""",
    ],
}
created_with_tables(FORGET_STAGES_DDL)
