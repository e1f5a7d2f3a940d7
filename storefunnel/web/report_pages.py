"""The owner's report in the dashboard: ``/report`` serves the very document ``storefunnel report`` writes.

The report is a stand-alone page (its own inline CSS, no script), so it gets its own Content-Security-Policy:
inline styles allowed, nothing loaded from anywhere, no script at all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import Response

from storefunnel.db import SessionDep
from storefunnel.errors import AppError
from storefunnel.insight.report import REPORT_CSP, build_report, default_period, html_to_pdf
from storefunnel.web.auth import PageUser
from storefunnel.web.nav import NavEntry, register_page
from storefunnel.web.overview import FromQ, ToQ
from storefunnel.web.render import SECURITY_HEADERS, render
from storefunnel.web.routes import dashboard_router

PATH = "/report"
router = dashboard_router()
register_page(NavEntry("together", "Owner's report", PATH, "Everything on one page, to print or send as a PDF", 90))
HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": REPORT_CSP}


@router.get(PATH, response_model=None)
def report_page(
    request: Request,
    session: SessionDep,
    user: PageUser,
    first: FromQ = "",
    last: ToQ = "",
    fmt: Annotated[str, Query(alias="format", pattern="^(html|pdf)$")] = "html",
) -> Response:
    """The report for ``from``..``to`` (default: the last 4 whole weeks), as HTML or, with format=pdf, a PDF."""
    try:
        period = default_period(first or None, last or None)
        html = build_report(session, user.workspace.id, period)
        if fmt == "pdf":
            name = f"report_{period.first}_{period.last}.pdf"
            headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
            return Response(html_to_pdf(html), media_type="application/pdf", headers=headers)
    except AppError as exc:
        ctx = {"user": user, "title": "The report could not be made", "message": exc.detail}
        return render(request, "error.html", ctx, exc.status)
    return Response(html, media_type="text/html; charset=utf-8", headers=HEADERS)
