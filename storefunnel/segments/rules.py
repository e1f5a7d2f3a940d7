"""The segment rule language: JSON in, a typed tree out, or every bad node named by its JSON path.

A rule is a tree of groups (``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``) over
conditions on a contact (``{"field": "country", "op": "eq", "value": "PT"}``), its behaviour
(``{"event": "Product Added", "op": ">=", "count": 2, "within_days": 14}``) and its membership of
other segments (``{"segment": 3, "op": "in"}``). Parsing is hand-written rather than a pydantic
union so that an error points at the exact node (``rules.all[2].any[0].op``), which is what a
person fixing a rule in a form needs.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from storefunnel.errors import Invalid
from storefunnel.models.contact import AgeBand, Stage

MAX_DEPTH = 10
MAX_NODES = 200
MAX_LIST = 1000
MAX_WITHIN_DAYS = 36500

FieldType = Literal["string", "number", "date", "bool", "trait"]

# Field name -> type. The type decides which operators a condition may use.
FIELDS: dict[str, FieldType] = {
    "email": "string",
    "country": "string",
    "region": "string",
    "city": "string",
    "age_band": "string",
    "gender": "string",
    "stage": "string",
    "lead_channel": "string",
    "email_consent": "bool",
    "created_at": "date",
    "lead_at": "date",
    "order_count": "number",
    "revenue": "number",
    "first_order_at": "date",
    "last_order_at": "date",
    "days_since_last_order": "number",
    "rfm.recency": "number",
    "rfm.frequency": "number",
    "rfm.monetary": "number",
}
ORDER_FIELDS = frozenset({"order_count", "revenue", "first_order_at", "last_order_at", "days_since_last_order"})
RFM_FIELDS = frozenset({"rfm.recency", "rfm.frequency", "rfm.monetary"})
ENUM_VALUES: dict[str, frozenset[str]] = {
    "stage": frozenset(s.value for s in Stage),
    "age_band": frozenset(a.value for a in AgeBand),
}

STRING_OPS = ("eq", "neq", "in", "not_in", "contains", "starts_with", "is_set", "is_not_set")
NUMBER_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "between", "in")
DATE_OPS = ("before", "after", "between", "within_last_days", "not_within_last_days", "is_set", "is_not_set")
BOOL_OPS = ("is_true", "is_false")
TRAIT_OPS = tuple(dict.fromkeys(STRING_OPS + NUMBER_OPS + BOOL_OPS))
OPS_BY_TYPE: dict[FieldType, tuple[str, ...]] = {
    "string": STRING_OPS,
    "number": NUMBER_OPS,
    "date": DATE_OPS,
    "bool": BOOL_OPS,
    "trait": TRAIT_OPS,
}
NO_VALUE_OPS = frozenset({"is_set", "is_not_set", "is_true", "is_false"})
COUNT_OPS = (">=", ">", "=", "<=", "<", "!=")
TRAIT_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)


class Group(Node):
    """``all`` (AND) or ``any`` (OR) of one or more children."""

    mode: Literal["all", "any"]
    children: tuple[Node, ...]


class Not(Node):
    child: Node


class Condition(Node):
    """A contact attribute or order fact compared with a value; ``kind`` is the field's resolved type."""

    field: str
    kind: Literal["string", "number", "date", "bool"]
    op: str
    value: Any = None
    trait_path: tuple[str, ...] = ()


class Behaviour(Node):
    """How many touches of an event (or kind), optionally on one channel, within the last N days."""

    event: str | None = None
    touch_kind: str | None = None
    channel: str | None = None
    op: str
    count: int
    within_days: int | None = None


class Membership(Node):
    segment: int
    op: Literal["in", "not_in"]
    path: str


class RuleErrors:
    """Collects ``{"path", "message"}`` pairs so one response can name every bad node."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            raise invalid(self.items)


def invalid(items: list[dict[str, str]]) -> Invalid:
    first = f"{items[0]['path']}: {items[0]['message']}"
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return Invalid(first + more, errors=items)


def parse_rules(raw: Any, path: str = "rules") -> Node:
    """Validate ``raw`` and return its tree, or raise Invalid naming every bad node's path."""
    parser = _Parser()
    node = parser.node(raw, path, 1)
    if parser.count > MAX_NODES:
        parser.errors.add(path, f"a rule may have at most {MAX_NODES} nodes; this one has {parser.count}")
    parser.errors.raise_if_any()
    assert node is not None
    return node


def referenced_segments(node: Node) -> list[Membership]:
    """Every membership condition in the tree, in document order."""
    if isinstance(node, Membership):
        return [node]
    if isinstance(node, Group):
        return [m for child in node.children for m in referenced_segments(child)]
    if isinstance(node, Not):
        return referenced_segments(node.child)
    return []


def fields_used(node: Node) -> set[str]:
    if isinstance(node, Condition):
        return {node.field}
    if isinstance(node, Group):
        return set().union(*(fields_used(c) for c in node.children))
    if isinstance(node, Not):
        return fields_used(node.child)
    return set()


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_datetime(v: Any) -> dt.datetime | None:
    """ISO 8601 date or date-time; a date means its midnight UTC, a naive time means UTC."""
    if not isinstance(v, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


class _Parser:
    def __init__(self) -> None:
        self.errors = RuleErrors()
        self.count = 0

    def node(self, raw: Any, path: str, depth: int) -> Node | None:
        self.count += 1
        if depth > MAX_DEPTH:
            self.errors.add(path, f"rules may nest at most {MAX_DEPTH} levels deep")
            return None
        if not isinstance(raw, dict):
            self.errors.add(path, "expected an object: a group (all/any/not) or a condition")
            return None
        for key in ("all", "any"):
            if key in raw:
                return self.group(raw, key, path, depth)
        if "not" in raw:
            self._no_extra(raw, {"not"}, path)
            child = self.node(raw["not"], f"{path}.not", depth + 1)
            return Not(child=child) if child is not None else None
        if "field" in raw:
            return self.condition(raw, path)
        if "event" in raw or "kind" in raw:
            return self.behaviour(raw, path)
        if "segment" in raw:
            return self.membership(raw, path)
        self.errors.add(path, "expected one of the keys all, any, not, field, event, kind or segment")
        return None

    def _no_extra(self, raw: dict[str, Any], allowed: set[str], path: str) -> bool:
        extra = sorted(set(raw) - allowed)
        for key in extra:
            self.errors.add(f"{path}.{key}", f"unknown key {key!r} here; allowed: {', '.join(sorted(allowed))}")
        return not extra

    def group(self, raw: dict[str, Any], key: Literal["all", "any"], path: str, depth: int) -> Node | None:
        self._no_extra(raw, {key}, path)
        items = raw[key]
        if not isinstance(items, list):
            self.errors.add(f"{path}.{key}", "expected a list of rules")
            return None
        if not items:
            self.errors.add(f"{path}.{key}", "a group needs at least one rule")
            return None
        children = [self.node(item, f"{path}.{key}[{i}]", depth + 1) for i, item in enumerate(items)]
        if any(c is None for c in children):
            return None
        return Group(mode=key, children=tuple(c for c in children if c is not None))

    def condition(self, raw: dict[str, Any], path: str) -> Node | None:
        self._no_extra(raw, {"field", "op", "value"}, path)
        field = raw["field"]
        if not isinstance(field, str):
            self.errors.add(f"{path}.field", "expected a field name")
            return None
        trait_path: tuple[str, ...] = ()
        ftype: FieldType
        if field.startswith("traits."):
            trait_path = tuple(field.split(".")[1:])
            if not all(TRAIT_KEY.fullmatch(k) for k in trait_path):
                self.errors.add(f"{path}.field", "trait keys are 1-64 letters, digits, '_' or '-', joined by '.'")
                return None
            ftype = "trait"
        elif field in FIELDS:
            ftype = FIELDS[field]
        else:
            self.errors.add(f"{path}.field", f"unknown field {field!r}; known: {', '.join(FIELDS)}, traits.<key>")
            return None
        op = raw.get("op")
        allowed = OPS_BY_TYPE[ftype]
        if op not in allowed:
            shown = "trait" if ftype == "trait" else f"{ftype} field"
            self.errors.add(
                f"{path}.op", f"{op!r} is not an operator for {shown} {field!r}; use one of {', '.join(allowed)}"
            )
            return None
        assert isinstance(op, str)
        vpath = f"{path}.value"
        value = raw.get("value")
        if op in NO_VALUE_OPS:
            if value is not None:
                self.errors.add(vpath, f"{op} takes no value")
                return None
            kind: Literal["string", "number", "date", "bool"]
            if ftype == "trait":
                kind = "bool" if op in BOOL_OPS else "string"
            else:
                kind = ftype
            return Condition(field=field, kind=kind, op=op, trait_path=trait_path)
        if ftype == "trait":
            probe = value[0] if isinstance(value, list) and value else value
            if isinstance(probe, str) and op in STRING_OPS:
                kind = "string"
            elif _is_number(probe) and op in NUMBER_OPS:
                kind = "number"
            else:
                self.errors.add(vpath, f"{op} on a trait needs a string or a number value (or a list for in/not_in)")
                return None
        else:
            kind = ftype
        checked = self._value(kind, field, op, value, vpath)
        if checked is _BAD:
            return None
        return Condition(field=field, kind=kind, op=op, value=checked, trait_path=trait_path)

    def _value(self, kind: str, field: str, op: str, value: Any, vpath: str) -> Any:
        integer_only = kind == "number" and field in FIELDS
        if kind == "string":
            if op in ("in", "not_in"):
                return self._list(value, vpath, lambda v: isinstance(v, str), "strings", field)
            if not isinstance(value, str) or (op in ("contains", "starts_with") and not value):
                self.errors.add(vpath, f"{op} needs a {'non-empty ' if op != 'eq' else ''}string")
                return _BAD
            if op in ("eq", "neq") and not self._enum_ok(field, value, vpath):
                return _BAD
            return value
        if kind == "number":
            ok = _is_int if integer_only else _is_number
            what = "integers" if integer_only else "numbers"
            if op == "in":
                return self._list(value, vpath, ok, what, field)
            if op == "between":
                if not (isinstance(value, list) and len(value) == 2 and all(ok(v) for v in value)):
                    self.errors.add(vpath, f"between needs [low, high], two {what}")
                    return _BAD
                if value[0] > value[1]:
                    self.errors.add(vpath, "between needs low <= high")
                    return _BAD
                return list(value)
            if not ok(value):
                self.errors.add(vpath, f"{op} needs {'an integer' if integer_only else 'a number'}")
                return _BAD
            return value
        # dates
        if op in ("within_last_days", "not_within_last_days"):
            if not (_is_int(value) and 0 < value <= MAX_WITHIN_DAYS):
                self.errors.add(vpath, f"{op} needs a whole number of days from 1 to {MAX_WITHIN_DAYS}")
                return _BAD
            return value
        if op == "between":
            parsed = [parse_datetime(v) for v in value] if isinstance(value, list) and len(value) == 2 else None
            if parsed is None or any(p is None for p in parsed):
                self.errors.add(vpath, "between needs [start, end], two ISO 8601 dates or date-times")
                return _BAD
            if parsed[0] > parsed[1]:  # type: ignore[operator]
                self.errors.add(vpath, "between needs start <= end")
                return _BAD
            return list(value)
        if parse_datetime(value) is None:
            self.errors.add(vpath, f"{op} needs an ISO 8601 date or date-time, e.g. 2026-11-01T00:00:00Z")
            return _BAD
        return value

    def _list(self, value: Any, vpath: str, ok: Any, what: str, field: str) -> Any:
        if not isinstance(value, list) or not value:
            self.errors.add(vpath, f"expected a non-empty list of {what}")
            return _BAD
        if len(value) > MAX_LIST:
            self.errors.add(vpath, f"at most {MAX_LIST} values")
            return _BAD
        good = True
        for i, v in enumerate(value):
            if not ok(v):
                self.errors.add(f"{vpath}[{i}]", f"expected {what[:-1]}")
                good = False
            elif isinstance(v, str) and not self._enum_ok(field, v, f"{vpath}[{i}]"):
                good = False
        return list(value) if good else _BAD

    def _enum_ok(self, field: str, value: str, vpath: str) -> bool:
        allowed = ENUM_VALUES.get(field)
        if allowed is not None and value not in allowed:
            self.errors.add(vpath, f"{value!r} is not a {field}; one of {', '.join(sorted(allowed))}")
            return False
        return True

    def behaviour(self, raw: dict[str, Any], path: str) -> Node | None:
        if not self._no_extra(raw, {"event", "kind", "channel", "op", "count", "within_days"}, path):
            return None
        good = True
        for key in ("event", "kind", "channel"):
            v = raw.get(key)
            if v is not None and not (isinstance(v, str) and 0 < len(v) <= 200):
                self.errors.add(f"{path}.{key}", "expected a non-empty string")
                good = False
        op, count, within = raw.get("op", ">="), raw.get("count", 1), raw.get("within_days")
        if op not in COUNT_OPS:
            self.errors.add(f"{path}.op", f"{op!r} is not a count operator; use one of {', '.join(COUNT_OPS)}")
            good = False
        if not (_is_int(count) and count >= 0):
            self.errors.add(f"{path}.count", "expected a whole number >= 0")
            good = False
        if within is not None and not (_is_int(within) and 0 < within <= MAX_WITHIN_DAYS):
            self.errors.add(f"{path}.within_days", f"expected a whole number of days from 1 to {MAX_WITHIN_DAYS}")
            good = False
        if not good:
            return None
        return Behaviour(
            event=raw.get("event"),
            touch_kind=raw.get("kind"),
            channel=raw.get("channel"),
            op=op,
            count=count,
            within_days=within,
        )

    def membership(self, raw: dict[str, Any], path: str) -> Node | None:
        if not self._no_extra(raw, {"segment", "op"}, path):
            return None
        seg, op = raw["segment"], raw.get("op", "in")
        good = True
        if not (_is_int(seg) and seg > 0):
            self.errors.add(f"{path}.segment", "expected a segment id")
            good = False
        if op not in ("in", "not_in"):
            self.errors.add(f"{path}.op", f"{op!r} is not a membership operator; use in or not_in")
            good = False
        return Membership(segment=seg, op=op, path=f"{path}.segment") if good else None


_BAD: Any = object()
