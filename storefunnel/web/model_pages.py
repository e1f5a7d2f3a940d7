"""Marketing → Attribution, Sales → Lifetime value and Sales → Related products: the three models' pages.

Attribution is computed on request (the models take a second or two on a year of journeys); lifetime value and
related products read the stored fits, and the owner can refit from the page (a CSRF-protected form).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response

from storefunnel.db import SessionDep
from storefunnel.errors import AppError, Invalid, NotFound
from storefunnel.insight import clv_service, related_service
from storefunnel.insight.attribution_service import MODELS, attribution_report
from storefunnel.insight.facts import Period
from storefunnel.web.auth import PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.render import render
from storefunnel.web.routes import dashboard_router, see_other

ATTRIBUTION = "/marketing/attribution"
CLV = "/sales/clv"
RELATED = "/sales/related"
router = dashboard_router()
register_page(NavEntry("marketing", "Attribution", ATTRIBUTION, "Which channels bring buyers, by every model", 30))
register_page(NavEntry("sales", "Lifetime value", CLV, "What customers are worth, and whom to keep in touch with", 40))
register_page(NavEntry("sales", "Related products", RELATED, "What is bought together, and what to offer next", 50))

Text = Annotated[str, Query(max_length=10)]
CHART_W, CHART_H = 640, 200


@router.get(ATTRIBUTION, response_model=None)
def attribution_page(
    request: Request,
    session: SessionDep,
    user: PageUser,
    first: Annotated[str, Query(alias="from", max_length=10)] = "",
    last: Annotated[str, Query(alias="to", max_length=10)] = "",
    by: Annotated[str, Query(max_length=10)] = "channel",
    lookback_days: Annotated[str, Query(max_length=4)] = "30",
) -> Response:
    """Credits per channel under each model side by side, Markov and Shapley with bootstrap intervals."""
    ws = user.workspace
    inputs = {"first": first, "last": last, "by": by, "lookback_days": lookback_days}
    base = {"user": user, "workspace": ws, "inputs": inputs, "page_path": ATTRIBUTION}
    try:
        if by not in ("channel", "campaign"):
            raise Invalid("by: 'channel' or 'campaign'")
        if not lookback_days.isdigit():
            raise Invalid(f"lookback_days: a whole number of days, got {lookback_days!r}")
        period = Period.parse(first or None, last or None, default_days=90)
        report = attribution_report(
            session,
            ws.id,
            period,
            by="campaign" if by == "campaign" else "channel",
            lookback_days=int(lookback_days),
            bootstrap=100,
        )
    except AppError as exc:
        return render(request, "marketing/attribution.html", {**base, "error": exc.detail, "report": None}, 422)
    inputs.update(first=period.first.isoformat(), last=period.last.isoformat())
    totals = {m: sum(r["conversions"][m] for r in report["rows"]) for m in MODELS}
    context = {**base, "error": None, "report": report, "models": MODELS, "totals": totals}
    return render(request, "marketing/attribution.html", context)


def _histogram(dist: dict[str, Any]) -> dict[str, Any]:
    """Bars of the CLV histogram as SVG rectangles (attributes only: the page's CSP allows no inline style)."""
    counts = dist.get("counts") or []
    if not counts:
        return {"bars": [], "width": CHART_W, "height": CHART_H}
    top = max(counts) or 1
    w = CHART_W / len(counts)
    bars = []
    for i, n in enumerate(counts):
        h = (CHART_H - 20) * n / top
        bars.append(
            {
                "x": round(i * w + 1, 1),
                "y": round(CHART_H - 20 - h, 1),
                "w": round(w - 2, 1),
                "h": round(h, 1),
                "count": n,
                "low": dist["edges"][i],
                "high": dist["edges"][i + 1],
            }
        )
    return {"bars": bars, "width": CHART_W, "height": CHART_H}


@router.get(CLV, response_model=None)
def clv_page(request: Request, session: SessionDep, user: PageUser) -> Response:
    """The latest fit, the distribution of 12-month values, and the keep-in-touch list."""
    ws = user.workspace
    context: dict[str, Any] = {"user": user, "workspace": ws, "page_path": CLV, "error": None}
    try:
        fit = clv_service.latest_fit(session, ws.id)
    except NotFound:
        return render(request, "sales/clv.html", {**context, "fit": None})
    dist = clv_service.distribution(session, ws.id)
    keep = clv_service.customers(session, ws.id, keep_in_touch=True, limit=50)
    top = clv_service.customers(session, ws.id, limit=10)
    context.update(
        fit=clv_service.fit_report(fit), dist=dist, chart=_histogram(dist), keep=keep, top=top, currency=ws.currency
    )
    return render(request, "sales/clv.html", context)


@router.post(CLV + "/fit", response_model=None)
def clv_fit(request: Request, session: SessionDep, user: PageUser) -> Response:
    """Refit from the page; the keep-in-touch segment follows."""
    try:
        clv_service.fit_clv(session, user.workspace.id)
        clv_service.refresh_keep_in_touch_segment(session, user.workspace.id)
    except AppError as exc:
        context = {"user": user, "workspace": user.workspace, "page_path": CLV, "fit": None, "error": exc.detail}
        return render(request, "sales/clv.html", context, exc.status)
    return see_other(CLV)


@router.get(RELATED, response_model=None)
def related_page(
    request: Request,
    session: SessionDep,
    user: PageUser,
    product_id: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The strongest pair rules, or what is bought with one product."""
    ws = user.workspace
    context: dict[str, Any] = {"user": user, "workspace": ws, "page_path": RELATED, "error": None, "product": None}
    try:
        pid = int(product_id) if product_id else None
    except ValueError:
        pid = None
        context["error"] = f"product_id: a product number, got {product_id!r}"
    try:
        report = related_service.rules_report(session, ws.id, product_id=pid, sort="lift", limit=50)
    except NotFound as exc:
        if "no related-product rules" in exc.detail:
            return render(request, "sales/related.html", {**context, "report": None})
        context["error"] = exc.detail
        return render(request, "sales/related.html", {**context, "report": None}, 404)
    if pid is not None and report["items"]:
        context["product"] = report["items"][0]["antecedent"]
    return render(request, "sales/related.html", {**context, "report": report, "product_id": pid})


@router.post(RELATED + "/build", response_model=None)
def related_build(request: Request, session: SessionDep, user: PageUser) -> Response:
    try:
        related_service.build_related(session, user.workspace.id)
    except AppError as exc:
        context = {"user": user, "workspace": user.workspace, "page_path": RELATED, "report": None}
        return render(request, "sales/related.html", {**context, "error": exc.detail, "product": None}, exc.status)
    return see_other(RELATED)
