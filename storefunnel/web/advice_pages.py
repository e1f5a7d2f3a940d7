"""The Together hat's first page: Marketing or sales? The advice, its evidence stage by stage, and the targets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from storefunnel.db import SessionDep
from storefunnel.errors import AppError
from storefunnel.insight.advice import Targets, advice_report, get_targets, set_targets
from storefunnel.insight.report import stage_change_chart
from storefunnel.insight.routes import advice_period, to_csv
from storefunnel.web.auth import DataUser, PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.overview import FromQ, ToQ
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router, see_other

router = dashboard_router()
ADVICE = "/together/advice"
register_page(NavEntry("together", "Marketing or sales?", ADVICE, "What to improve next, and the evidence", 5))


@router.get(ADVICE, response_model=None)
def advice_page(request: Request, session: SessionDep, user: PageUser, first: FromQ = "", last: ToQ = "") -> Response:
    """Improve marketing or sales? The period against the one before, stage by stage, in plain words."""
    ws = user.workspace
    ctx: dict[str, Any] = {
        "user": user,
        "workspace": ws,
        "path": ADVICE,
        "inputs": {"first": first, "last": last},
        "targets": get_targets(session, ws.id),
        "target_error": None,
    }
    try:
        period = advice_period(first or None, last or None)
        report = advice_report(session, ws.id, period)
    except AppError as exc:
        return render(request, "together/advice.html", {**ctx, "error": exc.detail, "report": None}, 422)
    ctx |= {
        "error": None,
        "report": report,
        "chart": stage_change_chart(report["stages"]),
        "query": f"from={period.first.isoformat()}&to={period.last.isoformat()}",
        "inputs": {"first": period.first.isoformat(), "last": period.last.isoformat()},
    }
    return render(request, "together/advice.html", ctx)


@router.get("/dashboard-data/insight/advice.csv", response_model=None)
def advice_csv(session: SessionDep, user: DataUser, first: FromQ = "", last: ToQ = "") -> Response:
    """The stage table behind the advice as CSV."""
    period = advice_period(first or None, last or None)
    body = to_csv(advice_report(session, user.workspace.id, period), "stages")
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="advice_{period.first}_{period.last}.csv"'},
    )


@router.post(ADVICE + "/targets", response_model=None)
def save_targets(
    request: Request,
    session: SessionDep,
    user: PageUser,
    leads_per_week: Annotated[str, Form(max_length=20)] = "",
    conversion_percent: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Set the owner's targets (empty clears one); a bad value is shown on the page, nothing saved."""
    ws = user.workspace
    try:
        targets = Targets(
            leads_per_week=float(leads_per_week) if leads_per_week.strip() else None,
            conversion_rate=float(conversion_percent) / 100 if conversion_percent.strip() else None,
        )
    except (ValueError, ValidationError) as exc:
        field = "conversion_percent" if "conversion" in str(exc) else "leads_per_week"
        message = f"{field}: must be a number" + (" between 0 and 100" if field == "conversion_percent" else " above 0")
        ctx = {
            "user": user,
            "workspace": ws,
            "path": ADVICE,
            "inputs": {"first": "", "last": ""},
            "targets": get_targets(session, ws.id),
            "target_error": message,
            "error": None,
            "report": None,
        }
        return render(request, "together/advice.html", ctx, 422)
    set_targets(session, ws.id, targets)
    return see_other(ADVICE)
