"""Segments: SegmentCreate, SegmentUpdate (all optional), Segment (read), and the shapes around them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RulesField = Field(
    default=None,
    description="The rule tree, e.g. {'all': [{'field': 'country', 'op': 'eq', 'value': 'PT'}]}; see docs/segments.md.",
)


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    kind: Literal["dynamic", "static"] = "dynamic"
    rules: dict[str, Any] | None = RulesField


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    rules: dict[str, Any] | None = RulesField


class Segment(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    kind: str
    rules: dict[str, Any] | None
    member_count: int
    refreshed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: dict[str, Any]
    sample_size: int = Field(default=10, ge=0, le=100)


class ContactBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    country: str | None
    stage: str | None


class Preview(BaseModel):
    count: int
    sample: list[ContactBrief]


class Refresh(BaseModel):
    segment_id: int
    entered: int
    left: int
    member_count: int
    refreshed_at: dt.datetime


class MembersChange(BaseModel):
    """Contacts to add to or remove from a static segment, by id, by email, or both."""

    model_config = ConfigDict(extra="forbid")

    contact_ids: list[int] = Field(default_factory=list, max_length=10000)
    emails: list[str] = Field(default_factory=list, max_length=10000)


class MembersChanged(BaseModel):
    segment_id: int
    added: int = 0
    removed: int = 0
    member_count: int


class Member(BaseModel):
    contact_id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    entered_at: dt.datetime
    left_at: dt.datetime | None


class GrowthPoint(BaseModel):
    period: dt.date = Field(description="First day of the period (UTC).")
    members: int = Field(description="Members at the end of the period.")
    entered: int
    left: int


class Growth(BaseModel):
    segment_id: int
    interval: Literal["day", "week", "month"]
    points: list[GrowthPoint]
