"""``storefunnel simulate``: fill a workspace with a simulated store and save its planted truth beside it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from storefunnel.cli_support import fail
from storefunnel.config import get_settings
from storefunnel.cycle import service as cycle_service
from storefunnel.db import get_engine, get_sessionmaker
from storefunnel.errors import AppError
from storefunnel.migrate import upgrade
from storefunnel.simulate.engine import simulate_store, validate
from storefunnel.simulate.params import SCENARIOS
from storefunnel.simulate.writer import count_contacts
from storefunnel.workspaces.service import ensure_workspace

err = Console(stderr=True)


def simulate_command(
    contacts: Annotated[int, typer.Option(help="Contacts (identified people) to simulate.")] = 20000,
    days: Annotated[int, typer.Option(help="Days of history, ending at the anchor.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and anchor give the same store.")] = 1,
    scenario: Annotated[str, typer.Option(help=f"One of: {', '.join(SCENARIOS)}.")] = "baseline",
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="Workspace name (created if missing).")] = (
        "default"
    ),
    truth: Annotated[Path | None, typer.Option(help="Where to write the planted truth JSON.")] = None,
    anchor: Annotated[str | None, typer.Option(help="End of the period, YYYY-MM-DD (UTC midnight); default today.")] = (
        None
    ),
    replace: Annotated[bool, typer.Option("--replace", help="Delete this workspace's simulated rows first.")] = False,
) -> None:
    """Simulate a store with planted truth (channels, journeys, buying group, pairs, repeats); prints its path last."""
    try:
        validate(contacts, days, scenario)
    except AppError as exc:
        raise fail(exc.detail) from None
    try:
        end = dt.date.fromisoformat(anchor) if anchor else None
    except ValueError:
        raise fail(f"anchor: {anchor!r} is not a date like 2026-11-22") from None
    engine = get_engine()
    upgrade(engine)
    with get_sessionmaker()() as session:
        ws = ensure_workspace(session, workspace)
        session.commit()
        ws_id = ws.id
    with engine.connect() as conn:
        existing = count_contacts(conn, ws_id)
    if existing and not replace:
        raise fail(f"workspace {workspace!r} already has {existing} contacts; pass --replace to replace simulated rows")
    path = truth or get_settings().data_dir / f"truth-{workspace}.json"
    result = simulate_store(
        engine,
        ws_id,
        contacts=contacts,
        days=days,
        seed=seed,
        scenario=scenario,
        progress=True,
        truth_path=path,
        anchor=end,
        replace=replace,
    )
    with get_sessionmaker()() as session:
        cycle_service.recompute(session, ws_id, dt.datetime.now(dt.UTC))
        session.commit()
    counts = result["counts"]
    err.print(
        f"{counts['contacts']} contacts, {counts['customers']} customers, {counts['orders']} orders, "
        f"{counts['touches']} touches in workspace {workspace!r}",
        highlight=False,
    )
    print(path)
