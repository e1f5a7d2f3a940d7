"""Channels and tactics on a hand-counted store: every figure, zero divisions as null, other currencies apart."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from storefunnel.insight.channels import Tactic, channels, summarise_tactics
from storefunnel.insight.engine import SqlRunner
from storefunnel.models import Spend, Workspace
from tests.insight.test_funnel import PERIOD, build_store


def add_spend(
    session: Session, ws: int, day: dt.date, channel: str, campaign: str, cost: int, currency: str = "EUR"
) -> None:
    session.add(Spend(workspace_id=ws, day=day, channel=channel, campaign=campaign, cost=cost, currency=currency))
    session.flush()


def test_hand_counted_channels(session: Session, make: Any, workspace: Workspace) -> None:
    build_store(session, make, workspace)
    w = workspace.id
    add_spend(session, w, dt.date(2026, 3, 5), "Paid Search", "brand", 5000)
    add_spend(session, w, dt.date(2026, 3, 15), "Paid Search", "", 1000)
    add_spend(session, w, dt.date(2026, 3, 1), "Email", "spring", 999)  # the day before the period
    add_spend(session, w, dt.date(2026, 3, 6), "Paid Search", "brand", 777, currency="USD")  # not the store's
    report = channels(SqlRunner(session), w, PERIOD, "EUR")
    rows = {(t.channel, t.campaign): t for t in report.campaigns}
    assert set(rows) == {
        ("Email", "spring"),
        ("Email", "(none)"),
        ("Paid Search", "brand"),
        ("Paid Search", "(none)"),
    }
    spring = rows[("Email", "spring")]
    assert (spring.leads, spring.customers, spring.revenue, spring.spend) == (1, 1, 5000, 0)
    assert (spring.cost_per_lead, spring.acquisition_cost, spring.return_on_ad_spend) == (0.0, 0.0, None)
    brand = rows[("Paid Search", "brand")]
    assert (brand.leads, brand.customers, brand.revenue, brand.spend) == (1, 1, 4000, 5000)
    assert (brand.cost_per_lead, brand.acquisition_cost, brand.return_on_ad_spend) == (5000.0, 5000.0, 0.8)
    none = rows[("Paid Search", "(none)")]
    assert (none.leads, none.customers, none.revenue, none.spend) == (1, 0, 0, 1000)  # D's order was cancelled
    assert (none.cost_per_lead, none.acquisition_cost, none.return_on_ad_spend) == (1000.0, None, 0.0)
    paid = next(t for t in report.channels if t.channel == "Paid Search")
    assert (paid.leads, paid.customers, paid.revenue, paid.spend) == (2, 1, 4000, 6000)
    assert paid.return_on_ad_spend == pytest.approx(4000 / 6000)
    total = report.total
    assert (total.leads, total.customers, total.revenue, total.spend) == (4, 2, 9000, 6000)
    assert report.as_dict()["total"]["customer_acquisition_cost"] == 3000.0


def test_spend_without_leads_still_shows() -> None:
    channels_, campaigns = summarise_tactics([Tactic("Display", "remarketing", 0, 0, 0, 1200)])
    d = channels_[0].as_dict()
    assert (d["leads"], d["spend"], d["cost_per_lead"], d["customer_acquisition_cost"]) == (0, 1200, None, None)
    assert d["return_on_ad_spend"] == 0.0
    assert d["conversion"]["rate"] is None
    assert campaigns[0].campaign == "remarketing"


def test_channels_against_simulated_spend(session: Session, workspace: Workspace) -> None:
    """Spend per campaign equals the simulator's rows summed in Python; leads add up to the funnel's."""
    from storefunnel.simulate.generate import Simulator

    sim = Simulator(contacts=10, days=30, seed=5, scenario="baseline", anchor=dt.date(2026, 4, 1))
    table = sim.spend_table(workspace.id)
    expected: dict[tuple[str, str], int] = {}
    for day, ch, camp, cost in zip(table["day"], table["channel"], table["campaign"], table["cost"], strict=True):
        add_spend(session, workspace.id, dt.date.fromisoformat(str(day)[:10]), str(ch), str(camp), int(cost))
        if PERIOD.first <= dt.date.fromisoformat(str(day)[:10]) <= PERIOD.last:
            expected[(str(ch), str(camp))] = expected.get((str(ch), str(camp)), 0) + int(cost)
    report = channels(SqlRunner(session), workspace.id, PERIOD, "EUR")
    assert {(t.channel, t.campaign): t.spend for t in report.campaigns} == expected
