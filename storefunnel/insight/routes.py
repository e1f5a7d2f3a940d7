"""/api/v1/insight: the owner's questions (funnel, channels, who buys, retention, the advice) as JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.insight.advice import Targets, advice_report, default_period, get_targets, set_targets
from storefunnel.insight.channels import channels_report
from storefunnel.insight.facts import Period
from storefunnel.insight.funnel import funnel_report
from storefunnel.insight.retention import retention_report
from storefunnel.insight.who_buys import DEFAULT_FDR, DEFAULT_MIN_CUSTOMERS, DEFAULT_MIN_LEADS, who_buys_report
from storefunnel.insight.who_buys import create_buying_group as save_buying_group
from storefunnel.segments.schemas import Segment

router = APIRouter(prefix="/insight", tags=["insight"])

FromParam = Annotated[str | None, Query(alias="from", description="First day (YYYY-MM-DD, UTC), included.")]
ToParam = Annotated[str | None, Query(alias="to", description="Last day (YYYY-MM-DD, UTC), included; default today.")]
FormatParam = Annotated[str, Query(pattern="^(json|csv)$", description="json, or csv for the main table.")]


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, list):
            out[name] = " ".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def to_csv(report: dict[str, Any], table: str) -> str:
    """One list of a report (e.g. the funnel's weeks) as CSV, nested fields flattened as ``a.b`` columns."""
    rows = [_flat(r) for r in report.get(table, [])]
    buf = io.StringIO()
    names: list[str] = []
    for r in rows:
        names.extend(k for k in r if k not in names)
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _reply(report: dict[str, Any], fmt: str, table: str) -> Any:
    if fmt == "csv":
        return Response(to_csv(report, table), media_type="text/csv; charset=utf-8")
    return report


@router.get("/funnel")
def get_funnel(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    first: FromParam = None,
    last: ToParam = None,
    window_days: Annotated[int, Query(ge=1, le=3660, description="Conversion window from lead, in days.")] = 30,
    format: FormatParam = "json",
) -> Any:
    """Visitors -> leads -> customers -> repeat customers, with Wilson 95% intervals and breakdowns."""
    period = Period.parse(first, last)
    return _reply(funnel_report(session, workspace_id, period, window_days), format, "by_week")


@router.get("/channels")
def get_channels(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    first: FromParam = None,
    last: ToParam = None,
    format: FormatParam = "json",
) -> Any:
    """Per channel and campaign: leads, customers, revenue, spend, cost per lead, CAC, ROAS."""
    period = Period.parse(first, last)
    return _reply(channels_report(session, workspace_id, period), format, "campaigns")


@router.get("/who-buys")
def get_who_buys(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    first: FromParam = None,
    last: ToParam = None,
    min_leads: Annotated[int, Query(ge=1, le=1_000_000)] = DEFAULT_MIN_LEADS,
    min_customers: Annotated[int, Query(ge=0, le=1_000_000)] = DEFAULT_MIN_CUSTOMERS,
    fdr: Annotated[float, Query(gt=0, lt=1, description="False discovery rate (Benjamini-Hochberg).")] = DEFAULT_FDR,
    format: FormatParam = "json",
) -> Any:
    """Groups over- and under-represented among customers versus leads, FDR-controlled; the top one in words."""
    period = Period.parse(first, last, default_days=365)
    report = who_buys_report(session, workspace_id, period, min_leads, min_customers, fdr)
    return _reply(report, format, "cells")


@router.get("/retention")
def get_retention(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    first: FromParam = None,
    last: ToParam = None,
    format: FormatParam = "json",
) -> Any:
    """Cohorts by first-order month: share ordering again in month k, revenue; repeat rate; days between orders."""
    period = Period.parse(first, last, default_days=365)
    return _reply(retention_report(session, workspace_id, period), format, "cohorts")


class BuyingGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attributes: dict[str, str] = Field(
        description="The cell, e.g. {'country': 'PT', 'city': 'Porto', 'age_band': '25-29', 'gender': 'female'}."
    )
    name: str | None = Field(default=None, min_length=1, max_length=100)


@router.post("/who-buys/segment", response_model=Segment, status_code=201)
def create_buying_group(data: BuyingGroupCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    """Save a who-buys cell as a dynamic segment (its members refresh with the data)."""
    return save_buying_group(session, workspace_id, data.attributes, data.name)


def advice_period(first: str | None, last: str | None) -> Period:
    """Both days missing: the last 28 whole days; otherwise as given (28 days ending on ``to`` by default)."""
    if first is None and last is None:
        return default_period()
    return Period.parse(first, last, default_days=28)


@router.get("/advice")
def get_advice(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    first: FromParam = None,
    last: ToParam = None,
    format: FormatParam = "json",
) -> Any:
    """Marketing or sales? The period (default: the last 28 whole days) against the one before, stage by stage:
    ``focus`` (marketing, sales or unclear), ranked ``recommendations`` with their evidence, and the ``stages``."""
    return _reply(advice_report(session, workspace_id, advice_period(first, last)), format, "stages")


@router.get("/advice/targets", response_model=Targets)
def get_advice_targets(session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    """The owner's targets the advice also tests against (weekly leads, 30-day conversion of leads)."""
    return get_targets(session, workspace_id)


@router.put("/advice/targets", response_model=Targets)
def put_advice_targets(data: Targets, session: SessionDep, workspace_id: CurrentWorkspace) -> Any:
    """Set (or clear, with null) the targets."""
    return set_targets(session, workspace_id, data)
