"""Sales → Pipeline, Leads to follow up, and a contact's page (profile, stage history, timeline, score and why)."""

from __future__ import annotations

import csv
import io
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from storefunnel.cycle import service as cycle
from storefunnel.db import SessionDep
from storefunnel.errors import AppError, NotFound
from storefunnel.insight.overview import LocalRange
from storefunnel.models import Contact, Order, StageChange, Touch
from storefunnel.scoring import service as scoring
from storefunnel.web.auth import DataUser, PageUser
from storefunnel.web.leads import local_time
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.overview import DEFAULT_PRESET, PRESETS, FromQ, PresetQ, ToQ, parse_range
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router, see_other

PIPELINE = "/sales/pipeline"
FOLLOW_UP = "/sales/follow-up"
router = dashboard_router()
register_page(
    NavEntry("sales", "Pipeline", PIPELINE, "Contacts per stage, conversion between stages, time in stage", 10)
)
register_page(NavEntry("sales", "Leads to follow up", FOLLOW_UP, "The leads most likely to buy soon, and why", 20))

STAGE_LABELS = {
    "prospecting": "Prospecting",
    "conversion": "Conversion",
    "buying": "Buying",
    "thanked": "Thanked",
    "keeping_in_touch": "Keeping in touch",
    "lapsed": "Lapsed",
}
CHART_W, CHART_H, BAR_GAP = 640, 200, 16


def _partial(request: Request) -> bool:
    return request.headers.get("hx-request") == "true" and "hx-history-restore-request" not in request.headers


def _query(rng: LocalRange) -> str:
    return f"from={rng.first.isoformat()}&to={rng.last.isoformat()}"


def stage_chart(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bars of contacts per stage for an inline SVG (no script: the chart is in the page itself)."""
    top = max((s["contacts"] for s in stages), default=0) or 1
    width = (CHART_W - BAR_GAP * (len(stages) + 1)) / max(len(stages), 1)
    bars = []
    for i, s in enumerate(stages):
        h = round((CHART_H - 40) * s["contacts"] / top, 1)
        x = BAR_GAP + i * (width + BAR_GAP)
        bars.append(
            {
                "stage": s["stage"],
                "label": STAGE_LABELS.get(s["stage"], s["stage"]),
                "contacts": s["contacts"],
                "x": round(x, 1),
                "y": round(CHART_H - 20 - h, 1),
                "w": round(width, 1),
                "h": h,
                "cx": round(x + width / 2, 1),
            }
        )
    return bars


@router.get(PIPELINE, response_model=None)
def pipeline_page(
    request: Request, session: SessionDep, user: PageUser, preset: PresetQ = "", first: FromQ = "", last: ToQ = ""
) -> Response:
    """Stage counts at the end of the range, and where the contacts who entered a stage in it went next."""
    template = "sales/pipeline_body.html" if _partial(request) else "sales/pipeline.html"
    ws = user.workspace
    base = {"user": user, "workspace": ws, "presets": PRESETS, "page_path": PIPELINE, "labels": STAGE_LABELS}
    try:
        rng, active = parse_range(ws, preset, first, last)
    except AppError as exc:
        fallback = LocalRange.last_days(DEFAULT_PRESET, ws.display_timezone)
        inputs = {"first": first or fallback.first.isoformat(), "last": last or fallback.last.isoformat()}
        context = {**base, "error": exc.detail, "range": None, "active": None, "data": None, "inputs": inputs}
        return render(request, template, context, 422)
    data = cycle.pipeline(session, ws.id, rng.start_utc, rng.end_utc)
    context = {
        **base,
        "range": rng,
        "active": active,
        "data": data,
        "total": sum(s["contacts"] for s in data["stages"]),
        "bars": stage_chart(data["stages"]),
        "chart": {"w": CHART_W, "h": CHART_H},
        "query": _query(rng),
        "inputs": {"first": rng.first.isoformat(), "last": rng.last.isoformat()},
        "error": None,
    }
    return render(request, template, context)


def pipeline_csv(data: dict[str, Any]) -> str:
    """Two blocks in one file: the stages, then the stage-to-stage conversions with their 95% intervals."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["stage", "contacts_at_end", "entered", "exited", "median_days_in_stage"])
    for s in data["stages"]:
        median = "" if s["median_days_in_stage"] is None else f"{s['median_days_in_stage']:.2f}"
        w.writerow([s["stage"], s["contacts"], s["entered"], s["exited"], median])
    w.writerow([])
    w.writerow(["from_stage", "to_stage", "count", "of", "rate", "low_95", "high_95"])
    for c in data["conversions"]:
        w.writerow(
            [
                c["from_stage"],
                c["to_stage"],
                c["count"],
                c["of"],
                f"{c['rate']:.4f}",
                f"{c['low']:.4f}",
                f"{c['high']:.4f}",
            ]
        )
    return out.getvalue()


@router.get("/dashboard-data/pipeline.csv")
def pipeline_export(
    session: SessionDep, user: DataUser, preset: PresetQ = "", first: FromQ = "", last: ToQ = ""
) -> Response:
    rng, _ = parse_range(user.workspace, preset, first, last)
    body = pipeline_csv(cycle.pipeline(session, user.workspace.id, rng.start_utc, rng.end_utc))
    filename = f"pipeline_{rng.first.isoformat()}_{rng.last.isoformat()}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@router.get(FOLLOW_UP, response_model=None)
def follow_up_page(request: Request, session: SessionDep, user: PageUser) -> Response:
    ws = user.workspace
    model = scoring.latest_model(session, ws.id)
    leads = scoring.leads_to_follow_up(session, ws.id, 25) if model is not None else []
    context = {
        "user": user,
        "workspace": ws,
        "model": model,
        "leads": leads,
        "labels": STAGE_LABELS,
        "local_time": local_time(ws.display_timezone),
        "error": request.query_params.get("error"),
    }
    return render(request, "sales/follow_up.html", context)


@router.post(FOLLOW_UP + "/train", response_model=None)
def follow_up_train(request: Request, session: SessionDep, user: PageUser) -> Response:
    """Retrain from the page; a store without enough history gets the reason on the page, not an error page."""
    try:
        with session.begin_nested():
            scoring.train(session, user.workspace.id)
    except AppError as exc:
        return render(
            request,
            "sales/follow_up.html",
            {
                "user": user,
                "workspace": user.workspace,
                "model": scoring.latest_model(session, user.workspace.id),
                "leads": [],
                "labels": STAGE_LABELS,
                "local_time": local_time(user.workspace.display_timezone),
                "error": exc.detail,
            },
            422,
        )
    redirect: RedirectResponse = see_other(FOLLOW_UP)
    return redirect


def timeline_summary(session: Session, workspace_id: int, contact_id: int) -> dict[str, Any]:
    """Touches per channel, first and last touch, orders and what they came to: a few grouped queries."""
    per_channel = session.execute(
        sa.select(Touch.channel, sa.func.count(), sa.func.min(Touch.occurred_at), sa.func.max(Touch.occurred_at))
        .where(Touch.workspace_id == workspace_id, Touch.contact_id == contact_id)
        .group_by(Touch.channel)
        .order_by(sa.func.count().desc(), Touch.channel)
    ).all()
    orders = session.execute(
        sa.select(Order.id, Order.placed_at, Order.total, Order.currency, Order.status)
        .where(Order.workspace_id == workspace_id, Order.contact_id == contact_id)
        .order_by(Order.placed_at.desc())
        .limit(20)
    ).all()
    recent = scoring.last_touches(session, workspace_id, [contact_id], 10)[contact_id]
    firsts = [r[2] for r in per_channel]
    lasts = [r[3] for r in per_channel]
    return {
        "channels": [{"channel": r[0], "touches": int(r[1])} for r in per_channel],
        "touches": sum(int(r[1]) for r in per_channel),
        "first_touch": min(firsts) if firsts else None,
        "last_touch": max(lasts) if lasts else None,
        "orders": [
            {"id": o.id, "placed_at": o.placed_at, "total": o.total, "currency": o.currency, "status": o.status}
            for o in orders
        ],
        "recent": recent,
    }


@router.get("/sales/contacts/{contact_id}", response_model=None)
def contact_page(contact_id: int, request: Request, session: SessionDep, user: PageUser) -> Response:
    ws = user.workspace
    contact = session.scalars(sa.select(Contact).where(Contact.workspace_id == ws.id, Contact.id == contact_id)).first()
    if contact is None:
        return render(
            request, "error.html", {"user": user, "title": "Not found", "message": f"No contact {contact_id}."}, 404
        )
    history = session.scalars(
        sa.select(StageChange)
        .where(StageChange.workspace_id == ws.id, StageChange.contact_id == contact_id)
        .order_by(StageChange.changed_at, StageChange.id)
    ).all()
    try:
        explanation: dict[str, Any] | None = scoring.explain(session, ws.id, contact_id)
        no_score = ""
    except NotFound as exc:
        explanation, no_score = None, exc.detail
    context = {
        "user": user,
        "workspace": ws,
        "contact": contact,
        "history": history,
        "timeline": timeline_summary(session, ws.id, contact_id),
        "explanation": explanation,
        "no_score": no_score,
        "labels": STAGE_LABELS,
        "local_time": local_time(ws.display_timezone),
    }
    return render(request, "sales/contact.html", context)
