"""Retention cohorts, repeat rate and time between orders on hand-counted customers."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session

from storefunnel.insight.engine import SqlRunner
from storefunnel.insight.facts import Period
from storefunnel.insight.retention import cohort_matrix, retention
from storefunnel.models import Workspace
from storefunnel.workspaces.service import create_workspace

PERIOD = Period(dt.date(2026, 1, 1), dt.date(2026, 3, 31))


def t(month: int, day: int, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, 12, tzinfo=dt.UTC)


def build(session: Session, make: Any, ws: int) -> None:
    x, y, z, old = (make.contact(session, ws) for _ in range(4))
    make.order(session, ws, x, placed_at=t(1, 15), total=1000)
    make.order(session, ws, x, placed_at=t(1, 20), total=500)  # k = 0
    make.order(session, ws, x, placed_at=t(3, 2), total=800)  # k = 2
    make.order(session, ws, y, placed_at=t(1, 31), total=2000)
    make.order(session, ws, y, placed_at=t(2, 1), total=700)  # k = 1
    make.order(session, ws, y, placed_at=t(2, 5), total=300, currency="USD")  # counts as an order, not as EUR
    make.order(session, ws, y, placed_at=t(2, 9), total=5000, status="refunded")  # does not count at all
    make.order(session, ws, z, placed_at=t(2, 10), total=900)
    make.order(session, ws, old, placed_at=t(12, 20, 2025), total=100)  # first order before the period
    make.order(session, ws, old, placed_at=t(1, 10), total=100)
    make.order(session, ws, x, placed_at=t(4, 2), total=100)  # after the period
    other = create_workspace(session, f"other-{uuid.uuid4().hex[:8]}")
    make.order(session, other.id, make.contact(session, other.id), placed_at=t(1, 5), total=100)


def test_hand_counted_retention(session: Session, make: Any, workspace: Workspace) -> None:
    build(session, make, workspace.id)
    r = retention(SqlRunner(session), workspace.id, PERIOD, "EUR")
    jan, feb = r.cohorts
    assert (jan.month, jan.customers, jan.returning) == (dt.date(2026, 1, 1), 2, [1, 1, 1])
    assert jan.retention == [0.5, 0.5, 0.5]
    assert jan.revenue == [3500, 700, 800]
    assert (feb.month, feb.customers, feb.returning, feb.revenue) == (dt.date(2026, 2, 1), 1, [0, 0], [900, 0])
    assert (r.repeat_rate.successes, r.repeat_rate.trials) == (2, 3)
    # gaps: x 5 and 41 days, y 1 and 4 days (the USD order is an order)
    assert r.gaps == 4
    assert r.days_between_orders == pytest.approx([3.25, 4.5, 14.0])
    d = r.as_dict()
    assert d["cohorts"][0]["month"] == "2026-01"
    assert d["cohorts"][0]["revenue_total"] == 5000


def test_cohort_matrix_on_plain_data() -> None:
    m = dt.date(2026, 1, 1)
    out = cohort_matrix([m, m], [0, 2], [1, 3], [10, 20], {m: 4}, dt.date(2026, 3, 31))
    assert out[0].returning == [1, 0, 3]
    assert out[0].retention == [0.25, 0.0, 0.75]


def test_no_customers(session: Session, workspace: Workspace) -> None:
    r = retention(SqlRunner(session), workspace.id, PERIOD, "EUR")
    assert r.cohorts == []
    assert r.repeat_rate.rate is None
    assert r.days_between_orders == [None, None, None]
