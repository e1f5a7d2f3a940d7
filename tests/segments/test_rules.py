"""Bad rules are refused with the JSON path of the bad node; good ones parse to a tree."""

from __future__ import annotations

from typing import Any

import pytest

from storefunnel.errors import Invalid
from storefunnel.segments.rules import Behaviour, Condition, Group, Membership, Not, parse_rules

PT = {"field": "country", "op": "eq", "value": "PT"}


def deep(levels: int) -> dict[str, Any]:
    rule: dict[str, Any] = PT
    for _ in range(levels - 1):
        rule = {"all": [rule]}
    return rule


BAD = [
    ({"all": [PT, PT, {"any": [{"field": "colour", "op": "eq", "value": "red"}]}]}, "rules.all[2].any[0].field"),
    ({"all": [PT, PT, {"any": [{"field": "country", "op": "gt", "value": "PT"}]}]}, "rules.all[2].any[0].op"),
    ({"field": "order_count", "op": "gte", "value": "3"}, "rules.value"),
    ({"field": "order_count", "op": "gte", "value": 2.5}, "rules.value"),
    ({"field": "revenue", "op": "between", "value": [10, 1]}, "rules.value"),
    ({"field": "revenue", "op": "between", "value": [1]}, "rules.value"),
    ({"field": "country", "op": "in", "value": ["PT", 3]}, "rules.value[1]"),
    ({"field": "country", "op": "in", "value": []}, "rules.value"),
    ({"field": "country", "op": "is_set", "value": "x"}, "rules.value"),
    ({"field": "country", "op": "contains", "value": ""}, "rules.value"),
    ({"field": "stage", "op": "eq", "value": "shopping"}, "rules.value"),
    ({"field": "age_band", "op": "in", "value": ["25-29", "26-30"]}, "rules.value[1]"),
    ({"field": "created_at", "op": "before", "value": "yesterday"}, "rules.value"),
    ({"field": "created_at", "op": "within_last_days", "value": 0}, "rules.value"),
    ({"field": "created_at", "op": "between", "value": ["2026-02-01", "2026-01-01"]}, "rules.value"),
    ({"field": "created_at", "op": "eq", "value": "2026-01-01"}, "rules.op"),
    ({"field": "email_consent", "op": "eq", "value": True}, "rules.op"),
    ({"field": "traits.plan", "op": "gt", "value": "gold"}, "rules.value"),
    ({"field": "traits.a'b", "op": "eq", "value": "x"}, "rules.field"),
    ({"field": "traits.vip", "op": "eq", "value": True}, "rules.value"),
    ({"field": "country", "op": "eq", "value": "PT", "extra": 1}, "rules.extra"),
    ({"all": []}, "rules.all"),
    ({"any": {"field": "country"}}, "rules.any"),
    ({"all": [PT, "PT"]}, "rules.all[1]"),
    ({"not": {"all": []}}, "rules.not.all"),
    ({"all": [PT], "any": [PT]}, "rules.any"),
    ({"color": "red"}, "rules"),
    ({"event": "Product Added", "op": "gte", "count": 2}, "rules.op"),
    ({"event": "Product Added", "op": ">=", "count": -1}, "rules.count"),
    ({"event": "Product Added", "op": ">=", "count": 1, "within_days": 0}, "rules.within_days"),
    ({"event": "", "op": ">=", "count": 1}, "rules.event"),
    ({"event": "Product Added", "since": 3}, "rules.since"),
    ({"segment": "vip", "op": "in"}, "rules.segment"),
    ({"segment": 3, "op": "eq"}, "rules.op"),
    (deep(11), "rules" + ".all[0]" * 10),
]


@pytest.mark.parametrize(("rules", "path"), BAD, ids=lambda v: str(v)[:50])
def test_bad_rule_names_the_path(rules: Any, path: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_rules(rules)
    assert info.value.errors
    assert info.value.errors[0]["path"] == path
    assert info.value.detail.startswith(path + ":")


def test_too_many_nodes() -> None:
    with pytest.raises(Invalid) as info:
        parse_rules({"any": [PT] * 200})
    assert info.value.errors == [{"path": "rules", "message": "a rule may have at most 200 nodes; this one has 201"}]
    parse_rules({"any": [PT] * 199})


def test_ten_levels_are_allowed() -> None:
    parse_rules(deep(10))


def test_every_bad_node_is_reported() -> None:
    with pytest.raises(Invalid) as info:
        parse_rules({"all": [{"field": "x", "op": "eq"}, PT, {"field": "country", "op": "gt", "value": 1}]})
    assert [e["path"] for e in info.value.errors or []] == ["rules.all[0].field", "rules.all[2].op"]
    assert "(and 1 more)" in info.value.detail


def test_good_rule_parses_to_a_tree() -> None:
    tree = parse_rules(
        {
            "all": [
                PT,
                {"not": {"field": "traits.plan", "op": "in", "value": ["gold"]}},
                {"event": "Product Added", "op": ">=", "count": 2, "within_days": 14, "channel": "Email"},
                {"segment": 7, "op": "not_in"},
            ]
        }
    )
    assert isinstance(tree, Group)
    pt, negated, behaviour, member = tree.children
    assert pt == Condition(field="country", kind="string", op="eq", value="PT")
    assert isinstance(negated, Not)
    assert negated.child == Condition(field="traits.plan", kind="string", op="in", value=["gold"], trait_path=("plan",))
    assert behaviour == Behaviour(event="Product Added", op=">=", count=2, within_days=14, channel="Email")
    assert member == Membership(segment=7, op="not_in", path="rules.all[3].segment")
