"""Run the simulator into a workspace in one transaction and return (and optionally save) its planted truth."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from storefunnel.errors import Invalid
from storefunnel.simulate.generate import Simulator
from storefunnel.simulate.params import CHANGE_WINDOW_DAYS, SCENARIOS
from storefunnel.simulate.writer import BulkWriter, delete_simulated

TABLE_ORDER = ("contacts", "contact_stages", "identities", "orders", "order_lines", "touches")


def default_anchor() -> dt.date:
    """Today (UTC): the end of the simulated period unless a run pins it for reproducibility."""
    return dt.datetime.now(dt.UTC).date()


def validate(contacts: int, days: int, scenario: str) -> None:
    if contacts < 1:
        raise Invalid("contacts: must be at least 1")
    if days < 1:
        raise Invalid("days: must be at least 1")
    if scenario not in SCENARIOS:
        raise Invalid(f"scenario: must be one of {', '.join(SCENARIOS)}")
    if scenario in ("lead_drop", "conversion_drop") and days < 2 * CHANGE_WINDOW_DAYS:
        raise Invalid(f"days: scenario {scenario} needs at least {2 * CHANGE_WINDOW_DAYS} days")


def simulate_store(
    engine: Engine,
    workspace_id: int,
    *,
    contacts: int,
    days: int,
    seed: int,
    scenario: str = "baseline",
    progress: bool = False,
    truth_path: str | Path | None = None,
    anchor: dt.date | None = None,
    chunk_size: int = 10_000,
    replace: bool = False,
) -> dict[str, Any]:
    """Write a simulated store into ``workspace_id``; all of it commits or none does. Returns the truth.

    ``replace`` first deletes what an earlier run wrote into the workspace, in the same transaction.
    """
    validate(contacts, days, scenario)
    anchor = anchor or default_anchor()
    sim = Simulator(contacts=contacts, days=days, seed=seed, scenario=scenario, anchor=anchor, chunk_size=chunk_size)
    with engine.begin() as conn:
        if replace:
            delete_simulated(conn, workspace_id)
        writer = BulkWriter(conn)
        products = sim.products_table(workspace_id, np.datetime64(sim.start.replace(tzinfo=None), "us"))
        product_ids = writer.alloc("products", len(sim.sku))
        writer.insert("products", {"id": product_ids, **products})
        sim.product_ids = product_ids
        writer.insert("spend", sim.spend_table(workspace_id))
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("contacts"),
            TimeElapsedColumn(),
            disable=not progress,
            transient=False,
        ) as bar:
            task = bar.add_task("contacts", total=contacts)
            for off, n in sim.chunks():
                chunk = sim.generate_chunk(workspace_id, off, n, writer.alloc)
                for table in TABLE_ORDER:
                    writer.insert(table, chunk[table])
                bar.advance(task, n)
        writer.close()
    truth = sim.truth()
    truth["workspace_id"] = workspace_id
    if truth_path is not None:
        path = Path(truth_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return truth
