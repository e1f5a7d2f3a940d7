"""/api/v1/scoring: train, the model and its metrics, scores, one contact's explanation, leads to follow up."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.pagination import CursorParam, LimitParam
from storefunnel.scoring import service
from storefunnel.scoring.schemas import Explanation, FollowUpItem, ModelOut, ScoresPage, TrainIn

router = APIRouter(prefix="/scoring", tags=["scoring"])


@router.post("/train", response_model=ModelOut)
def train(session: SessionDep, workspace_id: CurrentWorkspace, body: TrainIn | None = None) -> Any:
    """Train on this store's history, judge on the latest window, and rescore every contact not yet a customer."""
    body = body or TrainIn()
    if body.target_segments is not None:
        service.set_target_segments(session, workspace_id, body.target_segments)
    service.train(
        session,
        workspace_id,
        horizon_days=body.horizon_days,
        half_life_days=body.half_life_days,
        as_of=body.as_of,
    )
    return service.model_summary(session, workspace_id)


@router.get("/model", response_model=ModelOut)
def model(session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    return service.model_summary(session, workspace_id)


@router.get("/scores", response_model=ScoresPage)
def scores(
    session: SessionDep, workspace_id: CurrentWorkspace, cursor: CursorParam = None, limit: LimitParam = 50
) -> Any:
    service.require_model(session, workspace_id)
    items, nxt = service.list_scores(session, workspace_id, limit, cursor)
    return {"data": items, "next_cursor": nxt}


@router.get("/contacts/{contact_id}", response_model=Explanation)
def explanation(contact_id: int, session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    return service.explain(session, workspace_id, contact_id)


@router.get("/leads-to-follow-up", response_model=list[FollowUpItem])
def leads_to_follow_up(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    limit: Annotated[int, Query(ge=1, le=200, description="How many leads.")] = 20,
) -> Any:
    return service.leads_to_follow_up(session, workspace_id, limit)
