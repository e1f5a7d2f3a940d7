"""A small store built by hand, whose every segment answer can be worked out on paper."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from storefunnel.models import Workspace
from storefunnel.segments import service
from storefunnel.segments.rules import parse_rules

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


@pytest.fixture
def people(session: Session, workspace: Workspace, make: Any) -> dict[str, int]:
    """Four contacts: ana (PT customer, active), bob (ES, lapsed customer), carla (PT, no orders), dan (bare)."""
    ws = workspace.id
    ana = make.contact(
        session, ws, email="ana@shop.pt", country="PT", region="Lisboa", city="Lisboa", age_band="25-29",
        gender="female", stage="buying", lead_channel="Organic Search", email_consent=True,
        created_at=at("2026-01-10"), lead_at=at("2026-01-15"),
        traits={"plan": "gold", "score": 42, "vip": True, "address": {"size": "M"}},
    )  # fmt: skip
    bob = make.contact(
        session, ws, email="bob@example.com", country="ES", region="Madrid", city="Madrid", age_band="40-49",
        gender="male", stage="lapsed", lead_channel="Paid Social", email_consent=False,
        created_at=at("2026-02-20"), traits={"plan": "silver", "score": 7.5, "vip": False},
    )  # fmt: skip
    carla = make.contact(
        session, ws, email="carla@example.org", country="PT", age_band="18-24", created_at=at("2025-12-01"),
        traits={"score": "42"},
    )  # fmt: skip
    dan = make.contact(session, ws, email="dan_x%@example.com", created_at=at("2026-02-28"))
    make.order(session, ws, ana, placed_at=at("2026-02-27T10:00"), total=5000)
    make.order(session, ws, ana, placed_at=at("2026-01-05"), total=3000)
    make.order(session, ws, bob, placed_at=at("2025-12-01T11:00"), total=10000)
    make.order(session, ws, bob, placed_at=at("2026-02-28"), total=99999, status="cancelled")
    for day in ("2026-02-20", "2026-02-24", "2026-02-25"):
        make.touch(session, ws, ana, kind="track", event="Product Added", occurred_at=at(day), channel="Direct")
    make.touch(session, ws, ana, kind="track", event="Product Added", occurred_at=at("2026-01-01"))
    make.touch(session, ws, bob, kind="track", event="Product Added", occurred_at=at("2026-02-25"), channel="Email")
    make.touch(session, ws, bob, kind="email_open", occurred_at=at("2026-02-26"), channel="Email")
    make.touch(session, ws, bob, kind="email_open", occurred_at=at("2026-02-27"), channel="Email")
    make.touch(session, ws, None, kind="track", event="Product Added", occurred_at=at("2026-02-27"), anonymous_id="x")
    return {"ana": ana.id, "bob": bob.id, "carla": carla.id, "dan": dan.id}


@pytest.fixture
def select(session: Session, workspace: Workspace, people: dict[str, int]) -> Callable[[dict[str, Any]], set[str]]:
    """Evaluate rules at NOW and name the contacts they select."""
    names = {v: k for k, v in people.items()}

    def _select(rules: dict[str, Any]) -> set[str]:
        ids = service.compile_for(session, workspace.id, parse_rules(rules), NOW)
        return {names[i] for i in session.scalars(ids)}

    return _select
