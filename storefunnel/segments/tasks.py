"""Worker tasks for segments: ids in, one committed transaction each, safe to run twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from storefunnel.db import get_sessionmaker
from storefunnel.models import Segment
from storefunnel.segments import service


def refresh_segment(workspace_id: int, segment_id: int) -> dict[str, int]:
    """Re-evaluate one segment and commit the entries and exits ("segments.refresh")."""
    with get_sessionmaker()() as session, session.begin():
        r = service.refresh(session, workspace_id, segment_id)
        return {"segment_id": r.segment_id, "entered": r.entered, "left": r.left, "member_count": r.member_count}


def refresh_all(workspace_id: int | None = None) -> int:
    """Refresh every dynamic segment, of one workspace or of all ("segments.refresh_all").

    One transaction per segment, so one failure does not undo the rest; returns how many were refreshed.
    """
    with get_sessionmaker()() as session:
        stmt = sa.select(Segment.workspace_id, Segment.id).where(Segment.kind == "dynamic").order_by(Segment.id)
        if workspace_id is not None:
            stmt = stmt.where(Segment.workspace_id == workspace_id)
        targets = [(int(w), int(s)) for w, s in session.execute(stmt)]
    for ws, sid in targets:
        refresh_segment(ws, sid)
    return len(targets)


TASKS: dict[str, Callable[..., Any]] = {
    "segments.refresh": refresh_segment,
    "segments.refresh_all": refresh_all,
}
