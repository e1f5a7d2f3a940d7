"""`storefunnel score …`: train the lead score, show the model and its holdout metrics, list leads to follow up."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from storefunnel.cli_support import JsonOpt, WorkspaceOpt, out
from storefunnel.cli_support import dump_json as _dump
from storefunnel.cli_support import run_in_workspace as _run
from storefunnel.scoring import service

score_app = typer.Typer(help="Lead scoring: who is likely to buy soon, and why.", no_args_is_help=True)


def _show(summary: dict[str, Any]) -> None:
    m = summary["metrics"]
    auc = "–" if m["auc"] is None else f"{m['auc']:.3f}"
    rec = "–" if m["recency_auc"] is None else f"{m['recency_auc']:.3f}"
    out.print(
        f"model {summary['id']} trained {summary['trained_at']:%Y-%m-%d %H:%M} UTC: first order within "
        f"{summary['horizon_days']} days, touches halve in weight every {summary['half_life_days']:g} days"
    )
    out.print(f"holdout AUC {auc} (recency alone {rec}); {m['holdout_buyers']} buyers of {m['n_holdout']} contacts")
    out.print(f"{summary['scored']} contacts scored")
    out.print("calibration (predicted vs observed, by tenth of the holdout):")
    for b in m["calibration"]:
        out.print(f"  {b['bin']:>2}  {b['predicted'] * 100:6.2f}%  {b['observed'] * 100:6.2f}%  n={b['contacts']}")
    out.print("strongest factors (logit per standard deviation):")
    for c in summary["coefficients"][:10]:
        out.print(f"  {c['weight']:+.2f}  {c['group']:<10}  {c['label']}")


@score_app.command("train")
def train(
    workspace: WorkspaceOpt = "default",
    horizon: Annotated[int, typer.Option(min=7, max=180, help="Predict a first order within this many days.")] = 30,
    half_life: Annotated[float, typer.Option(min=0.1, max=365, help="Days after which a touch counts half.")] = 14.0,
    target: Annotated[
        list[int] | None, typer.Option("--target", help="Target segment id (repeat); replaces the stored list.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train on the store's history, report holdout AUC and calibration, and rescore every contact."""

    def _train(s: Session, wid: int) -> dict[str, Any]:
        if target is not None:
            service.set_target_segments(s, wid, target)
        service.train(s, wid, horizon_days=horizon, half_life_days=half_life)
        return service.model_summary(s, wid)

    summary = _run(workspace, _train)
    if as_json:
        _dump(summary)
    else:
        _show(summary)


@score_app.command("show")
def show(workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """The model in use: when it was trained, its holdout metrics and its strongest factors."""
    summary = _run(workspace, service.model_summary)
    if as_json:
        _dump(summary)
    else:
        _show(summary)


@score_app.command("leads")
def leads(
    workspace: WorkspaceOpt = "default",
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many leads.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The best-scored contacts who have not bought yet, with their top reasons."""
    rows = _run(workspace, lambda s, wid: service.leads_to_follow_up(s, wid, limit))
    if as_json:
        _dump(rows)
        return
    for r in rows:
        reasons = "; ".join(f"{f['text']} ({f['contribution']:+.1f})" for f in r["top_factors"])
        out.print(f"{r['contact_id']:>8}  {r['score'] * 100:5.1f}%  {r['name']}  {reasons}", highlight=False)
