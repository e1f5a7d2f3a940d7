"""The sales-cycle rules: tunable per workspace, and spelled out once as a plain state machine.

``replay`` is the readable definition of the rules, event by event, for one contact. The set-based SQL in
``engine`` must produce exactly the same history; the property tests and the benchmark hold it to that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from storefunnel.models.contact import Stage

SETTINGS_KEY = "cycle"
STAGE_ORDER: tuple[str, ...] = tuple(s.value for s in Stage)

# Reasons recorded on each transition: what moved the contact.
CREATED, TOUCH, INTENT, THANK_YOU, ORDER, WINDOW_END, LAPSE = (
    "created",
    "touch",
    "intent",
    "thank_you",
    "order",
    "window_end",
    "lapse",
)

DEFAULT_INTENT_EVENTS = [
    "Product Viewed",
    "Product Added",
    "Cart Viewed",
    "Checkout Started",
    "Coupon Applied",
    "Payment Info Entered",
]


class CycleRules(BaseModel):
    """The knobs of the cycle; stored in ``workspaces.settings["cycle"]`` (only what differs need be stored)."""

    model_config = ConfigDict(extra="forbid")

    intent_events: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INTENT_EVENTS),
        max_length=100,
        description="Track event names that show buying intent; the first one moves a non-customer to conversion.",
    )
    thank_you_events: list[str] = Field(
        default_factory=lambda: ["Thank You Sent"],
        max_length=100,
        description="Track event names that are a thank-you by themselves.",
    )
    thank_you_flow: str = Field(
        default="thank_you",
        min_length=1,
        max_length=100,
        description='A touch whose properties have "flow" equal to this value is a thank-you too.',
    )
    thank_you_window_days: int = Field(
        default=7, ge=1, le=365, description="Days after the last order in which a thank-you counts."
    )
    lapse_days: int = Field(
        default=90, ge=2, le=3650, description="Days without any touch or order after which a contact is lapsed."
    )
    cancelled_statuses: list[str] = Field(
        default_factory=lambda: ["cancelled", "refunded"],
        max_length=20,
        description="Order statuses that do not count as buying.",
    )

    @field_validator("intent_events", "thank_you_events", "cancelled_statuses")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value]
        if any(not v or len(v) > 200 for v in cleaned):
            raise ValueError("names must be 1 to 200 characters")
        return sorted(set(cleaned), key=cleaned.index)

    @field_validator("lapse_days")
    @classmethod
    def _lapse_after_window(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("thank_you_window_days")
        if window is not None and value <= window:
            raise ValueError(f"must be greater than thank_you_window_days ({window})")
        return value


def rules_from_settings(settings: dict[str, Any] | None) -> CycleRules:
    return CycleRules.model_validate((settings or {}).get(SETTINGS_KEY) or {})


@dataclass(frozen=True)
class Transition:
    """One row of a contact's stage history."""

    at: dt.datetime
    from_stage: str | None
    stage: str
    reason: str


@dataclass(frozen=True)
class TouchFact:
    at: dt.datetime
    event: str | None = None
    flow: str | None = None


def replay(
    rules: CycleRules,
    created_at: dt.datetime,
    touches: Iterable[TouchFact],
    orders: Iterable[dt.datetime],
    as_of: dt.datetime,
) -> list[Transition]:
    """The stage history of one contact, event by event (see docs/cycle.md for every edge case).

    Facts after ``as_of`` are ignored; timed transitions (window end, lapse) happen at their due time if it is
    not after ``as_of``. At equal times: window end, then lapse, then creation, touches, orders. When several
    things happen at one instant only the stage after the last of them is recorded.
    """
    window = dt.timedelta(days=rules.thank_you_window_days)
    lapse = dt.timedelta(days=rules.lapse_days)
    intent_events = set(rules.intent_events)
    thank_events = set(rules.thank_you_events)
    # (at, priority, kind, intent, thank): priority orders things that happen at the same instant.
    events: list[tuple[dt.datetime, int, str, bool, bool]] = []
    if created_at <= as_of:
        events.append((created_at, 0, CREATED, False, False))
    for t in touches:
        if t.at <= as_of:
            thank = t.event in thank_events or t.flow == rules.thank_you_flow
            events.append((t.at, 3, TOUCH, t.event in intent_events, thank))
    events.extend((at, 4, ORDER, False, False) for at in orders if at <= as_of)
    events.sort(key=lambda e: (e[0], e[1]))

    steps: list[tuple[dt.datetime, str, str]] = []
    stage: str | None = None
    last_order: dt.datetime | None = None
    window_open = False
    last_activity: dt.datetime | None = None

    def fire_timers(until: dt.datetime, is_order: bool, final: bool) -> None:
        nonlocal stage, window_open
        if window_open and last_order is not None:
            due = last_order + window
            if due <= as_of and (due < until or (due == until and not is_order) or final):
                stage, window_open = Stage.keeping_in_touch.value, False
                steps.append((due, stage, WINDOW_END))
        if last_activity is not None and stage != Stage.lapsed.value:
            due = last_activity + lapse
            if due <= as_of and (due < until or final):
                stage = Stage.lapsed.value
                steps.append((due, stage, LAPSE))

    for at, _prio, kind, intent, thank in events:
        fire_timers(at, kind == ORDER, final=False)
        last_activity = at
        if kind == ORDER:
            stage, last_order, window_open = Stage.buying.value, at, True
            steps.append((at, stage, ORDER))
            continue
        reason = CREATED if kind == CREATED else TOUCH
        if last_order is not None:  # a customer
            if window_open and thank and at < last_order + window:
                stage, reason = Stage.thanked.value, THANK_YOU
            elif stage == Stage.lapsed.value:
                stage = Stage.keeping_in_touch.value
        else:
            if intent:
                reason = INTENT
            if stage in (None, Stage.lapsed.value):
                stage = Stage.conversion.value if intent else Stage.prospecting.value
            elif intent:
                stage = Stage.conversion.value
        assert stage is not None
        steps.append((at, stage, reason))
    fire_timers(as_of, False, final=True)

    history: list[Transition] = []
    for i, (at, st, reason) in enumerate(steps):
        if i + 1 < len(steps) and steps[i + 1][0] == at:
            continue  # only the last step of an instant counts
        previous = history[-1].stage if history else None
        if st != previous:
            history.append(Transition(at, previous, st, reason))
    return history
