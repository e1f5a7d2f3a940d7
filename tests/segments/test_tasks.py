"""The worker task commits its own transaction and is safe to run twice."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.models import Contact, Segment, SegmentMember, Workspace
from storefunnel.segments import service, tasks
from storefunnel.segments.schemas import SegmentCreate
from storefunnel.workspaces.service import create_workspace


def test_refresh_segment_task(committed_session: Session, make: Any) -> None:
    s = committed_session
    ws = create_workspace(s, f"task-{uuid.uuid4().hex[:8]}")
    ana = make.contact(s, ws.id, country="PT")
    bob = make.contact(s, ws.id, country="ES")
    seg = service.create_segment(
        s, ws.id, SegmentCreate(name="PT", rules={"field": "country", "op": "eq", "value": "PT"})
    )
    s.commit()
    try:
        s.get(Contact, bob.id).country = "PT"  # type: ignore[union-attr]
        s.commit()
        assert tasks.refresh_segment(ws.id, seg.id) == {
            "segment_id": seg.id,
            "entered": 1,
            "left": 0,
            "member_count": 2,
        }
        assert tasks.refresh_segment(ws.id, seg.id)["entered"] == 0  # twice is harmless
        assert tasks.refresh_all(ws.id) == 1
        s.expire_all()
        assert s.get(Segment, seg.id).member_count == 2  # type: ignore[union-attr]
        open_stays = s.scalars(
            sa.select(SegmentMember.contact_id).where(
                SegmentMember.segment_id == seg.id, SegmentMember.left_at.is_(None)
            )
        ).all()
        assert sorted(open_stays) == sorted([ana.id, bob.id])
    finally:
        s.delete(s.get(Workspace, ws.id))
        s.commit()
