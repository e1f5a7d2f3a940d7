"""`storefunnel insight ...`: funnel, channels, who-buys, retention and DuckDB snapshots from the shell.

Every command takes ``--from/--to`` (UTC days), ``--workspace`` and ``--json``; ``--engine duckdb`` runs the
same analytic on a snapshot file instead of the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from storefunnel.cli_support import fail
from storefunnel.db import get_sessionmaker
from storefunnel.errors import AppError
from storefunnel.insight.channels import channels
from storefunnel.insight.engine import Runner, SqlRunner, duckdb_runner, workspace_currency
from storefunnel.insight.facts import Period, snapshot
from storefunnel.insight.funnel import DEFAULT_WINDOW_DAYS, funnel
from storefunnel.insight.retention import retention
from storefunnel.insight.who_buys import DEFAULT_FDR, DEFAULT_MIN_CUSTOMERS, DEFAULT_MIN_LEADS, sentence, who_buys
from storefunnel.workspaces.service import get_workspace_by_name

insight_app = typer.Typer(help="The owner's questions: funnel, channels, who buys, retention.", no_args_is_help=True)
out = Console()

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
FromOpt = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (UTC); default today.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="database (default) or duckdb (a snapshot file).")]
SnapshotOpt = Annotated[Path, typer.Option("--snapshot", help="DuckDB snapshot for --engine duckdb.")]
DEFAULT_SNAPSHOT = Path("var/facts.duckdb")


@contextmanager
def _context(workspace: str, engine: str, snapshot_path: Path) -> Iterator[tuple[Runner, int, str]]:
    """The runner, workspace id and currency; domain errors become one line and exit code 2."""
    if engine not in ("database", "duckdb"):
        raise fail("--engine: use 'database' or 'duckdb'")
    with get_sessionmaker()() as session:
        try:
            ws = get_workspace_by_name(session, workspace)
            currency = workspace_currency(session, ws.id)
            if engine == "duckdb":
                with duckdb_runner(snapshot_path) as runner:
                    yield runner, ws.id, currency
            else:
                yield SqlRunner(session), ws.id, currency
        except AppError as exc:
            raise fail(exc.detail) from None
        finally:
            session.rollback()


def _period(first: str | None, last: str | None, default_days: int) -> Period:
    try:
        return Period.parse(first, last, default_days)
    except AppError as exc:
        raise fail(exc.detail) from None


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _print(report: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], None]) -> None:
    if as_json:
        print(json.dumps(report, default=str))
    else:
        table(report)


@insight_app.command("funnel")
def funnel_command(
    workspace: WorkspaceOpt = "default",
    first: FromOpt = None,
    last: ToOpt = None,
    window_days: Annotated[int, typer.Option("--window-days", help="Conversion window from lead.")] = (
        DEFAULT_WINDOW_DAYS
    ),
    as_json: JsonOpt = False,
    engine: EngineOpt = "database",
    snapshot_path: SnapshotOpt = DEFAULT_SNAPSHOT,
) -> None:
    """Visitors -> leads -> customers -> repeat customers, by channel and week; the 5-to-12-touches check."""
    period = _period(first, last, 90)
    with _context(workspace, engine, snapshot_path) as (runner, ws_id, _):
        try:
            report = funnel(runner, ws_id, period, window_days).as_dict()
        except AppError as exc:
            raise fail(exc.detail) from None

    def show(r: dict[str, Any]) -> None:
        t = Table(title=f"Funnel {r['from']} .. {r['to']}")
        for col in ("step", "count", "from previous", "95% interval"):
            t.add_column(col, justify="right" if col != "step" else "left")
        for s in r["steps"]:
            fp = s["from_previous"] or {}
            ci = fp.get("interval95")
            t.add_row(s["name"], f"{s['count']:,}", _pct(fp.get("rate")), f"{_pct(ci[0])}–{_pct(ci[1])}" if ci else "")
        out.print(t)
        tb = r["touches_before_first_order"]
        out.print(
            f"time to convert: median {_num(r['time_to_convert_days']['median'], 1)} days; "
            f"touches before first order: median {_num(tb['median'], 1)}, "
            f"{_pct(tb['share_5_to_12']['rate'])} of first orders came after 5 to 12 touches"
        )

    _print(report, as_json, show)


@insight_app.command("channels")
def channels_command(
    workspace: WorkspaceOpt = "default",
    first: FromOpt = None,
    last: ToOpt = None,
    as_json: JsonOpt = False,
    engine: EngineOpt = "database",
    snapshot_path: SnapshotOpt = DEFAULT_SNAPSHOT,
) -> None:
    """Per channel and campaign: leads, customers, revenue, spend, cost per lead, CAC, ROAS (minor units)."""
    period = _period(first, last, 90)
    with _context(workspace, engine, snapshot_path) as (runner, ws_id, currency):
        report = channels(runner, ws_id, period, currency).as_dict()

    def show(r: dict[str, Any]) -> None:
        t = Table(title=f"Channels {r['from']} .. {r['to']} ({r['currency']}, minor units)")
        for col in ("channel", "campaign", "leads", "customers", "revenue", "spend", "CPL", "CAC", "ROAS"):
            t.add_column(col, justify="left" if col in ("channel", "campaign") else "right")
        for x in r["campaigns"]:
            t.add_row(
                x["channel"],
                x["campaign"] or "",
                f"{x['leads']:,}",
                f"{x['customers']:,}",
                f"{x['revenue']:,}",
                f"{x['spend']:,}",
                _num(x["cost_per_lead"], 0),
                _num(x["customer_acquisition_cost"], 0),
                _num(x["return_on_ad_spend"]),
            )
        out.print(t)

    _print(report, as_json, show)


@insight_app.command("who-buys")
def who_buys_command(
    workspace: WorkspaceOpt = "default",
    first: FromOpt = None,
    last: ToOpt = None,
    min_leads: Annotated[int, typer.Option("--min-leads")] = DEFAULT_MIN_LEADS,
    min_customers: Annotated[int, typer.Option("--min-customers")] = DEFAULT_MIN_CUSTOMERS,
    fdr: Annotated[float, typer.Option("--fdr", help="False discovery rate.")] = DEFAULT_FDR,
    as_json: JsonOpt = False,
    engine: EngineOpt = "database",
    snapshot_path: SnapshotOpt = DEFAULT_SNAPSHOT,
) -> None:
    """Groups over- or under-represented among customers versus leads (Benjamini-Hochberg q <= fdr)."""
    period = _period(first, last, 365)
    with _context(workspace, engine, snapshot_path) as (runner, ws_id, currency):
        try:
            result = who_buys(runner, ws_id, period, currency, min_leads, min_customers, fdr)
        except AppError as exc:
            raise fail(exc.detail) from None
    report = result.as_dict()

    def show(r: dict[str, Any]) -> None:
        top = result.top
        out.print(sentence(top) if top else "No group stands out from noise in this period.")
        t = Table(title=f"Significant groups (q <= {r['fdr']}) of {r['cells_tested']} tested")
        for col in ("group", "leads", "customers", "lead share", "customer share", "lift", "q"):
            t.add_column(col, justify="left" if col == "group" else "right")
        for c in r["significant"]:
            t.add_row(
                ", ".join(f"{k}={v}" for k, v in c["attributes"].items()),
                f"{c['leads']:,}",
                f"{c['customers']:,}",
                _pct(c["lead_share"]),
                _pct(c["customer_share"]),
                _num(c["lift"]),
                f"{c['q_value']:.2g}",
            )
        out.print(t)

    _print(report, as_json, show)


@insight_app.command("retention")
def retention_command(
    workspace: WorkspaceOpt = "default",
    first: FromOpt = None,
    last: ToOpt = None,
    as_json: JsonOpt = False,
    engine: EngineOpt = "database",
    snapshot_path: SnapshotOpt = DEFAULT_SNAPSHOT,
) -> None:
    """Cohorts by first-order month: share ordering again in month k; repeat rate; days between orders."""
    period = _period(first, last, 365)
    with _context(workspace, engine, snapshot_path) as (runner, ws_id, currency):
        report = retention(runner, ws_id, period, currency).as_dict()

    def show(r: dict[str, Any]) -> None:
        rr = r["repeat_purchase_rate"]
        out.print(
            f"repeat purchase rate {_pct(rr['rate'])} of {rr['trials']:,} customers; "
            f"median {_num(r['days_between_orders']['median'], 1)} days between orders"
        )
        width = max((len(c["retention"]) for c in r["cohorts"]), default=0)
        t = Table(title="Share of each cohort ordering again in month k")
        t.add_column("cohort")
        t.add_column("customers", justify="right")
        for k in range(width):
            t.add_column(f"m{k}", justify="right")
        for c in r["cohorts"]:
            cells = [_pct(v) for v in c["retention"]] + [""] * (width - len(c["retention"]))
            t.add_row(c["month"], f"{c['customers']:,}", *cells)
        out.print(t)

    _print(report, as_json, show)


@insight_app.command("snapshot")
def snapshot_command(
    to: Annotated[Path, typer.Option("--to", help="DuckDB file to write (replaced).")] = DEFAULT_SNAPSHOT,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Copy a workspace's facts into a DuckDB file, for --engine duckdb; prints the path last."""

    def work(session: Session) -> dict[str, int]:
        ws = get_workspace_by_name(session, workspace)
        return snapshot(session, ws.id, to)

    with get_sessionmaker()() as session:
        try:
            counts = work(session)
        except AppError as exc:
            raise fail(exc.detail) from None
        finally:
            session.rollback()
    out.print(", ".join(f"{k}: {v:,}" for k, v in counts.items()))
    print(to)
