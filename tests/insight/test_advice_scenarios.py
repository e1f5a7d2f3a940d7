"""The advice on the simulator's scenarios: it must name the side (and stage) the scenario planted, and raise no
alarm on the baseline, across 20 seeds each.

Each store is simulated into a private in-memory SQLite database (the statistics are what is tested here; that
the queries agree on every backend is tested in test_advice.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle import service as cycle
from storefunnel.db import Base
from storefunnel.insight.advice import advice_report, default_period
from storefunnel.simulate import simulate_store
from storefunnel.workspaces.service import create_workspace

SEEDS = range(20)
CONTACTS = 5000
DAYS = 84
ANCHOR = dt.date(2026, 6, 1)
MIN_HIT_RATE = 0.9
ADVICE_SCENARIOS = {"seeds": len(SEEDS), "contacts": CONTACTS, "days": DAYS, "min_hit_rate": MIN_HIT_RATE}


def advise_simulated(scenario: str, seed: int) -> dict[str, Any]:
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        ws = create_workspace(s, "store")
        s.commit()
        ws_id = ws.id
    simulate_store(engine, ws_id, contacts=CONTACTS, days=DAYS, seed=seed, scenario=scenario, anchor=ANCHOR)
    with Session(engine) as s:
        cycle.recompute(s, ws_id, dt.datetime.combine(ANCHOR, dt.time(), dt.UTC))
        s.commit()
        return advice_report(s, ws_id, default_period(ANCHOR - dt.timedelta(days=1)))


def top_problem(report: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in report["recommendations"] if r["kind"] == "problem"), None)


def hit(scenario: str, report: dict[str, Any]) -> bool:
    top = top_problem(report)
    if scenario == "baseline":
        return report["focus"] == "unclear" and top is None
    if scenario == "lead_drop":
        return report["focus"] == "marketing" and top is not None and top["stage"] == "prospecting"
    if scenario == "conversion_drop":
        return report["focus"] == "sales" and top is not None and top["stage"] in ("conversion", "buying")
    return report["focus"] == "sales" and top is not None and top["stage"] == "thanked"  # no_thank_you


@pytest.mark.parametrize("scenario", ["baseline", "lead_drop", "conversion_drop", "no_thank_you"])
def test_advice_names_the_planted_problem(scenario: str) -> None:
    outcomes = [hit(scenario, advise_simulated(scenario, seed)) for seed in SEEDS]
    rate = sum(outcomes) / len(outcomes)
    assert rate >= MIN_HIT_RATE, f"{scenario}: hit rate {rate:.0%} over {len(outcomes)} seeds ({outcomes})"
