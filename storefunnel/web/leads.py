"""Marketing → Leads: new leads per day by channel, shares, the latest leads' first touches, and the CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from storefunnel.db import SessionDep
from storefunnel.errors import AppError
from storefunnel.insight.leads import LeadsReport, leads_report
from storefunnel.insight.overview import LocalRange
from storefunnel.web.auth import DataUser, PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.overview import DEFAULT_PRESET, PRESETS, FromQ, PresetQ, ToQ, parse_range
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router

PATH = "/marketing/leads"
router = dashboard_router()
register_page(NavEntry("marketing", "Leads", PATH, "New leads per day by channel, and where the latest came from", 10))

# One colour per GA4 default channel group, stable across ranges; other channels take the spare ones in turn.
CHANNEL_COLORS = {
    "Organic Search": "#16a34a",
    "Paid Search": "#2563eb",
    "Email": "#f59e0b",
    "Organic Social": "#db2777",
    "Paid Social": "#7c3aed",
    "Referral": "#0891b2",
    "Direct": "#64748b",
    "Display": "#ea580c",
    "Affiliates": "#65a30d",
    "Organic Shopping": "#0d9488",
    "Paid Shopping": "#4f46e5",
    "Organic Video": "#e11d48",
    "Paid Video": "#9333ea",
    "SMS": "#ca8a04",
    "Mobile Push Notifications": "#0284c7",
    "Audio": "#a16207",
    "Cross-network": "#475569",
    "Unassigned": "#cbd5e1",
}
SPARE_COLORS = ("#b45309", "#be185d", "#15803d", "#1d4ed8", "#6d28d9", "#0f766e")


def channel_colors(report: LeadsReport) -> dict[str, str]:
    spare = iter(SPARE_COLORS * (1 + len(report.channels) // len(SPARE_COLORS)))
    return {c.channel: CHANNEL_COLORS.get(c.channel) or next(spare) for c in report.channels}


def local_time(timezone: str, seconds: bool = False) -> Callable[[dt.datetime | None], str]:
    """A formatter for UTC times as the store's owner reads them: ``2026-03-01 00:30`` in ``timezone``."""
    tz = ZoneInfo(timezone)
    pattern = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"

    def fmt(value: dt.datetime | None) -> str:
        if value is None:
            return "–"
        aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        return aware.astimezone(tz).strftime(pattern)

    return fmt


def _query(rng: LocalRange) -> str:
    return f"from={rng.first.isoformat()}&to={rng.last.isoformat()}"


@router.get(PATH, response_model=None)
def leads_page(
    request: Request, session: SessionDep, user: PageUser, preset: PresetQ = "", first: FromQ = "", last: ToQ = ""
) -> Response:
    """The full page, or only its body when the range picker asks through HTMX."""
    partial = request.headers.get("hx-request") == "true" and "hx-history-restore-request" not in request.headers
    template = "marketing/leads_body.html" if partial else "marketing/leads.html"
    ws = user.workspace
    base = {"user": user, "workspace": ws, "presets": PRESETS, "page_path": PATH}
    try:
        rng, active = parse_range(ws, preset, first, last)
    except AppError as exc:
        fallback = LocalRange.last_days(DEFAULT_PRESET, ws.display_timezone)
        inputs = {"first": first or fallback.first.isoformat(), "last": last or fallback.last.isoformat()}
        context = {**base, "error": exc.detail, "range": None, "active": None, "report": None, "inputs": inputs}
        return render(request, template, context, 422)
    report = leads_report(session, ws, rng)
    context = {
        **base,
        "range": rng,
        "active": active,
        "report": report,
        "colors": channel_colors(report),
        "local_time": local_time(rng.timezone),
        "query": _query(rng),
        "inputs": {"first": rng.first.isoformat(), "last": rng.last.isoformat()},
        "error": None,
    }
    return render(request, template, context)


@router.get("/dashboard-data/leads.json")
def leads_json(
    session: SessionDep, user: DataUser, preset: PresetQ = "", first: FromQ = "", last: ToQ = ""
) -> JSONResponse:
    """The daily series by channel, read by the page's stacked chart."""
    rng, _ = parse_range(user.workspace, preset, first, last)
    report = leads_report(session, user.workspace, rng)
    body = {**report.as_dict(), "colors": channel_colors(report)}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def daily_csv(report: LeadsReport) -> str:
    """One row per day, one column per channel (most leads first), then the day's total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    channels = [c.channel for c in report.channels]
    writer.writerow(["day", *channels, "total"])
    for i, day in enumerate(report.days):
        counts = [report.series[ch][i] for ch in channels]
        writer.writerow([day.isoformat(), *counts, sum(counts)])
    return out.getvalue()


@router.get("/dashboard-data/leads.csv")
def leads_csv(session: SessionDep, user: DataUser, preset: PresetQ = "", first: FromQ = "", last: ToQ = "") -> Response:
    """The daily series as CSV, days in the workspace's timezone."""
    rng, _ = parse_range(user.workspace, preset, first, last)
    body = daily_csv(leads_report(session, user.workspace, rng))
    filename = f"leads_by_channel_{rng.first.isoformat()}_{rng.last.isoformat()}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
