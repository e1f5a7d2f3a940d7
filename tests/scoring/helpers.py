"""A simulated store with the planted buying group marked as a target group, committed for real."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel.models import Workspace
from storefunnel.scoring import service
from storefunnel.segments.schemas import SegmentCreate
from storefunnel.segments.service import create_segment
from storefunnel.simulate import simulate_store
from storefunnel.simulate.params import BuyingGroup

GROUP = BuyingGroup()
GROUP_RULES = {
    "all": [
        {"field": "city", "op": "eq", "value": GROUP.city},
        {"field": "gender", "op": "eq", "value": GROUP.gender},
        {"field": "age_band", "op": "eq", "value": GROUP.age_band},
    ]
}


@dataclass
class SimStore:
    workspace_id: int
    name: str
    segment_id: int
    as_of: dt.datetime
    truth: dict[str, Any]


def simulated_store(
    engine: Engine, *, contacts: int, days: int, seed: int, anchor: dt.date, train: bool = True
) -> SimStore:
    name = f"score-{uuid.uuid4().hex[:10]}"
    with Session(engine) as s:
        ws = Workspace(name=name, settings={})
        s.add(ws)
        s.commit()
        wid = ws.id
    truth = simulate_store(engine, wid, contacts=contacts, days=days, seed=seed, anchor=anchor)
    as_of = dt.datetime.combine(anchor, dt.time(), dt.UTC)
    with Session(engine) as s:
        seg = create_segment(s, wid, SegmentCreate(name="Porto women 25-29", rules=GROUP_RULES))
        service.set_target_segments(s, wid, [seg.id])
        if train:
            service.train(s, wid, as_of=as_of)
        s.commit()
        return SimStore(wid, name, seg.id, as_of, truth)


def drop(engine: Engine, workspace_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(Workspace.__table__).where(Workspace.__table__.c.id == workspace_id))
