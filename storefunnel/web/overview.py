"""The Overview page, the JSON its chart reads, and the CSV of its daily series."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from storefunnel.db import SessionDep
from storefunnel.errors import AppError, Invalid
from storefunnel.insight.overview import LocalRange, Overview, overview
from storefunnel.models import Workspace
from storefunnel.web.auth import DataUser, PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.render import currency_decimals, minor_to_decimal, render
from storefunnel.web.routes import dashboard_router

PRESETS = (7, 30, 90, 365)
DEFAULT_PRESET = 30

router = dashboard_router()
register_page(NavEntry("overview", "Overview", "/overview", "Leads, customers, orders and revenue at a glance", 0))

FromQ = Annotated[str, Query(alias="from", max_length=10)]
ToQ = Annotated[str, Query(alias="to", max_length=10)]
PresetQ = Annotated[str, Query(max_length=4)]


def _day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{name}: expected a date as YYYY-MM-DD, got {value!r}") from None


def parse_range(workspace: Workspace, preset: str, first: str, last: str) -> tuple[LocalRange, int | None]:
    """The requested days in the workspace's timezone: from/to if given, else a preset, else the last 30 days."""
    tz = workspace.display_timezone
    if first or last:
        if not first or not last:
            raise Invalid(f"{'from' if not first else 'to'}: a custom range needs both 'from' and 'to'")
        return LocalRange(_day(first, "from"), _day(last, "to"), tz), None
    if preset:
        if not preset.isdigit() or int(preset) not in PRESETS:
            raise Invalid(f"preset: expected one of {', '.join(map(str, PRESETS))} (days), got {preset!r}")
        return LocalRange.last_days(int(preset), tz), int(preset)
    return LocalRange.last_days(DEFAULT_PRESET, tz), DEFAULT_PRESET


def _query(rng: LocalRange) -> str:
    return f"from={rng.first.isoformat()}&to={rng.last.isoformat()}"


@router.get("/overview", response_model=None)
def overview_page(
    request: Request,
    session: SessionDep,
    user: PageUser,
    preset: PresetQ = "",
    first: FromQ = "",
    last: ToQ = "",
) -> Response:
    """The full page, or only the range and figures when HTMX asks (the range picker swaps them in place)."""
    partial = request.headers.get("hx-request") == "true" and "hx-history-restore-request" not in request.headers
    template = "overview/_body.html" if partial else "overview/page.html"
    ws = user.workspace
    base = {"user": user, "workspace": ws, "presets": PRESETS}
    try:
        rng, active = parse_range(ws, preset, first, last)
    except AppError as exc:
        # Show the problem next to the picker, keeping what was typed so it can be corrected.
        fallback = LocalRange.last_days(DEFAULT_PRESET, ws.display_timezone)
        inputs = {"first": first or fallback.first.isoformat(), "last": last or fallback.last.isoformat()}
        context = {**base, "error": exc.detail, "range": None, "active": None, "data": None, "inputs": inputs}
        return render(request, template, context, 422)
    context = {
        **base,
        "range": rng,
        "active": active,
        "data": overview(session, ws, rng),
        "decimals": currency_decimals(ws.currency),
        "query": _query(rng),
        "inputs": {"first": rng.first.isoformat(), "last": rng.last.isoformat()},
        "error": None,
    }
    return render(request, template, context)


@router.get("/dashboard-data/overview.json")
def overview_json(
    session: SessionDep, user: DataUser, preset: PresetQ = "", first: FromQ = "", last: ToQ = ""
) -> JSONResponse:
    """The Overview figures and daily series, read by the page's chart."""
    rng, _ = parse_range(user.workspace, preset, first, last)
    return JSONResponse(overview(session, user.workspace, rng).as_dict(), headers={"Cache-Control": "no-store"})


def daily_csv(data: Overview) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", "leads", "orders", "revenue", "currency"])
    for d in data.daily:
        revenue = minor_to_decimal(d.revenue, data.currency)
        writer.writerow([d.day.isoformat(), d.leads, d.orders, revenue, data.currency])
    return out.getvalue()


@router.get("/dashboard-data/overview.csv")
def overview_csv(
    session: SessionDep, user: DataUser, preset: PresetQ = "", first: FromQ = "", last: ToQ = ""
) -> Response:
    """The daily series as CSV, days in the workspace's timezone, revenue in its currency."""
    rng, _ = parse_range(user.workspace, preset, first, last)
    body = daily_csv(overview(session, user.workspace, rng))
    filename = f"overview_{rng.first.isoformat()}_{rng.last.isoformat()}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
