"""/api/v1/contacts: thin handlers over the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.contacts import repository, service
from storefunnel.contacts import timeline as timeline_queries
from storefunnel.contacts.schemas import Contact, ContactCreate, ContactUpdate, TimelineItem
from storefunnel.db import SessionDep
from storefunnel.limits import MAX_ID, NO_NUL
from storefunnel.models import Contact as ContactRow
from storefunnel.models import Stage
from storefunnel.pagination import DEFAULT_LIMIT, CursorParam, LimitParam, Page
from storefunnel.tenancy import get_scoped

router = APIRouter(prefix="/contacts", tags=["contacts"])
ContactId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", response_model=Contact, status_code=201)
def create_contact(data: ContactCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> ContactRow:
    return service.create_contact(session, workspace_id, data)


@router.get("", response_model=Page[Contact])
def list_contacts(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
    email: Annotated[
        str | None, Query(max_length=254, pattern=NO_NUL, description="Exact email (case-insensitive).")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Substring of the name or email.")
    ] = None,
    stage: Stage | None = None,
    lead_channel: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
    country: Annotated[
        str | None, Query(min_length=2, max_length=2, pattern=NO_NUL, description="ISO 3166-1 alpha-2.")
    ] = None,
    city: Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="City (case-insensitive).")] = None,
    is_lead: Annotated[bool | None, Query(description="Has a lead_at.")] = None,
    is_customer: Annotated[bool | None, Query(description="Has at least one order.")] = None,
    created_after: Annotated[AwareDatetime | None, Query(description="created_at >= this (inclusive).")] = None,
    created_before: Annotated[AwareDatetime | None, Query(description="created_at < this (exclusive).")] = None,
) -> Page[Contact]:
    filters = repository.ContactFilters(
        email=email,
        q=q,
        stage=stage.value if stage else None,
        lead_channel=lead_channel,
        country=country,
        city=city,
        is_lead=is_lead,
        is_customer=is_customer,
        created_after=created_after,
        created_before=created_before,
    )
    rows, next_cursor = repository.list_contacts(session, workspace_id, filters, cursor, limit)
    return Page[Contact](data=[Contact.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{contact_id}", response_model=Contact)
def get_contact(contact_id: ContactId, session: SessionDep, workspace_id: CurrentWorkspace) -> ContactRow:
    return get_scoped(session, ContactRow, workspace_id, contact_id)


@router.patch("/{contact_id}", response_model=Contact)
def update_contact(
    contact_id: ContactId, data: ContactUpdate, session: SessionDep, workspace_id: CurrentWorkspace
) -> ContactRow:
    return service.update_contact(session, workspace_id, contact_id, data)


@router.get("/{contact_id}/timeline", response_model=Page[TimelineItem])
def get_timeline(
    contact_id: ContactId,
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
) -> Page[TimelineItem]:
    """Touches, orders and stage changes of the contact, newest first, each with a ``type``."""
    get_scoped(session, ContactRow, workspace_id, contact_id)
    items, next_cursor = timeline_queries.timeline(session, workspace_id, contact_id, cursor, limit)
    return Page[TimelineItem](data=items, next_cursor=next_cursor)
