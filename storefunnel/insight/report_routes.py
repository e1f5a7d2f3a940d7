"""/api/v1/report: the owner's report (the same document as ``storefunnel report``) as HTML or PDF."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.insight.report import REPORT_CSP, build_report, default_period, html_to_pdf

router = APIRouter(tags=["insight"])

FromParam = Annotated[str | None, Query(alias="from", description="First day (YYYY-MM-DD, UTC); default 4 weeks.")]
ToParam = Annotated[str | None, Query(alias="to", description="Last day (YYYY-MM-DD, UTC); default yesterday.")]


@router.get(
    "/report",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "application/pdf": {}}, "description": "The report."}},
)
def get_report(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    first: FromParam = None,
    last: ToParam = None,
    format: Annotated[str, Query(pattern="^(html|pdf)$", description="html, or pdf (needs Chromium).")] = "html",
) -> Response:
    """The advice, funnel, channels, who buys and retention in one self-contained page; 503 when no PDF can be made."""
    period = default_period(first, last)
    html = build_report(session, workspace_id, period)
    if format == "pdf":
        name = f"report_{period.first}_{period.last}.pdf"
        disposition = {"Content-Disposition": f'inline; filename="{name}"'}
        return Response(html_to_pdf(html), media_type="application/pdf", headers=disposition)
    return Response(html, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": REPORT_CSP})
