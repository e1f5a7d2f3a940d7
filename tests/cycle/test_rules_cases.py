"""Every rule and edge case of the cycle, by hand, on the real database (SQL checked against the state machine)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from storefunnel.cycle import service
from storefunnel.cycle.rules import CycleRules
from storefunnel.models import Workspace
from tests.cycle.helpers import day, run

P, C, B, TH, K, L = "prospecting", "conversion", "buying", "thanked", "keeping_in_touch", "lapsed"


def test_new_contact_is_prospecting_then_lapses(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    assert run(session, workspace.id, c.id) == [(P, day(0), "created"), (L, day(90), "lapse")]


def test_full_cycle(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.touch(session, workspace.id, c, kind="page", occurred_at=day(1))
    make.touch(session, workspace.id, c, kind="track", event="Product Viewed", occurred_at=day(2))
    make.touch(session, workspace.id, c, kind="track", event="Cart Viewed", occurred_at=day(3))
    make.order(session, workspace.id, c, placed_at=day(4))
    make.touch(session, workspace.id, c, kind="track", event="Email Opened", occurred_at=day(5))
    make.touch(
        session,
        workspace.id,
        c,
        kind="track",
        event="Email Opened",
        properties={"flow": "thank_you"},
        occurred_at=day(6),
    )
    make.touch(session, workspace.id, c, kind="page", occurred_at=day(40))
    assert run(session, workspace.id, c.id) == [
        (P, day(0), "created"),
        (C, day(2), "intent"),
        (B, day(4), "order"),
        (TH, day(6), "thank_you"),
        (K, day(11), "window_end"),
        (L, day(130), "lapse"),
    ]


def test_no_thank_you_still_moves_to_keeping_in_touch(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(1))
    assert run(session, workspace.id, c.id, as_of=day(20)) == [
        (P, day(0), "created"),
        (B, day(1), "order"),
        (K, day(8), "window_end"),
    ]


def test_thank_you_event_name_counts_and_late_one_does_not(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(1))
    make.touch(session, workspace.id, c, kind="track", event="Thank You Sent", occurred_at=day(8))  # window over
    assert [s for s, *_ in run(session, workspace.id, c.id)] == [P, B, K, L]
    make.touch(session, workspace.id, c, kind="track", event="Thank You Sent", occurred_at=day(7.99))
    assert [s for s, *_ in run(session, workspace.id, c.id)] == [P, B, TH, K, L]


def test_thank_you_before_any_order_or_at_the_order_instant_is_ignored(
    session: Session, workspace: Workspace, make: Any
) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.touch(session, workspace.id, c, kind="track", event="Thank You Sent", occurred_at=day(1))
    make.touch(session, workspace.id, c, kind="track", event="Thank You Sent", occurred_at=day(2))
    make.order(session, workspace.id, c, placed_at=day(2))
    assert [s for s, *_ in run(session, workspace.id, c.id, as_of=day(3))] == [P, B]


def test_repeat_order_inside_window_restarts_it(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(1))
    make.touch(session, workspace.id, c, kind="track", event="Thank You Sent", occurred_at=day(2))
    make.order(session, workspace.id, c, placed_at=day(5))
    assert run(session, workspace.id, c.id, as_of=day(30)) == [
        (P, day(0), "created"),
        (B, day(1), "order"),
        (TH, day(2), "thank_you"),
        (B, day(5), "order"),
        (K, day(12), "window_end"),
    ]


def test_order_exactly_at_window_end_keeps_buying(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(1))
    make.order(session, workspace.id, c, placed_at=day(8))
    make.touch(session, workspace.id, c, kind="page", occurred_at=day(8))
    assert run(session, workspace.id, c.id, as_of=day(10)) == [(P, day(0), "created"), (B, day(1), "order")]


def test_intent_after_first_order_does_not_mean_conversion(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(1))
    make.touch(session, workspace.id, c, kind="track", event="Checkout Started", occurred_at=day(20))
    assert [s for s, *_ in run(session, workspace.id, c.id, as_of=day(30))] == [P, B, K]


def test_lapse_is_strictly_longer_than_lapse_days(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.touch(session, workspace.id, c, kind="page", occurred_at=day(90))  # exactly at the due time: no lapse
    assert run(session, workspace.id, c.id, as_of=day(179)) == [(P, day(0), "created")]
    assert run(session, workspace.id, c.id, as_of=day(180)) == [(P, day(0), "created"), (L, day(180), "lapse")]


def test_lapsed_non_customer_comes_back_to_prospecting_or_conversion(
    session: Session, workspace: Workspace, make: Any
) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.touch(session, workspace.id, c, kind="track", event="Product Viewed", occurred_at=day(1))
    make.touch(session, workspace.id, c, kind="page", occurred_at=day(100))
    make.touch(session, workspace.id, c, kind="track", event="Product Added", occurred_at=day(101))
    assert run(session, workspace.id, c.id, as_of=day(120)) == [
        (P, day(0), "created"),
        (C, day(1), "intent"),
        (L, day(91), "lapse"),
        (P, day(100), "touch"),
        (C, day(101), "intent"),
    ]


def test_lapsed_customer_comes_back_to_keeping_in_touch_and_order_to_buying(
    session: Session, workspace: Workspace, make: Any
) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(1))
    make.touch(session, workspace.id, c, kind="email_open", occurred_at=day(200))
    make.order(session, workspace.id, c, placed_at=day(400))
    assert run(session, workspace.id, c.id, as_of=day(402)) == [
        (P, day(0), "created"),
        (B, day(1), "order"),
        (K, day(8), "window_end"),
        (L, day(91), "lapse"),
        (K, day(200), "touch"),
        (L, day(290), "lapse"),
        (B, day(400), "order"),
    ]


def test_cancelled_and_refunded_orders_do_not_count(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(1), status="cancelled")
    make.order(session, workspace.id, c, placed_at=day(2), status="refunded")
    assert run(session, workspace.id, c.id, as_of=day(10)) == [(P, day(0), "created")]


def test_facts_before_creation_start_the_history(session: Session, workspace: Workspace, make: Any) -> None:
    """A visitor stitched to a contact later: the history starts at the first fact, creation counts as a touch."""
    c = make.contact(session, workspace.id, created_at=day(10))
    make.touch(session, workspace.id, c, kind="track", event="Product Viewed", occurred_at=day(2))
    assert run(session, workspace.id, c.id, as_of=day(20)) == [(C, day(2), "intent")]


def test_first_fact_an_order(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(5))
    make.order(session, workspace.id, c, placed_at=day(5))
    assert run(session, workspace.id, c.id, as_of=day(6)) == [(B, day(5), "order")]


def test_same_instant_keeps_only_the_last_stage(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.touch(session, workspace.id, c, kind="track", event="Product Viewed", occurred_at=day(0))
    assert run(session, workspace.id, c.id, as_of=day(1)) == [(C, day(0), "intent")]


def test_as_of_hides_the_future_and_pending_timers(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    make.order(session, workspace.id, c, placed_at=day(3))
    assert run(session, workspace.id, c.id, as_of=day(2)) == [(P, day(0), "created")]
    assert run(session, workspace.id, c.id, as_of=day(9.99)) == [(P, day(0), "created"), (B, day(3), "order")]
    assert run(session, workspace.id, c.id, as_of=day(10))[-1] == (K, day(10), "window_end")
    assert run(session, workspace.id, c.id, as_of=day(-1)) == []


def test_microseconds_survive_the_date_arithmetic(session: Session, workspace: Workspace, make: Any) -> None:
    c = make.contact(session, workspace.id, created_at=day(0))
    placed = day(1) + dt.timedelta(microseconds=123457)
    make.order(session, workspace.id, c, placed_at=placed)
    make.touch(session, workspace.id, c, kind="page", occurred_at=placed + dt.timedelta(days=7))  # at the window end
    rows = run(session, workspace.id, c.id, as_of=day(20))
    assert rows[-1] == (K, placed + dt.timedelta(days=7), "touch")


def test_workspace_rules_are_used(session: Session, workspace: Workspace, make: Any) -> None:
    service.set_rules(
        session,
        workspace.id,
        CycleRules(intent_events=["Quote Requested"], thank_you_window_days=2, lapse_days=5, thank_you_flow="ty"),
    )
    c = make.contact(session, workspace.id, created_at=day(0))
    make.touch(session, workspace.id, c, kind="track", event="Product Viewed", occurred_at=day(1))
    make.touch(session, workspace.id, c, kind="track", event="Quote Requested", occurred_at=day(2))
    make.order(session, workspace.id, c, placed_at=day(3))
    make.touch(
        session, workspace.id, c, kind="track", event="Email Opened", properties={"flow": "ty"}, occurred_at=day(4)
    )
    assert run(session, workspace.id, c.id, as_of=day(30)) == [
        (P, day(0), "created"),
        (C, day(2), "intent"),
        (B, day(3), "order"),
        (TH, day(4), "thank_you"),
        (K, day(5), "window_end"),
        (L, day(9), "lapse"),
    ]


def test_other_workspaces_are_untouched(session: Session, workspace: Workspace, make: Any) -> None:
    from storefunnel.workspaces.service import create_workspace

    other = create_workspace(session, "cycle-other-ws")
    mine = make.contact(session, workspace.id, created_at=day(0))
    theirs = make.contact(session, other.id, created_at=day(0))
    service.recompute(session, other.id, day(1))
    service.recompute(session, workspace.id, day(200))
    session.refresh(theirs)
    session.refresh(mine)
    assert (theirs.stage, mine.stage) == (P, L)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lapse_days", 5), ("thank_you_window_days", 0), ("intent_events", [""]), ("colour", "red")],
)
def test_invalid_rules_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        CycleRules.model_validate(
            {"thank_you_window_days": 7, field: value} if field != "thank_you_window_days" else {field: value}
        )
    assert field in {str(e["loc"][0]) for e in info.value.errors()}
