"""`storefunnel attribution`, `storefunnel clv fit|show|keep-in-touch|segment`, `storefunnel related build|show`.

Each command runs in one transaction (a fit or build commits its stored rows), takes ``--workspace`` and
``--json``; errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from storefunnel.db import get_sessionmaker
from storefunnel.errors import AppError, Invalid
from storefunnel.insight import clv_service, related_service
from storefunnel.insight.attribution_service import attribution_report, parse_models
from storefunnel.insight.facts import Period
from storefunnel.workspaces.service import get_workspace_by_name

clv_app = typer.Typer(help="Customer lifetime value: fit, predictions, keep-in-touch list.", no_args_is_help=True)
related_app = typer.Typer(help="Related products: pair rules and best sellers.", no_args_is_help=True)
err = Console(stderr=True)
out = Console()
T = TypeVar("T")

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _run(workspace: str, fn: Callable[[Session, int], T], commit: bool = False) -> T:
    with get_sessionmaker()() as session:
        try:
            ws = get_workspace_by_name(session, workspace)
            result = fn(session, ws.id)
            if commit:
                session.commit()
            return result
        except AppError as exc:
            session.rollback()
            err.print(f"[red]error:[/red] {exc.detail}", highlight=False)
            raise typer.Exit(code=2) from None
        finally:
            session.rollback()


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _day(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]error:[/red] {name}: not an ISO date (YYYY-MM-DD): {value!r}", highlight=False)
        raise typer.Exit(code=2) from None


def attribution_command(
    workspace: WorkspaceOpt = "default",
    model: Annotated[str, typer.Option(help="all, or a comma-separated list of models.")] = "all",
    by: Annotated[str, typer.Option(help="channel or campaign.")] = "channel",
    first: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (UTC); default today.")] = None,
    lookback_days: Annotated[int, typer.Option(help="Touches up to this many days before the order.")] = 30,
    each_order: Annotated[bool, typer.Option(help="Every order's journey, not only first orders.")] = False,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for Markov/Shapley intervals (0: none).")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Which channels (or campaigns) bring buyers, under every attribution model side by side."""

    def go(session: Session, ws: int) -> dict[str, Any]:
        if by not in ("channel", "campaign"):
            raise Invalid("by: 'channel' or 'campaign'")
        return attribution_report(
            session,
            ws,
            Period.parse(first, last),
            models=parse_models(model),
            by=by,  # type: ignore[arg-type]
            lookback_days=lookback_days,
            each_order=each_order,
            bootstrap=bootstrap,
        )

    report = _run(workspace, go)
    if as_json:
        _print_json(report)
        return
    names = [m["name"] for m in report["models"]]
    table = Table(title=f"Attribution {report['period']['from']}..{report['period']['to']} (conversions)")
    table.add_column(report["by"])
    for m in report["models"]:
        table.add_column(m["label"], justify="right")
    for row in report["rows"]:
        cells = []
        for name in names:
            cell = f"{row['conversions'].get(name, 0.0):,.1f}"
            iv = row.get(f"{name}_interval")
            if iv:
                cell += f" [{iv[0]:,.1f}–{iv[1]:,.1f}]"
            cells.append(cell)
        table.add_row(row[report["by"]], *cells)
    out.print(table)
    j = report["journeys"]
    out.print(
        f"{report['conversions']} conversions; {j['converting']} journeys with touches, "
        f"{j['non_converting']} without a purchase"
    )


@clv_app.command("fit")
def clv_fit(
    workspace: WorkspaceOpt = "default",
    model: Annotated[str, typer.Option(help="bgnbd or pareto_nbd.")] = "bgnbd",
    observation_end: Annotated[
        str | None, typer.Option(help="Last day of orders to fit on (default yesterday).")
    ] = None,
    segment: Annotated[bool, typer.Option(help="Refresh the keep-in-touch segment too.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Fit the lifetime-value models and store a prediction for every customer."""
    end = _day(observation_end, "observation_end")

    def go(session: Session, ws: int) -> dict[str, Any]:
        fit = clv_service.fit_clv(session, ws, end, model)  # type: ignore[arg-type]
        report = clv_service.fit_report(fit)
        if segment:
            report["segment"] = clv_service.refresh_keep_in_touch_segment(session, ws)
        return report

    report = _run(workspace, go, commit=True)
    if as_json:
        _print_json(report)
        return
    p, m = report["params"], report["metrics"]
    out.print(f"fit {report['id']} ({p['model']}) on orders up to {p['observation_end']}: {m['customers']:,} customers")
    out.print("purchase model: " + ", ".join(f"{k}={v:.4g}" for k, v in p["purchase"].items()))
    if p["spend"]:
        out.print("spend model (Gamma-Gamma): " + ", ".join(f"{k}={v:.4g}" for k, v in p["spend"].items()))
    out.print(f"keep in touch: {m['keep_in_touch']:,} customers")
    typer.echo(report["id"])


@clv_app.command("show")
def clv_show(
    workspace: WorkspaceOpt = "default",
    limit: Annotated[int, typer.Option(help="Customers to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest fit and the most valuable customers."""

    def go(session: Session, ws: int) -> dict[str, Any]:
        return {
            "fit": clv_service.fit_report(clv_service.latest_fit(session, ws)),
            "customers": clv_service.customers(session, ws, limit=limit),
        }

    data = _run(workspace, go)
    if as_json:
        _print_json(data)
        return
    _customers_table(data["customers"], "Most valuable customers (12-month CLV)")


def _customers_table(data: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    for col in ("contact", "email", "orders", "P(alive)", "next 90 days", "CLV"):
        table.add_column(col, justify="left" if col in ("contact", "email") else "right")
    for c in data["items"]:
        table.add_row(
            str(c["contact_id"]),
            c["email"] or "–",
            f"{c['frequency'] + 1:.0f}",
            f"{c['probability_alive'] * 100:.0f}%",
            f"{c['expected_purchases_90d']:.2f}",
            f"{c['clv'] / 100:,.2f} {data['currency'] or ''}",
        )
    out.print(table)


@clv_app.command("keep-in-touch")
def clv_keep_in_touch(
    workspace: WorkspaceOpt = "default",
    limit: Annotated[int, typer.Option(help="Customers to list.")] = 50,
    refresh_segment: Annotated[bool, typer.Option(help="Refresh the segment from the list.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Valuable customers who are slipping away; ``--refresh-segment`` updates the segment email flows use."""

    def go(session: Session, ws: int) -> dict[str, Any]:
        data = clv_service.customers(session, ws, keep_in_touch=True, limit=limit)
        if refresh_segment:
            data["segment"] = clv_service.refresh_keep_in_touch_segment(session, ws)
        return data

    data = _run(workspace, go, commit=refresh_segment)
    if as_json:
        _print_json(data)
        return
    _customers_table(data, f"Keep in touch: {data['total']:,} customers")
    if "segment" in data:
        s = data["segment"]
        out.print(f"segment {s['name']!r}: +{s['added']} −{s['removed']}, {s['member_count']} members")


@related_app.command("build")
def related_build(
    workspace: WorkspaceOpt = "default",
    min_support: Annotated[float, typer.Option(help="Least share of orders a pair must appear in.")] = (
        related_service.DEFAULT_MIN_SUPPORT
    ),
    min_confidence: Annotated[float, typer.Option(help="Least confidence of a stored rule.")] = (
        related_service.DEFAULT_MIN_CONFIDENCE
    ),
    as_json: JsonOpt = False,
) -> None:
    """Learn pair rules and best sellers from the orders and store them for recommendations."""

    def go(session: Session, ws: int) -> dict[str, Any]:
        fit = related_service.build_related(session, ws, min_support, min_confidence)
        return {"id": fit.id, "params": fit.params, "metrics": fit.metrics}

    data = _run(workspace, go, commit=True)
    if as_json:
        _print_json(data)
        return
    m = data["metrics"]
    out.print(f"{m['rules']:,} rules from {m['baskets']:,} orders over {m['products']:,} products")
    typer.echo(data["id"])


@related_app.command("show")
def related_show(
    workspace: WorkspaceOpt = "default",
    product: Annotated[int | None, typer.Option(help="Only rules from this product id.")] = None,
    sort: Annotated[str, typer.Option(help="lift, confidence or support.")] = "lift",
    limit: Annotated[int, typer.Option(help="Rules to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The stored rules, strongest first."""
    data = _run(
        workspace, lambda s, ws: related_service.rules_report(s, ws, product_id=product, sort=sort, limit=limit)
    )
    if as_json:
        _print_json(data)
        return
    table = Table(title=f"Related products ({data['total']:,} rules)")
    for col in ("bought", "then also", "orders", "confidence", "lift"):
        table.add_column(col, justify="left" if col in ("bought", "then also") else "right")
    for r in data["items"]:
        table.add_row(
            f"{r['antecedent'].get('name', r['antecedent']['product_id'])}",
            f"{r['consequent'].get('name', r['consequent']['product_id'])}",
            str(r["baskets"]),
            f"{r['confidence'] * 100:.1f}%",
            f"{r['lift']:.2f}",
        )
    out.print(table)
