"""/api/v1 for the three models: attribution, lifetime value (CLV) and related products, and recommendations."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep, SessionScope, session_scope_of
from storefunnel.errors import Invalid
from storefunnel.insight import clv_service, related_service
from storefunnel.insight.attribution_service import DEFAULT_BOOTSTRAP, MAX_BOOTSTRAP, attribution_report, parse_models
from storefunnel.insight.facts import Period
from storefunnel.insight.journeys import MAX_LOOKBACK_DAYS

router = APIRouter(tags=["models"])

FromParam = Annotated[str | None, Query(alias="from", description="First day (YYYY-MM-DD, UTC), included.")]
ToParam = Annotated[str | None, Query(alias="to", description="Last day (YYYY-MM-DD, UTC), included; default today.")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
ModelName = Literal["bgnbd", "pareto_nbd"]


def _date(value: str | None, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field}: not an ISO date (YYYY-MM-DD): {value!r}") from None


@router.get("/attribution")
def get_attribution(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    model: Annotated[str, Query(max_length=200, description="all, or a comma-separated list of models.")] = "all",
    by: Annotated[Literal["channel", "campaign"], Query()] = "channel",
    first: FromParam = None,
    last: ToParam = None,
    lookback_days: Annotated[int, Query(ge=1, le=MAX_LOOKBACK_DAYS)] = 30,
    each_order: Annotated[bool, Query(description="Every order's journey, not only first orders.")] = False,
    half_life: Annotated[
        float, Query(gt=0, le=365, description="Time decay: days for a touch's weight to halve.")
    ] = 7.0,
    bootstrap: Annotated[int, Query(ge=0, le=MAX_BOOTSTRAP, description="Resamples; 0 for no intervals.")] = (
        DEFAULT_BOOTSTRAP
    ),
    seed: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Any:
    """Credits per channel or campaign under first, last, linear, time decay, position, Markov and Shapley."""
    period = Period.parse(first, last)
    return attribution_report(
        session,
        workspace_id,
        period,
        models=parse_models(model),
        by=by,
        lookback_days=lookback_days,
        each_order=each_order,
        half_life=half_life,
        bootstrap=bootstrap,
        seed=seed,
    )


class ClvFit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName = "bgnbd"
    observation_end: dt.date | None = Field(default=None, description="Last day of orders the fit sees.")
    refresh_segment: bool = Field(default=True, description="Also refresh the keep-in-touch segment.")


@router.post("/clv/fit", status_code=201)
def post_clv_fit(data: ClvFit, session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    """Fit BG/NBD (or Pareto/NBD) and Gamma-Gamma on the orders; store one prediction per customer."""
    fit = clv_service.fit_clv(session, workspace_id, data.observation_end, data.model)
    report = clv_service.fit_report(fit)
    if data.refresh_segment:
        report["segment"] = clv_service.refresh_keep_in_touch_segment(session, workspace_id)
    return report


@router.get("/clv/fit")
def get_clv_fit(session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    """The latest fit: parameters, customers, totals."""
    return clv_service.fit_report(clv_service.latest_fit(session, workspace_id))


@router.get("/clv/customers")
def get_clv_customers(
    session: SessionDep, workspace_id: CurrentWorkspace, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """Customers by predicted 12-month value, with P(alive) and expected purchases."""
    return clv_service.customers(session, workspace_id, limit=limit, offset=offset)


@router.get("/clv/customers/{contact_id}")
def get_clv_customer(
    session: SessionDep, workspace_id: CurrentWorkspace, contact_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Any:
    return clv_service.customer(session, workspace_id, contact_id)


@router.get("/clv/distribution")
def get_clv_distribution(
    session: SessionDep, workspace_id: CurrentWorkspace, bins: Annotated[int, Query(ge=2, le=100)] = 20
) -> Any:
    """Histogram of the predicted 12-month values."""
    return clv_service.distribution(session, workspace_id, bins)


@router.get("/clv/holdout")
def get_clv_holdout(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    holdout_days: Annotated[int, Query(ge=7, le=730)] = 90,
    observation_end: Annotated[str | None, Query(max_length=10)] = None,
    model: ModelName = "bgnbd",
) -> Any:
    """Calibration/holdout check: fit before the last ``holdout_days``, predicted vs actual purchases after."""
    end = _date(observation_end, "observation_end")
    return clv_service.holdout_report(session, workspace_id, holdout_days, end, model)


@router.get("/clv/keep-in-touch")
def get_keep_in_touch(
    session: SessionDep, workspace_id: CurrentWorkspace, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """Valuable customers slipping away, most valuable first."""
    return clv_service.customers(session, workspace_id, keep_in_touch=True, limit=limit, offset=offset)


@router.post("/clv/keep-in-touch/segment")
def post_keep_in_touch_segment(session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    """Refresh the static segment "Keep in touch (lifetime value)" from the stored predictions."""
    return clv_service.refresh_keep_in_touch_segment(session, workspace_id)


class RelatedBuild(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_support: float = Field(default=related_service.DEFAULT_MIN_SUPPORT, gt=0, le=1)
    min_confidence: float = Field(default=related_service.DEFAULT_MIN_CONFIDENCE, ge=0, le=1)


@router.post("/related/build", status_code=201)
def post_related_build(data: RelatedBuild, session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    """Learn pair rules and best sellers from the orders and store them."""
    fit = related_service.build_related(session, workspace_id, data.min_support, data.min_confidence)
    return {"id": fit.id, "fitted_at": fit.fitted_at.isoformat(), "params": fit.params, "metrics": fit.metrics}


@router.get("/related/rules")
def get_related_rules(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    sort: Literal["lift", "confidence", "support"] = "lift",
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    """Stored rules, strongest first."""
    return related_service.rules_report(session, workspace_id, sort=sort, limit=limit, offset=offset)


@router.get("/related/products/{product_id}")
def get_related_for_product(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    product_id: Annotated[int, Path(ge=1, le=2**62)],
    sort: Literal["lift", "confidence", "support"] = "confidence",
    limit: Limit = 20,
) -> Any:
    """What is bought with one product."""
    return related_service.rules_report(session, workspace_id, product_id=product_id, sort=sort, limit=limit)


@router.get("/related/holdout")
def get_related_holdout(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    split_at: Annotated[str, Query(max_length=10, description="Day (YYYY-MM-DD) splitting learning from testing.")],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Any:
    """Hit rate@k of the rules against best sellers on the orders after ``split_at``."""
    day = _date(split_at, "split_at")
    if day is None:
        raise Invalid("split_at: a day (YYYY-MM-DD) is required")
    return related_service.holdout_hit_rate(session, workspace_id, dt.datetime.combine(day, dt.time(), dt.UTC), k)


def _recommendations(scope: SessionScope, workspace_id: int, contact_id: int, k: int) -> dict[str, Any]:
    with contextmanager(scope)() as session:
        return related_service.recommendations(session, workspace_id, contact_id, k)


# The storefront calls this on every page view, so the whole unit of work (open, query, commit, close) runs in
# one worker thread: a SessionDep route hops to a thread three times (open, handler, commit), and under load
# each hop waits for a free core and the GIL. The key's workspace comes from the key cache, with no hop at all.
@router.get("/contacts/{contact_id}/recommendations")
async def get_recommendations(
    request: Request,
    workspace_id: CurrentWorkspace,
    contact_id: Annotated[int, Path(ge=1, le=2**62)],
    k: Annotated[int, Query(ge=1, le=related_service.MAX_K)] = related_service.DEFAULT_K,
) -> Any:
    """The contact's next products: related to what they own, then their buying group's best sellers."""
    return await run_in_threadpool(_recommendations, session_scope_of(request), workspace_id, contact_id, k)
