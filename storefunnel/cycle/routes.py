"""/api/v1/cycle: stage counts, a contact's history, the rules, recompute and the pipeline."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.cycle import service
from storefunnel.cycle.schemas import CycleRules, HistoryItem, Pipeline, RecomputeIn, RecomputeOut, StageCounts
from storefunnel.db import SessionDep, utcnow
from storefunnel.errors import Invalid

router = APIRouter(prefix="/cycle", tags=["cycle"])


@router.get("/stages", response_model=StageCounts)
def stages(session: SessionDep, workspace_id: CurrentWorkspace) -> StageCounts:
    counts = service.stage_counts(session, workspace_id)
    return StageCounts(counts=counts, total=sum(counts.values()))


@router.get("/contacts/{contact_id}/history", response_model=list[HistoryItem])
def contact_history(contact_id: int, session: SessionDep, workspace_id: CurrentWorkspace) -> list[HistoryItem]:
    return [HistoryItem.model_validate(r) for r in service.history(session, workspace_id, contact_id)]


@router.get("/rules", response_model=CycleRules)
def get_rules(session: SessionDep, workspace_id: CurrentWorkspace) -> CycleRules:
    return service.get_rules(session, workspace_id)


@router.put("/rules", response_model=CycleRules)
def put_rules(
    rules: CycleRules,
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    recompute: Annotated[bool, Query(description="Rebuild every contact's history with the new rules.")] = True,
) -> CycleRules:
    service.set_rules(session, workspace_id, rules)
    if recompute:
        service.recompute(session, workspace_id)
    return rules


@router.post("/recompute", response_model=RecomputeOut)
def recompute(session: SessionDep, workspace_id: CurrentWorkspace, body: RecomputeIn | None = None) -> RecomputeOut:
    result = service.recompute(session, workspace_id, body.as_of if body else None)
    return RecomputeOut(as_of=result.as_of, transitions=result.transitions, counts=result.counts)


@router.get("/pipeline", response_model=Pipeline, response_model_by_alias=True)
def pipeline(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    start: Annotated[
        dt.datetime | None, Query(alias="from", description="Start of the period (default to - 30 days).")
    ] = None,
    end: Annotated[
        dt.datetime | None, Query(alias="to", description="End of the period, exclusive (default now).")
    ] = None,
) -> Any:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name}: must include a timezone, e.g. 2026-11-01T00:00:00Z")
    end = end or utcnow()
    start = start or end - dt.timedelta(days=30)
    return service.pipeline(session, workspace_id, start, end)
