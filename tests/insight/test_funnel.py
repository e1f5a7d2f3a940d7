"""The funnel against a store small enough to count by hand, and against the simulator's planted truth."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.insight.engine import SqlRunner
from storefunnel.insight.facts import Period
from storefunnel.insight.funnel import distribution, funnel, summarise_steps
from storefunnel.insight.stats import quantiles_from_counts, wilson_interval
from storefunnel.models import Workspace
from storefunnel.simulate import simulate_store
from storefunnel.workspaces.service import create_workspace

PERIOD = Period(dt.date(2026, 3, 2), dt.date(2026, 3, 15))  # two ISO weeks, Monday 2 and Monday 9 March


def at(day: int, hour: int = 10, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=dt.UTC)


def build_store(session: Session, make: Any, ws: Workspace) -> dict[str, Any]:
    """Four leads in the period (A, B converting; C, D not), an older contact E first buying in it, anonymous visits.

    Another workspace holds a lead and an order in the same period: none of it may show.
    """
    w = ws.id
    a = make.contact(session, w, lead_at=at(2), lead_channel="Email", country="PT", city="Porto", gender="female")
    b = make.contact(session, w, lead_at=at(3), lead_channel="Paid Search", country="PT", city="Lisboa")
    c = make.contact(session, w, lead_at=at(9), lead_channel="Email", country="ES", city="Madrid")
    d = make.contact(session, w, lead_at=at(10), lead_channel="Paid Search", country="ES", city="Madrid")
    e = make.contact(session, w, lead_at=at(1, month=2), lead_channel="Direct")
    make.touch(session, w, a, occurred_at=at(2), channel="Email", campaign="spring")
    make.touch(session, w, a, occurred_at=at(3), channel="Direct")
    make.touch(session, w, a, occurred_at=at(4), channel="Organic Search")
    make.touch(session, w, a, occurred_at=at(5), channel="Direct", kind="track", event="Order Completed")
    make.touch(session, w, b, occurred_at=at(3), channel="Paid Search", campaign="brand")
    make.touch(session, w, c, occurred_at=at(9), channel="Email")
    make.touch(session, w, d, occurred_at=at(10), channel="Paid Search")
    make.touch(session, w, e, occurred_at=at(1, month=2), channel="Direct")
    make.touch(session, w, e, occurred_at=at(4), channel="Direct")
    make.touch(session, w, None, anonymous_id="anon-1", occurred_at=at(3), channel="Organic Search")
    make.touch(session, w, None, anonymous_id="anon-1", occurred_at=at(11), channel="Organic Search")
    make.touch(session, w, None, anonymous_id="anon-2", occurred_at=at(10), channel="Direct")
    make.touch(session, w, None, anonymous_id="anon-3", occurred_at=at(20, month=2), channel="Direct")
    make.order(session, w, a, placed_at=at(5), total=2000)
    make.order(session, w, a, placed_at=at(10), total=3000)
    make.order(session, w, b, placed_at=at(12), total=4000)
    make.order(session, w, d, placed_at=at(11), total=7000, status="cancelled")
    make.order(session, w, e, placed_at=at(6), total=1500)
    make.order(session, w, a, placed_at=at(20), total=9999)  # after the period: not counted
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    x = make.contact(session, other.id, lead_at=at(3), lead_channel="Email")
    make.touch(session, other.id, x, occurred_at=at(3), channel="Email", campaign="spring")
    make.order(session, other.id, x, placed_at=at(4), total=100000)
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


def test_hand_counted_funnel(session: Session, make: Any, workspace: Workspace) -> None:
    build_store(session, make, workspace)
    f = funnel(SqlRunner(session), workspace.id, PERIOD, window_days=7)
    assert [(s.name, s.count) for s in f.steps] == [
        ("visitors", 7),  # A B C D E + anon-1 anon-2
        ("leads", 4),
        ("customers", 2),
        ("repeat_customers", 1),
    ]
    leads_step = f.steps[1].from_previous
    assert leads_step is not None
    assert leads_step.rate == pytest.approx(4 / 7)
    assert leads_step.interval == pytest.approx(wilson_interval(4, 7))
    # window of 7 days: A and B had it in full (lead before 9 March); A bought in 3 days, B in 9
    assert (f.converted_in_window.successes, f.converted_in_window.trials) == (1, 2)
    channels = {b.key: (b.leads, b.customers, b.repeat_customers) for b in f.by_channel}
    assert channels == {"Email": (2, 1, 1), "Paid Search": (2, 1, 0)}
    campaigns = {b.key: (b.leads, b.customers) for b in f.by_campaign}
    assert campaigns == {
        "Email / spring": (1, 1),
        "Email / (none)": (1, 0),
        "Paid Search / brand": (1, 1),
        "Paid Search / (none)": (1, 0),
    }
    weeks = {b.key: (b.extra["visitors"], b.leads, b.customers, b.extra["new_customers"]) for b in f.by_week}
    assert weeks == {"2026-03-02": (4, 2, 2, 2), "2026-03-09": (3, 2, 0, 1)}
    assert f.time_to_convert_days.values == [3, 9]
    assert f.time_to_convert_days.quartiles == pytest.approx([4.5, 6.0, 7.5])
    # first orders in the period: A after 3 touches, B after 1, E after 2 (one of them before the period)
    tb = f.touches_before_first_order
    assert (tb.values, tb.counts) == ([1, 2, 3], [1, 1, 1])
    share = tb.share_between(5, 12)
    assert (share.successes, share.trials) == (0, 3)


def test_funnel_by_segment(session: Session, make: Any, workspace: Workspace) -> None:
    from storefunnel.segments.schemas import SegmentCreate
    from storefunnel.segments.service import create_segment

    build_store(session, make, workspace)
    rules = {"all": [{"field": "country", "op": "eq", "value": "PT"}]}
    seg = create_segment(session, workspace.id, SegmentCreate(name="Portugal", rules=rules))
    f = funnel(SqlRunner(session), workspace.id, PERIOD)
    assert [(b.key, b.leads, b.customers, b.extra["segment_id"]) for b in f.by_segment] == [("Portugal", 2, 2, seg.id)]


def test_empty_period(session: Session, workspace: Workspace) -> None:
    f = funnel(SqlRunner(session), workspace.id, PERIOD)
    assert [s.count for s in f.steps] == [0, 0, 0, 0]
    assert f.steps[1].from_previous is not None
    assert f.steps[1].from_previous.rate is None
    assert f.time_to_convert_days.quartiles == [None, None, None]
    assert f.by_week == []


def test_bad_input_is_named() -> None:
    with pytest.raises(Invalid, match=r"^to:"):
        Period(dt.date(2026, 3, 2), dt.date(2026, 3, 1))
    with pytest.raises(Invalid, match=r"^from:"):
        Period.parse("2026-02-30", "2026-03-01")
    with pytest.raises(Invalid, match="subset"):
        summarise_steps(10, 11, 1, 0)


def test_quantiles_from_counts_match_numpy() -> None:
    rng = np.random.default_rng(7)
    sample = rng.integers(0, 40, 501)
    values, counts = np.unique(sample, return_counts=True)
    assert quantiles_from_counts(values, counts, (0.1, 0.25, 0.5, 0.75, 0.9)) == pytest.approx(
        np.quantile(sample, [0.1, 0.25, 0.5, 0.75, 0.9]).tolist()
    )
    d = distribution(values.tolist(), counts.tolist())
    assert d.mean == pytest.approx(sample.mean())


# --- against the simulator's planted truth ----------------------------------------------------------------

ANCHOR = dt.date(2026, 10, 1)


def _simulated(engine: Engine, scenario: str, contacts: int, days: int) -> tuple[int, dict[str, Any]]:
    with Session(engine) as s:
        ws = create_workspace(s, f"sim-{scenario}-{uuid.uuid4().hex[:8]}")
        s.commit()
        ws_id = ws.id
    truth = simulate_store(engine, ws_id, contacts=contacts, days=days, seed=3, scenario=scenario, anchor=ANCHOR)
    analyze(engine)
    return ws_id, truth


def analyze(engine: Engine) -> None:
    """Fresh planner statistics after a bulk load, as autovacuum would give them a minute later."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE contacts, touches, orders")


@pytest.fixture(scope="module")
def baseline(engine: Engine) -> tuple[int, dict[str, Any]]:
    return _simulated(engine, "baseline", 3000, 180)


def test_simulated_store_matches_truth(engine: Engine, baseline: tuple[int, dict[str, Any]]) -> None:
    ws_id, truth = baseline
    counts = truth["counts"]
    whole = Period(dt.date(2025, 1, 1), ANCHOR)
    with Session(engine) as s:
        f = funnel(SqlRunner(s), ws_id, whole)
    assert [s.count for s in f.steps[:3]] == [
        counts["contacts"] + counts["anonymous_visitors"],
        counts["leads"],
        counts["customers"],
    ]
    planted = truth["touches_before_first_order"]
    tb = f.touches_before_first_order
    assert {str(v): c for v, c in zip(tb.values, tb.counts, strict=True)} == planted["histogram"]
    assert tb.share_between(5, 12).rate == pytest.approx(planted["share_5_to_12"])
    assert tb.mean == pytest.approx(planted["mean"])
    leads_by_channel = {b.key: b.leads for b in f.by_channel}
    assert leads_by_channel == {k: v["leads"] for k, v in truth["channels"].items() if v["leads"]}


@pytest.mark.parametrize(
    ("scenario", "count_key", "step"),
    [("lead_drop", "leads_in_window", "leads"), ("conversion_drop", "first_orders_in_window", "new_customers")],
)
def test_scenarios_show_in_the_weeks(engine: Engine, scenario: str, count_key: str, step: str) -> None:
    """The change window's leads (or first orders) are exactly the planted ones, and visibly fewer per day."""
    ws_id, truth = _simulated(engine, scenario, 2500, 120)
    window = Period(ANCHOR - dt.timedelta(days=28), ANCHOR - dt.timedelta(days=1))
    before = Period(ANCHOR - dt.timedelta(days=84), ANCHOR - dt.timedelta(days=29))
    with Session(engine) as s:
        runner = SqlRunner(s)
        inside, outside = funnel(runner, ws_id, window), funnel(runner, ws_id, before)
    if step == "leads":
        n_in, n_out = inside.steps[1].count, outside.steps[1].count
    else:
        n_in = sum(b.extra["new_customers"] for b in inside.by_week)
        n_out = sum(b.extra["new_customers"] for b in outside.by_week)
    assert n_in == truth["counts"][count_key]
    per_day_ratio = (n_in / window.days) / (n_out / before.days)
    assert per_day_ratio < 0.8, per_day_ratio  # planted: x0.6
