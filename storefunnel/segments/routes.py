"""/api/v1/segments: thin handlers over the service."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.models import Segment as SegmentRow
from storefunnel.pagination import DEFAULT_LIMIT, CursorParam, LimitParam, Page
from storefunnel.segments import repository, service
from storefunnel.segments.schemas import (
    ContactBrief,
    Growth,
    Member,
    MembersChange,
    MembersChanged,
    Preview,
    PreviewRequest,
    Refresh,
    Segment,
    SegmentCreate,
    SegmentUpdate,
)
from storefunnel.tenancy import get_scoped

router = APIRouter(prefix="/segments", tags=["segments"])


@router.post("", response_model=Segment, status_code=201)
def create_segment(data: SegmentCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> SegmentRow:
    """Create a segment; a dynamic one is evaluated at once, so member_count is already true."""
    return service.create_segment(session, workspace_id, data)


@router.get("", response_model=Page[Segment])
def list_segments(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
    kind: Literal["dynamic", "static"] | None = None,
) -> Page[Segment]:
    rows, next_cursor = repository.list_segments(session, workspace_id, cursor, limit, kind)
    return Page[Segment](data=[Segment.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/preview", response_model=Preview)
def preview(data: PreviewRequest, session: SessionDep, workspace_id: CurrentWorkspace) -> Preview:
    """Count and sample the contacts some rules select, without saving anything."""
    count, sample = service.preview(session, workspace_id, data.rules, data.sample_size)
    return Preview(count=count, sample=[ContactBrief.model_validate(c) for c in sample])


@router.get("/{segment_id}", response_model=Segment)
def get_segment(segment_id: int, session: SessionDep, workspace_id: CurrentWorkspace) -> SegmentRow:
    return get_scoped(session, SegmentRow, workspace_id, segment_id)


@router.patch("/{segment_id}", response_model=Segment)
def update_segment(
    segment_id: int, data: SegmentUpdate, session: SessionDep, workspace_id: CurrentWorkspace
) -> SegmentRow:
    return service.update_segment(session, workspace_id, segment_id, data)


@router.delete("/{segment_id}", status_code=204)
def delete_segment(segment_id: int, session: SessionDep, workspace_id: CurrentWorkspace) -> Response:
    service.delete_segment(session, workspace_id, segment_id)
    return Response(status_code=204)


@router.post("/{segment_id}/refresh", response_model=Refresh)
def refresh_segment(segment_id: int, session: SessionDep, workspace_id: CurrentWorkspace) -> Refresh:
    r = service.refresh(session, workspace_id, segment_id)
    return Refresh(
        segment_id=r.segment_id,
        entered=r.entered,
        left=r.left,
        member_count=r.member_count,
        refreshed_at=r.refreshed_at,
    )


@router.get("/{segment_id}/members", response_model=Page[Member])
def list_members(
    segment_id: int,
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
    state: Annotated[
        Literal["current", "left", "all"], Query(description="current members, past stays, or both")
    ] = "current",
) -> Page[Member]:
    get_scoped(session, SegmentRow, workspace_id, segment_id)
    rows, next_cursor = repository.members_page(session, workspace_id, segment_id, state, cursor, limit)
    contacts = repository.contacts_by_ids(session, workspace_id, [r.contact_id for r in rows])
    data = [
        Member(
            contact_id=r.contact_id,
            email=contacts[r.contact_id].email,
            first_name=contacts[r.contact_id].first_name,
            last_name=contacts[r.contact_id].last_name,
            entered_at=r.entered_at,
            left_at=r.left_at,
        )
        for r in rows
    ]
    return Page[Member](data=data, next_cursor=next_cursor)


@router.post("/{segment_id}/members", response_model=MembersChanged)
def add_members(
    segment_id: int, data: MembersChange, session: SessionDep, workspace_id: CurrentWorkspace
) -> MembersChanged:
    """Add contacts to a static segment by id or email; unknown ones make the whole request 422."""
    added, count = service.add_members(session, workspace_id, segment_id, data)
    return MembersChanged(segment_id=segment_id, added=added, member_count=count)


@router.post("/{segment_id}/members/remove", response_model=MembersChanged)
def remove_members(
    segment_id: int, data: MembersChange, session: SessionDep, workspace_id: CurrentWorkspace
) -> MembersChanged:
    removed, count = service.remove_members(session, workspace_id, segment_id, data)
    return MembersChanged(segment_id=segment_id, removed=removed, member_count=count)


@router.get("/{segment_id}/growth", response_model=Growth)
def growth(
    segment_id: int,
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    interval: Literal["day", "week", "month"] = "day",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> Growth:
    """Members at the end of each day (week, month), with how many entered and left in it."""
    points = service.growth(session, workspace_id, segment_id, interval, since, until)
    return Growth(segment_id=segment_id, interval=interval, points=points)
