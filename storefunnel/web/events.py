"""Marketing → Recent events: the last touches and identified contacts arriving, for checking an integration.

The page polls its feed every 2 s (HTMX). Touches are listed in arrival order (newest id first), not by their
``timestamp``, so a client that sends old or skewed timestamps still sees its events on top. Identify calls
leave no event row of their own: they create or update a contact, so they are shown as the contacts most
recently created or updated (the same list shows contacts changed by imports and store webhooks).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from storefunnel.db import SessionDep, utcnow
from storefunnel.errors import Invalid
from storefunnel.models import Contact, Touch
from storefunnel.web.auth import PageUser
from storefunnel.web.leads import local_time
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router

PATH = "/marketing/events"
IDENTIFY = "identify"
# The kinds offered by the filter; anything else the tracking API stores can still be typed in the address.
KINDS = ("page", "screen", "track", IDENTIFY, "email_open", "email_click", "ad_click")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
POLL_SECONDS = 2

router = dashboard_router()
register_page(NavEntry("marketing", "Recent events", PATH, "Touches and identify calls as they arrive", 90))

KindQ = Annotated[str, Query(max_length=32)]
LimitQ = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@dataclass(frozen=True)
class EventRow:
    id: int
    occurred_at: dt.datetime
    kind: str
    event: str | None
    channel: str
    contact_id: int | None
    contact: str | None
    anonymous_id: str | None
    url: str | None


@dataclass(frozen=True)
class ProfileRow:
    contact_id: int
    updated_at: dt.datetime
    created: bool
    contact: str
    name: str
    lead_at: dt.datetime | None
    lead_channel: str | None


def _contact_label(email: str | None, external_id: str | None, contact_id: int) -> str:
    return email or external_id or f"contact #{contact_id}"


def recent_touches(session: Session, workspace_id: int, kind: str | None, limit: int) -> list[EventRow]:
    """The workspace's last ``limit`` touches as they arrived (ids grow with inserts), with their contact."""
    stmt = (
        sa.select(
            Touch.id,
            Touch.occurred_at,
            Touch.kind,
            Touch.event,
            Touch.channel,
            Touch.contact_id,
            Touch.anonymous_id,
            Touch.url,
            Contact.email,
            Contact.external_id,
        )
        .outerjoin(Contact, sa.and_(Contact.id == Touch.contact_id, Contact.workspace_id == workspace_id))
        # ``workspace_id + 0`` keeps the filter off the (workspace_id, occurred_at) index: the planner then walks
        # the primary key backwards and stops after ``limit`` rows instead of sorting the workspace's every touch.
        .where((Touch.workspace_id + 0) == workspace_id)
        .order_by(Touch.id.desc())
        .limit(limit)
    )
    if kind:
        stmt = stmt.where(Touch.kind == kind)
    return [
        EventRow(
            r.id,
            r.occurred_at,
            r.kind,
            r.event,
            r.channel,
            r.contact_id,
            _contact_label(r.email, r.external_id, r.contact_id) if r.contact_id is not None else None,
            r.anonymous_id,
            r.url,
        )
        for r in session.execute(stmt)
    ]


def recent_profiles(session: Session, workspace_id: int, limit: int) -> list[ProfileRow]:
    """The contacts created or updated most recently: what identify calls (and imports, webhooks) changed."""
    stmt = (
        sa.select(
            Contact.id,
            Contact.email,
            Contact.external_id,
            Contact.first_name,
            Contact.last_name,
            Contact.created_at,
            Contact.updated_at,
            Contact.lead_at,
            Contact.lead_channel,
        )
        .where(Contact.workspace_id == workspace_id)
        .order_by(Contact.updated_at.desc(), Contact.id.desc())
        .limit(limit)
    )
    return [
        ProfileRow(
            r.id,
            r.updated_at,
            abs(r.updated_at - r.created_at) < dt.timedelta(seconds=1),
            _contact_label(r.email, r.external_id, r.id),
            " ".join(p for p in (r.first_name, r.last_name) if p),
            r.lead_at,
            r.lead_channel,
        )
        for r in session.execute(stmt)
    ]


def _kind(value: str) -> str:
    value = value.strip()
    if value and not all(c.isalnum() or c in "_-" for c in value):
        raise Invalid(f"kind: expected a touch kind such as {', '.join(KINDS)}, got {value!r}")
    return value


def _context(session: Session, user: PageUser, kind: str, limit: int) -> dict[str, object]:
    ws = user.workspace
    show_touches = kind != IDENTIFY
    show_profiles = kind in ("", IDENTIFY)
    return {
        "user": user,
        "kind": kind,
        "kinds": KINDS if kind in KINDS or not kind else (*KINDS, kind),
        "limit": limit,
        "poll": POLL_SECONDS,
        "touches": recent_touches(session, ws.id, kind or None, limit) if show_touches else None,
        "profiles": recent_profiles(session, ws.id, min(limit, 20) if kind == "" else limit) if show_profiles else None,
        "local_time": local_time(ws.display_timezone, seconds=True),
        "timezone": ws.display_timezone,
        "now": local_time(ws.display_timezone, seconds=True)(utcnow()),
    }


@router.get(PATH, response_model=None)
def events_page(
    request: Request, session: SessionDep, user: PageUser, kind: KindQ = "", limit: LimitQ = DEFAULT_LIMIT
) -> Response:
    return render(request, "marketing/events.html", _context(session, user, _kind(kind), limit))


@router.get(PATH + "/feed", response_model=None)
def events_feed(
    request: Request, session: SessionDep, user: PageUser, kind: KindQ = "", limit: LimitQ = DEFAULT_LIMIT
) -> Response:
    """The feed alone: what the page swaps in every few seconds and when the filter changes."""
    return render(request, "marketing/events_feed.html", _context(session, user, _kind(kind), limit))
