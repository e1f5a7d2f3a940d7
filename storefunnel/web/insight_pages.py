"""Dashboard pages of the insight analytics: Funnel and Who buys (Together), Channels (Marketing), Retention (Sales).

Each page draws its chart as inline SVG computed here (no script needed), shows the table behind it, and
offers the same table as CSV. Periods are whole UTC days, as in the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from storefunnel.db import SessionDep
from storefunnel.errors import AppError
from storefunnel.insight.channels import channels_report
from storefunnel.insight.facts import Period
from storefunnel.insight.funnel import funnel_report
from storefunnel.insight.retention import retention_report
from storefunnel.insight.routes import to_csv
from storefunnel.insight.who_buys import DIMENSIONS, create_buying_group, who_buys_report
from storefunnel.web.auth import DataUser, PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.overview import FromQ, ToQ
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router, see_other

router = dashboard_router()
FUNNEL, WHO_BUYS, CHANNELS, RETENTION = (
    "/together/funnel",
    "/together/who-buys",
    "/marketing/channels",
    "/sales/retention",
)
register_page(NavEntry("together", "Funnel", FUNNEL, "Visitors to leads to customers: marketing or sales?", 10))
register_page(
    NavEntry("together", "Who buys", WHO_BUYS, "Groups that buy more (or less) than their share of leads", 20)
)
register_page(NavEntry("marketing", "Channels", CHANNELS, "Leads, customers, spend, CAC and ROAS per channel", 30))
register_page(NavEntry("sales", "Retention", RETENTION, "Cohorts by first-order month: who comes back", 40))

CHART_W, CHART_H = 640, 200

Report = Callable[[Session, int, Period], dict[str, Any]]
PAGES: dict[str, tuple[str, Report, int, str]] = {
    # path: (template, report, default days, CSV table)
    FUNNEL: ("together/funnel.html", lambda s, w, p: funnel_report(s, w, p), 90, "by_week"),
    WHO_BUYS: ("together/who_buys.html", lambda s, w, p: who_buys_report(s, w, p), 365, "cells"),
    CHANNELS: ("marketing/channels.html", lambda s, w, p: channels_report(s, w, p), 90, "campaigns"),
    RETENTION: ("sales/retention.html", lambda s, w, p: retention_report(s, w, p), 365, "cohorts"),
}


def bars(values: list[float], labels: list[str], height: int = CHART_H) -> list[dict[str, Any]]:
    """Bar geometry for an inline SVG chart: one bar per value, scaled to the largest."""
    top = max((v for v in values if v is not None), default=0) or 1
    gap = 8
    n = max(len(values), 1)
    width = (CHART_W - gap * (n + 1)) / n
    out = []
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        h = round((height - 40) * (v or 0) / top, 1)
        x = gap + i * (width + gap)
        out.append(
            {
                "label": label,
                "value": v,
                "x": round(x, 1),
                "y": round(height - 20 - h, 1),
                "w": round(width, 1),
                "h": h,
                "cx": round(x + width / 2, 1),
            }
        )
    return out


def charts(path: str, report: dict[str, Any]) -> dict[str, Any]:
    if path == FUNNEL:
        weeks = report["by_week"]
        return {
            "steps": bars(
                [s["count"] for s in report["steps"]], [s["name"].replace("_", " ") for s in report["steps"]]
            ),
            "leads": bars([w["leads"] for w in weeks], [w["key"][5:] for w in weeks]),
            "customers": bars([w["new_customers"] for w in weeks], [w["key"][5:] for w in weeks]),
        }
    if path == WHO_BUYS:
        top = report["significant"][:12]
        return {"lift": bars([c["lift"] or 0 for c in top], [str(i + 1) for i in range(len(top))])}
    if path == CHANNELS:
        ch = report["channels"]
        return {
            "revenue": bars([c["revenue"] for c in ch], [c["channel"] for c in ch]),
            "spend": bars([c["spend"] for c in ch], [c["channel"] for c in ch]),
        }
    cohorts = report["cohorts"]
    return {
        "repeat": bars(
            [c["retention"][1] if len(c["retention"]) > 1 else 0 for c in cohorts], [c["month"] for c in cohorts]
        )
    }


def _page(path: str, request: Request, session: Session, user: Any, first: str, last: str) -> Response:
    template, report_fn, default_days, _ = PAGES[path]
    partial = request.headers.get("hx-request") == "true" and "hx-history-restore-request" not in request.headers
    ctx: dict[str, Any] = {
        "user": user,
        "workspace": user.workspace,
        "path": path,
        "inputs": {"first": first, "last": last},
    }
    try:
        period = Period.parse(first or None, last or None, default_days)
        report = report_fn(session, user.workspace.id, period)
    except AppError as exc:
        return render(request, template, {**ctx, "error": exc.detail, "report": None, "partial": partial}, 422)
    query = f"from={period.first.isoformat()}&to={period.last.isoformat()}"
    ctx |= {
        "error": None,
        "report": report,
        "charts": charts(path, report),
        "query": query,
        "inputs": {"first": period.first.isoformat(), "last": period.last.isoformat()},
        "partial": partial,
        "dimensions": DIMENSIONS,
    }
    return render(request, template, ctx)


def _csv(path: str, session: Session, user: Any, first: str, last: str) -> Response:
    _, report_fn, default_days, table = PAGES[path]
    period = Period.parse(first or None, last or None, default_days)
    body = to_csv(report_fn(session, user.workspace.id, period), table)
    name = path.strip("/").replace("/", "_")
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}_{period.first}_{period.last}.csv"'},
    )


@router.get(FUNNEL, response_model=None)
def funnel_page(request: Request, session: SessionDep, user: PageUser, first: FromQ = "", last: ToQ = "") -> Response:
    """How many leads, what share convert, and where the funnel leaks."""
    return _page(FUNNEL, request, session, user, first, last)


@router.get(WHO_BUYS, response_model=None)
def who_buys_page(request: Request, session: SessionDep, user: PageUser, first: FromQ = "", last: ToQ = "") -> Response:
    """Over- and under-represented groups among customers, FDR-controlled."""
    return _page(WHO_BUYS, request, session, user, first, last)


@router.get(CHANNELS, response_model=None)
def channels_page(request: Request, session: SessionDep, user: PageUser, first: FromQ = "", last: ToQ = "") -> Response:
    """What each channel and campaign brought in against what it cost."""
    return _page(CHANNELS, request, session, user, first, last)


@router.get(RETENTION, response_model=None)
def retention_page(
    request: Request, session: SessionDep, user: PageUser, first: FromQ = "", last: ToQ = ""
) -> Response:
    """Cohorts by first-order month."""
    return _page(RETENTION, request, session, user, first, last)


def _csv_route(name: str, path: str) -> None:
    """One fixed CSV route per page (fixed paths: no parameter to fill, nothing to guess)."""

    def handler(session: SessionDep, user: DataUser, first: FromQ = "", last: ToQ = "") -> Response:
        return _csv(path, session, user, first, last)

    handler.__doc__ = f"The table behind {path} as CSV (money in minor units)."
    router.add_api_route(f"/dashboard-data/insight/{name}.csv", handler, methods=["GET"], response_model=None)


for _name, _path in (("funnel", FUNNEL), ("who-buys", WHO_BUYS), ("channels", CHANNELS), ("retention", RETENTION)):
    _csv_route(_name, _path)


@router.post(WHO_BUYS + "/segment", response_model=None)
def save_group(
    request: Request,
    session: SessionDep,
    user: PageUser,
    country: Annotated[str, Form(max_length=100)] = "",
    city: Annotated[str, Form(max_length=100)] = "",
    age_band: Annotated[str, Form(max_length=16)] = "",
    gender: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Create the buying group as a dynamic segment, then show it."""
    given = {"country": country, "city": city, "age_band": age_band, "gender": gender}
    attributes = {k: v for k, v in given.items() if v}
    try:
        segment = create_buying_group(session, user.workspace.id, attributes)
    except AppError as exc:
        ctx = {"user": user, "workspace": user.workspace, "error": exc.detail, "report": None, "inputs": {}}
        return render(request, "together/who_buys.html", ctx, exc.status)
    return see_other(f"/sales/segments/{segment.id}")
