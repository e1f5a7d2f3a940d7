"""``storefunnel report``: the owner's report as one HTML file, or a PDF printed from it by headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from storefunnel.cli_support import WorkspaceOpt, fail, run_in_workspace
from storefunnel.errors import AppError
from storefunnel.insight.report import build_report, default_period, html_to_pdf


def report_command(
    first: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC); default 4 weeks.")] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (UTC); default yesterday.")] = None,
    out: Annotated[Path, typer.Option("--out", help="File to write: .html, or .pdf for a PDF.")] = Path("report.html"),
    workspace: WorkspaceOpt = "default",
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write a PDF next to the HTML (same name, .pdf).")] = False,
) -> None:
    """The owner's report: the advice, funnel, channels, who buys and retention, for print; prints the path last."""
    try:
        period = default_period(first, last)
    except AppError as exc:
        raise fail(exc.detail) from None
    html = run_in_workspace(workspace, lambda s, ws: build_report(s, ws, period))
    as_pdf = out.suffix.lower() == ".pdf"
    if not as_pdf:
        _write(out, html.encode("utf-8"))
        typer.echo(out)
    if as_pdf or pdf:
        target = out if as_pdf else out.with_suffix(".pdf")
        try:
            body = html_to_pdf(html)
        except AppError as exc:
            raise fail(exc.detail) from None
        _write(target, body)
        typer.echo(target)


def _write(path: Path, body: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    except OSError as exc:
        raise fail(f"--out: cannot write {path}: {exc.strerror or exc}") from None
