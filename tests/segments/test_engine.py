"""Every field and operator on the hand-built store of conftest, answers worked out by hand (NOW = 2026-03-01 12:00)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def c(field: str, op: str, value: Any = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"field": field, "op": op}
    if value is not None:
        rule["value"] = value
    return rule


ALL = {"ana", "bob", "carla", "dan"}

CONTACT_CASES = [
    (c("email", "eq", "ana@shop.pt"), {"ana"}),
    (c("email", "neq", "ana@shop.pt"), {"bob", "carla", "dan"}),
    (c("country", "eq", "PT"), {"ana", "carla"}),
    (c("country", "neq", "PT"), {"bob", "dan"}),  # an unknown country is "not PT"
    (c("country", "in", ["PT", "ES"]), {"ana", "bob", "carla"}),
    (c("country", "not_in", ["PT"]), {"bob", "dan"}),
    (c("email", "contains", "EXAMPLE"), {"bob", "carla", "dan"}),  # case-insensitive
    (c("email", "contains", "_x%"), {"dan"}),  # LIKE wildcards are literal
    (c("email", "contains", "n_"), {"dan"}),
    (c("email", "starts_with", "B"), {"bob"}),
    (c("region", "is_set"), {"ana", "bob"}),
    (c("region", "is_not_set"), {"carla", "dan"}),
    (c("city", "eq", "Madrid"), {"bob"}),
    (c("age_band", "in", ["25-29", "18-24"]), {"ana", "carla"}),
    (c("gender", "eq", "female"), {"ana"}),
    (c("stage", "eq", "lapsed"), {"bob"}),
    (c("stage", "neq", "buying"), {"bob", "carla", "dan"}),
    (c("lead_channel", "starts_with", "paid"), {"bob"}),
    (c("email_consent", "is_true"), {"ana"}),
    (c("email_consent", "is_false"), {"bob", "carla", "dan"}),
    (c("created_at", "before", "2026-01-01"), {"carla"}),
    (c("created_at", "after", "2026-02-20T00:00:00Z"), {"dan"}),  # strictly after
    (c("created_at", "between", ["2026-01-10", "2026-02-20"]), {"ana", "bob"}),  # inclusive
    (c("created_at", "within_last_days", 10), {"bob", "dan"}),
    (c("created_at", "not_within_last_days", 10), {"ana", "carla"}),
    (c("lead_at", "is_set"), {"ana"}),
    (c("lead_at", "is_not_set"), {"bob", "carla", "dan"}),
    (c("lead_at", "within_last_days", 365), {"ana"}),
    (c("lead_at", "not_within_last_days", 1), {"ana"}),  # never a lead is not "a lead long ago"
    (c("lead_at", "after", "2026-01-15T00:00:00+01:00"), {"ana"}),  # offsets are honoured
]

ORDER_CASES = [
    (c("order_count", "eq", 0), {"carla", "dan"}),
    (c("order_count", "gte", 1), {"ana", "bob"}),
    (c("order_count", "eq", 2), {"ana"}),
    (c("order_count", "gt", 1), {"ana"}),
    (c("order_count", "lt", 2), {"bob", "carla", "dan"}),
    (c("order_count", "lte", 1), {"bob", "carla", "dan"}),
    (c("order_count", "neq", 2), {"bob", "carla", "dan"}),
    (c("order_count", "between", [1, 1]), {"bob"}),
    (c("order_count", "in", [0, 2]), {"ana", "carla", "dan"}),
    (c("revenue", "gt", 8000), {"bob"}),  # the cancelled 99999 does not count
    (c("revenue", "eq", 8000), {"ana"}),
    (c("revenue", "gte", 8000), {"ana", "bob"}),
    (c("revenue", "lt", 1), {"carla", "dan"}),
    (c("first_order_at", "before", "2026-01-01"), {"bob"}),
    (c("first_order_at", "is_not_set"), {"carla", "dan"}),
    (c("last_order_at", "within_last_days", 7), {"ana"}),
    (c("last_order_at", "after", "2026-02-01"), {"ana"}),
    (c("last_order_at", "not_within_last_days", 30), {"bob"}),
    (c("last_order_at", "between", ["2025-12-01", "2025-12-02"]), {"bob"}),
    # ana ordered 2 days 2 hours ago, bob 90 days 1 hour ago
    (c("days_since_last_order", "eq", 2), {"ana"}),
    (c("days_since_last_order", "eq", 90), {"bob"}),
    (c("days_since_last_order", "eq", 3), set()),
    (c("days_since_last_order", "gt", 2), {"bob"}),
    (c("days_since_last_order", "gte", 2), {"ana", "bob"}),
    (c("days_since_last_order", "lt", 90), {"ana"}),
    (c("days_since_last_order", "lte", 90), {"ana", "bob"}),
    (c("days_since_last_order", "lte", 89), {"ana"}),
    (c("days_since_last_order", "gt", 90), set()),
    (c("days_since_last_order", "between", [3, 90]), {"bob"}),
    (c("days_since_last_order", "in", [2, 90]), {"ana", "bob"}),
    (c("days_since_last_order", "neq", 2), {"bob", "carla", "dan"}),
]

TRAIT_CASES = [
    (c("traits.plan", "eq", "gold"), {"ana"}),
    (c("traits.plan", "neq", "gold"), {"bob", "carla", "dan"}),
    (c("traits.plan", "in", ["gold", "silver"]), {"ana", "bob"}),
    (c("traits.plan", "not_in", ["gold"]), {"bob", "carla", "dan"}),
    (c("traits.plan", "is_set"), {"ana", "bob"}),
    (c("traits.plan", "is_not_set"), {"carla", "dan"}),
    (c("traits.plan", "contains", "IL"), {"bob"}),
    (c("traits.plan", "starts_with", "g"), {"ana"}),
    (c("traits.score", "eq", 42), {"ana"}),  # carla's "42" is a string, not a number
    (c("traits.score", "eq", "42"), {"carla"}),
    (c("traits.score", "gt", 7.5), {"ana"}),
    (c("traits.score", "gte", 7.5), {"ana", "bob"}),
    (c("traits.score", "lt", 10), {"bob"}),
    (c("traits.score", "lte", 42), {"ana", "bob"}),
    (c("traits.score", "between", [0, 10]), {"bob"}),
    (c("traits.score", "in", [7.5, 1]), {"bob"}),
    (c("traits.score", "neq", 42), {"bob", "carla", "dan"}),
    (c("traits.vip", "is_true"), {"ana"}),
    (c("traits.vip", "is_false"), {"bob"}),
    (c("traits.address.size", "eq", "M"), {"ana"}),
    (c("traits.address", "is_set"), {"ana"}),
]

BEHAVIOUR_CASES = [
    ({"event": "Product Added", "op": ">=", "count": 2, "within_days": 14}, {"ana"}),
    ({"event": "Product Added", "op": ">=", "count": 1, "within_days": 14}, {"ana", "bob"}),
    ({"event": "Product Added", "op": "=", "count": 0, "within_days": 14}, {"carla", "dan"}),
    ({"event": "Product Added", "op": "<", "count": 2, "within_days": 14}, {"bob", "carla", "dan"}),
    ({"event": "Product Added", "op": "<=", "count": 3, "within_days": 14}, ALL),
    ({"event": "Product Added", "op": "!=", "count": 1, "within_days": 14}, {"ana", "carla", "dan"}),
    ({"event": "Product Added", "op": ">", "count": 3}, {"ana"}),  # all time: 4
    ({"event": "Product Added", "op": "=", "count": 3}, set()),
    ({"event": "Product Added", "channel": "Email"}, {"bob"}),  # op >= and count 1 by default
    ({"kind": "email_open", "op": ">", "count": 1}, {"bob"}),
    ({"kind": "track", "event": "Product Added", "op": ">=", "count": 3, "within_days": 14}, {"ana"}),
]

TREE_CASES = [
    ({"all": [c("country", "eq", "PT"), {"any": [c("order_count", "gte", 1), c("traits.score", "eq", "42")]}]},
     {"ana", "carla"}),
    ({"not": c("country", "eq", "PT")}, {"bob", "dan"}),
    ({"not": c("email_consent", "is_true")}, {"bob", "carla", "dan"}),
    ({"not": c("traits.score", "gt", 10)}, {"bob", "carla", "dan"}),
    ({"not": c("days_since_last_order", "lte", 30)}, {"bob", "carla", "dan"}),
    ({"not": {"not": c("country", "eq", "ES")}}, {"bob"}),
    ({"any": [{"not": {"all": [c("country", "eq", "PT"), c("stage", "eq", "buying")]}}, c("revenue", "gt", 9000)]},
     {"bob", "carla", "dan"}),
    ({"all": [c("country", "eq", "PT"), c("age_band", "in", ["25-29", "30-39"]), c("revenue", "gt", 1000),
              {"event": "Product Added", "op": ">=", "count": 2, "within_days": 14}]}, {"ana"}),
    ({"any": [{"event": "Product Added", "op": ">=", "count": 3}, {"kind": "email_open", "op": ">=", "count": 2}]},
     {"ana", "bob"}),
    ({"not": {"event": "Product Added", "op": ">=", "count": 1, "within_days": 14}}, {"carla", "dan"}),
    # contact conditions beside order facts narrow the facts' aggregate; the answers must not change
    ({"all": [c("country", "eq", "PT"), c("order_count", "eq", 0)]}, {"carla"}),
    ({"all": [c("country", "neq", "PT"), c("order_count", "eq", 0)]}, {"dan"}),
    ({"all": [c("traits.plan", "is_set"), c("days_since_last_order", "gte", 2)]}, {"ana", "bob"}),
    ({"all": [c("country", "eq", "ES"), {"not": c("revenue", "lt", 10000)}]}, {"bob"}),
    # the stage is an outer join of the main statement, beside narrowed order facts and inside NOT
    ({"all": [c("stage", "neq", "lapsed"), c("order_count", "eq", 0)]}, {"carla", "dan"}),
    ({"all": [c("stage", "in", ["buying", "lapsed"]), c("revenue", "gte", 8000)]}, {"ana", "bob"}),
    ({"not": {"any": [c("stage", "eq", "buying"), c("order_count", "gte", 1)]}}, {"carla", "dan"}),
]  # fmt: skip


@pytest.mark.parametrize(("rules", "expected"), CONTACT_CASES, ids=lambda v: str(v)[:60])
def test_contact_attributes(select: Callable[[dict[str, Any]], set[str]], rules: Any, expected: Any) -> None:
    assert select(rules) == expected


@pytest.mark.parametrize(("rules", "expected"), ORDER_CASES, ids=lambda v: str(v)[:60])
def test_order_facts(select: Callable[[dict[str, Any]], set[str]], rules: Any, expected: Any) -> None:
    assert select(rules) == expected


@pytest.mark.parametrize(("rules", "expected"), TRAIT_CASES, ids=lambda v: str(v)[:60])
def test_traits(select: Callable[[dict[str, Any]], set[str]], rules: Any, expected: Any) -> None:
    assert select(rules) == expected


@pytest.mark.parametrize(("rules", "expected"), BEHAVIOUR_CASES, ids=lambda v: str(v)[:60])
def test_behaviour(select: Callable[[dict[str, Any]], set[str]], rules: Any, expected: Any) -> None:
    assert select(rules) == expected


@pytest.mark.parametrize(("rules", "expected"), TREE_CASES, ids=lambda v: str(v)[:60])
def test_nested_groups(select: Callable[[dict[str, Any]], set[str]], rules: Any, expected: Any) -> None:
    assert select(rules) == expected


@pytest.mark.parametrize(("rules", "_expected"), CONTACT_CASES + ORDER_CASES + TRAIT_CASES + BEHAVIOUR_CASES)
def test_not_is_the_exact_complement(select: Callable[[dict[str, Any]], set[str]], rules: Any, _expected: Any) -> None:
    assert select({"not": rules}) == ALL - select(rules)


def test_other_workspaces_are_invisible(
    select: Callable[[dict[str, Any]], set[str]], session: Any, make: Any, people: dict[str, int]
) -> None:
    from storefunnel.workspaces.service import create_workspace

    other = create_workspace(session, "segments-other-store")
    stranger = make.contact(session, other.id, email="ana@shop.pt", country="PT")
    make.order(session, other.id, stranger, total=10**9)
    make.touch(session, other.id, stranger, kind="track", event="Product Added")
    assert select(c("country", "eq", "PT")) == {"ana", "carla"}
    assert select(c("revenue", "gt", 10**8)) == set()
