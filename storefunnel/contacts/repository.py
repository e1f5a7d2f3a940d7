"""SQL for contacts: lookups by natural key and the filtered, paginated list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.models import Contact, ContactStage, Order
from storefunnel.models.contact import stage_loaded
from storefunnel.pagination import paginate
from storefunnel.tenancy import scoped


def id_by_email(session: Session, workspace_id: int, email: str) -> int | None:
    return session.scalar(scoped(Contact, workspace_id).where(Contact.email == email).with_only_columns(Contact.id))


def id_by_external_id(session: Session, workspace_id: int, external_id: str) -> int | None:
    return session.scalar(
        scoped(Contact, workspace_id).where(Contact.external_id == external_id).with_only_columns(Contact.id)
    )


@dataclass(frozen=True)
class ContactFilters:
    email: str | None = None
    q: str | None = None
    stage: str | None = None
    lead_channel: str | None = None
    country: str | None = None
    city: str | None = None
    is_lead: bool | None = None
    is_customer: bool | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_contacts(
    session: Session, workspace_id: int, filters: ContactFilters, cursor: str | None, limit: int
) -> tuple[Sequence[Contact], str | None]:
    stmt = scoped(Contact, workspace_id).options(stage_loaded())
    f = filters
    if f.email is not None:
        stmt = stmt.where(Contact.email == f.email.strip().lower())
    if f.q:
        like = f"%{_escape_like(f.q.strip().lower())}%"
        full_name = sa.func.coalesce(Contact.first_name, "") + " " + sa.func.coalesce(Contact.last_name, "")
        stmt = stmt.where(
            sa.or_(
                sa.func.lower(Contact.email).like(like, escape="\\"),
                sa.func.lower(full_name).like(like, escape="\\"),
            )
        )
    if f.stage is not None:
        in_stage = sa.select(ContactStage.contact_id).where(
            ContactStage.contact_id == Contact.id, ContactStage.stage == f.stage
        )
        stmt = stmt.where(in_stage.exists())
    if f.lead_channel is not None:
        stmt = stmt.where(Contact.lead_channel == f.lead_channel)
    if f.country is not None:
        stmt = stmt.where(Contact.country == f.country.strip().upper())
    if f.city is not None:
        stmt = stmt.where(sa.func.lower(Contact.city) == f.city.strip().lower())
    if f.is_lead is not None:
        stmt = stmt.where(Contact.lead_at.is_not(None) if f.is_lead else Contact.lead_at.is_(None))
    if f.is_customer is not None:
        has_order = (
            sa.select(Order.id).where(Order.workspace_id == workspace_id, Order.contact_id == Contact.id).exists()
        )
        stmt = stmt.where(has_order if f.is_customer else ~has_order)
    if f.created_after is not None:
        stmt = stmt.where(Contact.created_at >= f.created_after)
    if f.created_before is not None:
        stmt = stmt.where(Contact.created_at < f.created_before)
    return paginate(session, stmt, Contact.id, cursor, limit)
