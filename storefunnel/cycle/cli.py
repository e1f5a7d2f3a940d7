"""`storefunnel cycle …`: recompute, tick, stages, rules and the pipeline from the shell."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from storefunnel.cli_support import JsonOpt, WorkspaceOpt, out
from storefunnel.cli_support import dump_json as _dump
from storefunnel.cli_support import fail as _fail
from storefunnel.cli_support import run_in_workspace as _run
from storefunnel.cycle import dirty, service
from storefunnel.cycle.rules import CycleRules
from storefunnel.db import utcnow
from storefunnel.errors import describe_validation_errors

cycle_app = typer.Typer(help="The five-stage sales cycle: stages, history, rules.", no_args_is_help=True)


def _when(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"{name}: not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@cycle_app.command("recompute")
def recompute(
    workspace: WorkspaceOpt = "default",
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO time to compute as of (default now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild every contact's stage history in one transaction."""
    when = _when(as_of, "--as-of")
    result = _run(workspace, lambda s, ws: service.recompute(s, ws, when))
    if as_json:
        _dump({"as_of": result.as_of, "transitions": result.transitions, "counts": result.counts})
    else:
        out.print(f"{result.transitions} transitions as of {result.as_of.isoformat()}")
        _print_counts(result.counts)


@cycle_app.command("tick")
def tick(workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """Update the contacts tracking marked, then advance the timed transitions (window end, lapse) to now.

    Prints the number of transitions written (both steps); for a scheduler.
    """
    now = utcnow()

    def _tick(session: Session, ws: int) -> tuple[dirty.DrainResult, int]:
        drained = dirty.drain_all(session, workspace_id=ws)
        return drained, len(service.tick(session, ws, now))

    drained, ticked = _run(workspace, _tick)
    moved = len(drained.transitions) + ticked
    if as_json:
        _dump({"as_of": now, "transitions": moved, "drained_contacts": drained.contacts})
    else:
        print(moved)


def _print_counts(counts: dict[str, int]) -> None:
    for stage, n in counts.items():
        out.print(f"{stage:<18}{n:>10}")


@cycle_app.command("stages")
def stages(workspace: WorkspaceOpt = "default", as_json: JsonOpt = False) -> None:
    """Contacts per stage now."""
    counts = _run(workspace, service.stage_counts)
    if as_json:
        _dump({"counts": counts, "total": sum(counts.values())})
    else:
        _print_counts(counts)


@cycle_app.command("rules")
def rules(
    workspace: WorkspaceOpt = "default",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help='One rule as KEY=VALUE, VALUE as JSON: lapse_days=60, intent_events=["A"].'),
    ] = None,
    recompute_after: Annotated[bool, typer.Option("--recompute/--no-recompute", help="Rebuild after a change.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Show the workspace's cycle rules, or change them with --set."""

    def _apply(session: Session, ws: int) -> CycleRules:
        current = service.get_rules(session, ws)
        if not set_:
            return current
        data = current.model_dump()
        for item in set_:
            key, sep, raw = item.partition("=")
            if not sep:
                raise _fail(f"--set: expected KEY=VALUE, got {item!r}")
            try:
                data[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                data[key.strip()] = raw
        try:
            new = CycleRules.model_validate(data)
        except ValidationError as exc:
            raise _fail(describe_validation_errors(list(exc.errors()))[0]) from None
        service.set_rules(session, ws, new)
        if recompute_after:
            service.recompute(session, ws)
        return new

    result = _run(workspace, _apply)
    if as_json:
        _dump(result.model_dump())
    else:
        for key, value in result.model_dump().items():
            out.print(f"{key:<24}{value}", highlight=False)


@cycle_app.command("pipeline")
def pipeline(
    workspace: WorkspaceOpt = "default",
    start: Annotated[str | None, typer.Option("--from", help="Start of the period (default to - 30 days).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End of the period, exclusive (default now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Entries per stage, where they went next with Wilson 95% intervals, and the median time in stage."""
    to = _when(end, "--to") or utcnow()
    frm = _when(start, "--from") or to - dt.timedelta(days=30)
    data = _run(workspace, lambda s, ws: service.pipeline(s, ws, frm, to))
    if as_json:
        _dump(data)
        return
    out.print(f"{'stage':<18}{'now':>8}{'entered':>9}{'exited':>8}{'median days':>13}")
    for s in data["stages"]:
        med = "" if s["median_days_in_stage"] is None else f"{s['median_days_in_stage']:.1f}"
        out.print(f"{s['stage']:<18}{s['contacts']:>8}{s['entered']:>9}{s['exited']:>8}{med:>13}")
    for c in data["conversions"]:
        out.print(
            f"{c['from_stage']} -> {c['to_stage']}: {c['count']}/{c['of']} = {c['rate']:.1%} "
            f"[{c['low']:.1%}, {c['high']:.1%}]"
        )
