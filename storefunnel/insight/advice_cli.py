"""`storefunnel advise`: marketing or sales? The advice from the shell, and the owner's targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from storefunnel.cli_support import JsonOpt, WorkspaceOpt, dump_json, fail, out, run_in_workspace
from storefunnel.errors import AppError
from storefunnel.insight.advice import Targets, advice_report, get_targets, set_targets
from storefunnel.insight.engine import duckdb_runner
from storefunnel.insight.routes import advice_period

advise_app = typer.Typer(help="Marketing or sales? What to improve next, with the evidence.")

FromOpt = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC); default 28 days to --to.")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (UTC); default yesterday.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="database (default) or duckdb (a snapshot file).")]
SnapshotOpt = Annotated[Path, typer.Option("--snapshot", help="DuckDB snapshot for --engine duckdb.")]


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.0%}"


def _value(x: float | None, metric: str) -> str:
    if x is None:
        return "–"
    return f"{x:.0%}" if metric.endswith(("share", "completion")) else f"{x:,.0f}"


def print_advice(report: dict[str, Any]) -> None:
    p, q = report["period"], report["previous"]
    out.print(f"[bold]{report['focus'].upper()}[/bold]  {p['from']}..{p['to']} against {q['from']}..{q['to']}")
    out.print(report["summary"], highlight=False)
    table = Table("#", "stage", "side", "measure", "now", "before", "change", "95% interval", "status")
    for s in report["stages"]:
        ci = s["interval"]
        table.add_row(
            str(s["number"]),
            s["stage"],
            s["side"],
            s["label"],
            _value(s["current"], s["metric"]),
            _value(s["previous"], s["metric"]),
            _signed(s["change"]),
            "–" if ci is None else f"{_signed(ci[0])} to {_signed(ci[1])}",
            s["status"],
        )
    out.print(table)
    for r in report["recommendations"]:
        out.print(f"[bold]{r['rank']}. {r['title']}[/bold] ({r['side']}, {r['kind']})", highlight=False)
        out.print(f"   {r['text']}", highlight=False)


@advise_app.callback(invoke_without_command=True)
def advise_command(
    ctx: typer.Context,
    workspace: WorkspaceOpt = "default",
    first: FromOpt = None,
    last: ToOpt = None,
    engine: EngineOpt = "database",
    snapshot: SnapshotOpt = Path("var/facts.duckdb"),
    as_json: JsonOpt = False,
) -> None:
    """Compare the period with the one before, stage by stage: focus (marketing, sales or unclear) and why."""
    if ctx.invoked_subcommand is not None:
        return
    if engine not in ("database", "duckdb"):
        raise fail("--engine: use 'database' or 'duckdb'")

    def run(session: Session, workspace_id: int) -> dict[str, Any]:
        period = advice_period(first, last)
        if engine == "duckdb":
            with duckdb_runner(snapshot) as runner:
                return advice_report(session, workspace_id, period, runner)
        return advice_report(session, workspace_id, period)

    report = run_in_workspace(workspace, run)
    if as_json:
        dump_json(report)
    else:
        print_advice(report)


@advise_app.command("targets")
def targets_command(
    workspace: WorkspaceOpt = "default",
    leads_per_week: Annotated[float | None, typer.Option(help="New leads you aim for each week.")] = None,
    conversion_rate: Annotated[
        float | None, typer.Option(help="Share of leads you aim to see buy within 30 days, e.g. 0.08.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove both targets.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or set the targets the advice also tests against."""

    def run(session: Session, workspace_id: int) -> Targets:
        current = get_targets(session, workspace_id)
        if clear:
            return set_targets(session, workspace_id, Targets())
        if leads_per_week is None and conversion_rate is None:
            return current
        data = current.model_dump()
        if leads_per_week is not None:
            data["leads_per_week"] = leads_per_week
        if conversion_rate is not None:
            data["conversion_rate"] = conversion_rate
        try:
            return set_targets(session, workspace_id, Targets.model_validate(data))
        except ValueError as exc:
            raise fail(f"targets: {exc}") from None

    try:
        result = run_in_workspace(workspace, run)
    except AppError as exc:
        raise fail(exc.detail) from None
    if as_json:
        dump_json(result.model_dump())
    else:
        for key, value in result.model_dump().items():
            out.print(f"{key}: {'–' if value is None else value}", highlight=False)
