"""Marketing or sales? The owner's advice, from the store's own data.

"How many leads are you getting, and what % of them are converting? ... Do you need to improve your marketing,
or do you need to improve your sales?" The advice compares the last ``days`` days with the ``days`` before, stage
by stage of the five-step cycle, and only calls a change a problem when it is both large (``MIN_CHANGE``) and
unlikely to be noise (``ALPHA``):

1. prospecting (marketing): new leads per day, exact Poisson rate ratio;
2. conversion (sales): first orders of leads, standardised by days since the lead (a period with fewer fresh
   leads is not blamed on sales), Mantel-Haenszel rate ratio;
3. buying experience (sales): started checkouts that end in an order within a day;
4. thank you (sales): orders followed by a thank-you within the cycle's window (from the stage history); also a
   problem when under ``THANK_YOU_FLOOR`` whatever the trend, since a missing thank-you never "drops";
5. keeping in touch (sales): repeat orders of customers, standardised by days since their first order.

Owner targets (weekly leads, 30-day conversion), when set, are tested too. The focus is the side with a problem,
the one losing more customers when both do, or ``unclear`` (nothing significant, or too little data).
"""

from __future__ import annotations

import datetime as dt
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps
from sqlalchemy.orm import Session

from storefunnel.cycle.service import get_rules
from storefunnel.errors import Invalid
from storefunnel.insight.engine import Columns, Runner, workspace_currency
from storefunnel.insight.facts import Period, buyers, flag, seconds_between, table, valid_orders
from storefunnel.insight.stats import RateRatio, poisson_rate_ratio, proportion_ratio, standardised_rate_ratio
from storefunnel.models import Workspace
from storefunnel.workspaces.service import set_setting

DEFAULT_DAYS = 28
MAX_DAYS = 366
ALPHA = 0.01  # a change is significant below this two-sided p-value
MIN_CHANGE = 0.10  # ... and only matters when at least this large (relative)
THANK_YOU_FLOOR = 0.5  # fewer orders thanked than this is a problem on its own
LEAD_AGE_DAYS = 90  # conversions later than this after the lead are not compared
CUSTOMER_AGE_DAYS = 365  # repeat orders later than this after the first are not compared
CONVERSION_WINDOW_DAYS = 30
CHECKOUT_EVENTS = ("Checkout Started",)
CHECKOUT_COMPLETION_S = 86_400
MIN_EVENTS = 20  # fewer events in both periods together: not enough to say
NO_CHANNEL = "Unassigned"
SETTINGS_KEY = "advice"

STAGES = (
    (1, "prospecting", "marketing", "New leads per day"),
    (2, "conversion", "sales", "Leads becoming customers"),
    (3, "buying", "sales", "Checkouts completed"),
    (4, "thanked", "sales", "Orders thanked"),
    (5, "keeping_in_touch", "sales", "Repeat orders of customers"),
)


class Targets(BaseModel):
    """What the owner aims at; either may be left unset."""

    model_config = ConfigDict(extra="forbid")

    leads_per_week: float | None = Field(default=None, gt=0, le=10_000_000)
    conversion_rate: float | None = Field(
        default=None, gt=0, lt=1, description=f"Share of leads buying within {CONVERSION_WINDOW_DAYS} days."
    )


def get_targets(session: Session, workspace_id: int) -> Targets:
    ws = session.get(Workspace, workspace_id)
    return Targets.model_validate((ws.settings or {}).get(SETTINGS_KEY, {}) if ws else {})


def set_targets(session: Session, workspace_id: int, targets: Targets) -> Targets:
    if session.get(Workspace, workspace_id) is None:
        raise Invalid("workspace: not found")
    set_setting(session, workspace_id, SETTINGS_KEY, targets.model_dump(mode="json"))
    return targets


def default_period(last: dt.date | None = None, days: int = DEFAULT_DAYS) -> Period:
    """The ``days`` days ending on ``last`` (default: yesterday, the last whole UTC day)."""
    last = last or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return Period(last - dt.timedelta(days=days - 1), last)


def previous_of(current: Period) -> Period:
    """The period of the same length just before ``current``: what it is compared with."""
    if not 7 <= current.days <= MAX_DAYS:
        raise Invalid(f"from: the period must span 7 to {MAX_DAYS} days (it spans {current.days})")
    return Period(current.first - dt.timedelta(days=current.days), current.first - dt.timedelta(days=1))


# --- queries ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def query_leads(workspace_id: int, since: dt.datetime, until: dt.datetime) -> ir.Table:
    """New leads by day and lead channel."""
    c = table("contacts")
    c = c.filter(c.workspace_id == workspace_id, c.lead_at >= since, c.lead_at < until)
    return c.group_by(day=c.lead_at.date(), channel=c.lead_channel.fill_null(NO_CHANNEL)).aggregate(n=c.count())


@lru_cache(maxsize=64)
def query_first_orders(workspace_id: int, since: dt.datetime, until: dt.datetime) -> ir.Table:
    """First orders of leads placed in [since, until), by (lead day, order day)."""
    b = buyers(workspace_id, until)
    b = b.filter(b.first_at >= since)
    c = table("contacts")
    c = c.filter(c.workspace_id == workspace_id, c.lead_at.notnull()).select(cid=c.id, lead_at=c.lead_at)
    j = b.join(c, b.contact_id == c.cid)
    return j.group_by(entry_day=j.lead_at.date(), day=j.first_at.date()).aggregate(n=j.count())


@lru_cache(maxsize=64)
def query_new_customers(workspace_id: int, since: dt.datetime, until: dt.datetime) -> ir.Table:
    """Contacts whose first order fell in [since, until), by its day."""
    b = buyers(workspace_id, until)
    b = b.filter(b.first_at >= since)
    return b.group_by(day=b.first_at.date()).aggregate(n=b.count())


@lru_cache(maxsize=64)
def query_repeat_orders(workspace_id: int, since: dt.datetime, until: dt.datetime) -> ir.Table:
    """Orders after a customer's first, placed in [since, until), by (first-order day, order day)."""
    b = buyers(workspace_id, until).select(cid="contact_id", first_at="first_at")
    o = valid_orders(workspace_id)
    o = o.filter(o.placed_at >= since, o.placed_at < until)
    j = o.join(b, o.contact_id == b.cid)
    j = j.filter(j.placed_at > j.first_at)
    return j.group_by(entry_day=j.first_at.date(), day=j.placed_at.date()).aggregate(n=j.count())


@lru_cache(maxsize=64)
def query_checkouts(
    workspace_id: int, since: dt.datetime, split: dt.datetime, until: dt.datetime, events: tuple[str, ...]
) -> ir.Table:
    """Started checkouts (one per contact and day) before and after ``split``, and how many ended in an order
    within a day. Checkouts in the last day before ``until`` have not had their day yet and are left out."""
    t = table("touches")
    cutoff = until - dt.timedelta(seconds=CHECKOUT_COMPLETION_S)
    t = t.filter(
        t.workspace_id == workspace_id,
        t.contact_id.notnull(),
        t.event.isin(events),
        t.occurred_at >= since,
        t.occurred_at < cutoff,
    )
    ck = t.group_by(cid=t.contact_id, day=t.occurred_at.date()).aggregate(at=t.occurred_at.min())
    o = valid_orders(workspace_id)
    o = o.filter(o.placed_at >= since, o.placed_at < until).select(ocid=o.contact_id, placed_at=o.placed_at)
    j = ck.left_join(
        o,
        [ck.cid == o.ocid, o.placed_at >= ck.at, seconds_between(o.placed_at, ck.at) <= CHECKOUT_COMPLETION_S],
    )
    per = j.group_by("cid", "day", "at").aggregate(done=flag(j.placed_at.notnull()).max())
    return per.group_by(current=flag(per.at >= split)).aggregate(checkouts=per.count(), completed=per.done.sum())


@lru_cache(maxsize=64)
def query_thank_you(workspace_id: int, since: dt.datetime, split: dt.datetime, until: dt.datetime) -> ir.Table:
    """Entries into ``buying`` in [since, until), before and after ``split``, and how many went on to ``thanked``."""
    s = table("stage_changes")
    s = s.filter(s.workspace_id == workspace_id, s.changed_at >= since)
    w = ibis.window(group_by=s.contact_id, order_by=[s.changed_at, s.id])
    s = s.mutate(next_stage=s.stage.lead().over(w))
    b = s.filter(s.stage == "buying", s.changed_at < until)
    return b.group_by(current=flag(b.changed_at >= split)).aggregate(
        orders=b.count(), thanked=flag(b.next_stage == "thanked").sum()
    )


@lru_cache(maxsize=64)
def query_orders(workspace_id: int, since: dt.datetime, split: dt.datetime, until: dt.datetime) -> ir.Table:
    o = valid_orders(workspace_id)
    o = o.filter(o.placed_at >= since, o.placed_at < until)
    return o.group_by(current=flag(o.placed_at >= split)).aggregate(orders=o.count())


# --- the math on counts -----------------------------------------------------------------------------------


def day_index(days: list[Any], origin: dt.date) -> npt.NDArray[np.int64]:
    return np.array([(d - origin).days for d in days], dtype=np.int64)


def exposure_by_age(
    entries_day: npt.NDArray[np.int64], entries_n: npt.NDArray[np.int64], first: int, last: int, max_age: int
) -> npt.NDArray[np.float64]:
    """Entity-days at each age 0..max_age-1 spent inside days ``first..last``: an entity entering on day e is at
    age a on day e + a, and each such day inside the period counts once."""
    out = np.zeros(max_age, dtype=np.float64)
    for e, n in zip(entries_day.tolist(), entries_n.tolist(), strict=True):
        lo, hi = max(first - e, 0), min(last - e, max_age - 1)
        if hi >= lo:
            out[lo : hi + 1] += n
    return out


def events_by_age(
    entry_day: npt.NDArray[np.int64],
    day: npt.NDArray[np.int64],
    n: npt.NDArray[np.int64],
    first: int,
    last: int,
    max_age: int,
) -> npt.NDArray[np.float64]:
    """Events on days ``first..last`` by the age of their entity that day (ages outside 0..max_age-1 dropped)."""
    age = day - entry_day
    keep = (day >= first) & (day <= last) & (age >= 0) & (age < max_age)
    counts = np.bincount(age[keep], weights=n[keep].astype(np.float64), minlength=max_age)
    return np.asarray(counts[:max_age], dtype=np.float64)


def age_standardised(
    entries: Columns, events: Columns, origin: dt.date, current: Period, previous: Period, max_age: int
) -> tuple[RateRatio, int]:
    """Events now against before, per entity-day of the same age (days since becoming a lead or a customer);
    and the number of events before."""
    e_day = day_index(entries["day"], origin)
    e_n = np.asarray(entries["n"], dtype=np.int64)
    v_entry = day_index(events["entry_day"], origin)
    v_day = day_index(events["day"], origin)
    v_n = np.asarray(events["n"], dtype=np.int64)
    spans = [((p.first - origin).days, (p.last - origin).days) for p in (current, previous)]
    (c0, c1), (p0, p1) = spans
    before = events_by_age(v_entry, v_day, v_n, p0, p1, max_age)
    ratio = standardised_rate_ratio(
        events_by_age(v_entry, v_day, v_n, c0, c1, max_age),
        exposure_by_age(e_day, e_n, c0, c1, max_age),
        before,
        exposure_by_age(e_day, e_n, p0, p1, max_age),
    )
    return ratio, int(before.sum())


def split_counts(cols: Columns, *names: str) -> tuple[dict[str, int], dict[str, int]]:
    """Rows flagged ``current`` 1/0 -> (current counts, previous counts) by column name."""
    now = dict.fromkeys(names, 0)
    before = dict.fromkeys(names, 0)
    for i, cur in enumerate(cols["current"]):
        target = now if cur else before
        for n in names:
            target[n] += int(cols[n][i] or 0)
    return now, before


@dataclass(frozen=True)
class StageReading:
    """One stage's number now and before, and what it means."""

    number: int
    stage: str
    side: str
    label: str
    metric: str
    current: float | None
    previous: float | None
    comparison: RateRatio | None
    status: str  # worse | better | steady | low | unknown
    text: str
    code: str = ""
    lost_customers: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def problem(self) -> bool:
        return self.status in ("worse", "low", "below_target")

    def as_dict(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "number": self.number,
            "stage": self.stage,
            "side": self.side,
            "label": self.label,
            "metric": self.metric,
            "current": self.current,
            "previous": self.previous,
            "change": None if c is None else c.change,
            "interval": None if c is None or c.change_interval is None else list(c.change_interval),
            "p_value": None if c is None else c.p_value,
            "status": self.status,
            "text": self.text,
        }


def judge(c: RateRatio, enough: bool) -> str:
    """worse / better when the change is significant and large enough, else steady (unknown without data)."""
    if not enough or c.ratio is None or c.p_value is None:
        return "unknown"
    if c.p_value < ALPHA and abs(c.ratio - 1.0) >= MIN_CHANGE:
        return "worse" if c.ratio < 1.0 else "better"
    return "steady"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.0%}"


def change_words(c: RateRatio) -> str:
    ci = c.change_interval
    tail = f", 95% interval {signed(ci[0])} to {signed(ci[1])}" if ci else ""
    return f"{signed(c.change)}{tail}"


@dataclass(frozen=True)
class Facts:
    """The counts the advice is computed from: plain columns, so the advice runs on any data (see ``advise``)."""

    leads: Columns  # day, channel, n
    first_orders: Columns  # entry_day, day, n
    new_customers: Columns  # day, n
    repeat_orders: Columns  # entry_day, day, n
    checkouts: Columns  # current, checkouts, completed
    thank_you: Columns  # current, orders, thanked
    orders: Columns  # current, orders (placed before the last thank-you window, as for thank_you)
    thank_you_window_days: int


def load_facts(runner: Runner, workspace_id: int, current: Period, previous: Period, window_days: int) -> Facts:
    start, split, end = previous.start, current.start, current.end
    lead_from = start - dt.timedelta(days=LEAD_AGE_DAYS)
    cust_from = start - dt.timedelta(days=CUSTOMER_AGE_DAYS)
    return Facts(
        leads=runner.run(query_leads(workspace_id, lead_from, end)),
        first_orders=runner.run(query_first_orders(workspace_id, start, end)),
        new_customers=runner.run(query_new_customers(workspace_id, cust_from, end)),
        repeat_orders=runner.run(query_repeat_orders(workspace_id, start, end)),
        checkouts=runner.run(query_checkouts(workspace_id, start, split, end, CHECKOUT_EVENTS)),
        thank_you=runner.run(query_thank_you(workspace_id, start, split, end - dt.timedelta(days=window_days))),
        orders=runner.run(query_orders(workspace_id, start, split, end - dt.timedelta(days=window_days))),
        thank_you_window_days=window_days,
    )


def _in(days: list[dt.date], p: Period) -> npt.NDArray[np.bool_]:
    return np.array([p.first <= d <= p.last for d in days], dtype=bool)


def read_prospecting(f: Facts, current: Period, previous: Period, targets: Targets) -> StageReading:
    n = np.asarray(f.leads["n"], dtype=np.int64)
    now_mask, before_mask = _in(f.leads["day"], current), _in(f.leads["day"], previous)
    now, before = int(n[now_mask].sum()), int(n[before_mask].sum())
    c = poisson_rate_ratio(now, current.days, before, previous.days)
    status = judge(c, now + before >= MIN_EVENTS)
    by_channel: dict[str, list[int]] = {}
    for ch, k, a, b in zip(f.leads["channel"], n.tolist(), now_mask.tolist(), before_mask.tolist(), strict=True):
        pair = by_channel.setdefault(str(ch), [0, 0])
        pair[0] += k if a else 0
        pair[1] += k if b else 0
    channels = sorted(
        ({"channel": ch, "current": v[0], "previous": v[1], "change": v[0] - v[1]} for ch, v in by_channel.items()),
        key=lambda r: (r["change"], r["channel"]),
    )
    text = (
        f"{now:,} new leads in the last {current.days} days against {before:,} in the {previous.days} days before "
        f"({change_words(c)})."
    )
    evidence: dict[str, Any] = {"leads": now, "previous_leads": before, "by_channel": channels}
    code = "lead_volume_down" if status == "worse" else ""
    if targets.leads_per_week and status != "worse":
        expected = targets.leads_per_week * current.days / 7
        p_below = float(sps.poisson.cdf(now, expected))
        evidence["target_leads"] = expected
        if now < expected * (1 - MIN_CHANGE) and p_below < ALPHA:
            status, code = "below_target", "leads_below_target"
            text += f" Your target is {expected:,.0f} for such a period."
    return StageReading(
        1, "prospecting", "marketing", STAGES[0][3], "leads", now, before, c, status, text, code, 0.0, evidence
    )


def conversion_30d(f: Facts, current: Period, previous: Period) -> tuple[int, int, Period | None]:
    """Leads whose 30 days after the lead ended by the last day (and began after the previous period started),
    and how many of them bought within those 30 days."""
    last_lead_day = current.last - dt.timedelta(days=CONVERSION_WINDOW_DAYS - 1)
    first_lead_day = max(previous.first, last_lead_day - dt.timedelta(days=current.days - 1))
    if last_lead_day < first_lead_day:
        return 0, 0, None
    cohort = Period(first_lead_day, last_lead_day)
    leads = int(np.asarray(f.leads["n"], dtype=np.int64)[_in(f.leads["day"], cohort)].sum())
    bought = sum(
        int(k)
        for e, d, k in zip(f.first_orders["entry_day"], f.first_orders["day"], f.first_orders["n"], strict=True)
        if cohort.first <= e <= cohort.last and 0 <= (d - e).days < CONVERSION_WINDOW_DAYS
    )
    return bought, leads, cohort


def read_conversion(f: Facts, current: Period, previous: Period, origin: dt.date, targets: Targets) -> StageReading:
    leads = {"day": f.leads["day"], "n": f.leads["n"]}
    c, before = age_standardised(leads, f.first_orders, origin, current, previous, LEAD_AGE_DAYS)
    status = judge(c, c.observed + before >= MIN_EVENTS)
    expected = c.expected
    text = (
        f"{c.observed:,} leads became customers in the last {current.days} days; the conversion rates of the "
        f"{previous.days} days before predict {expected or 0:,.0f} for the leads you had "
        f"({change_words(c)} per lead of the same age)."
    )
    bought, cohort_leads, cohort = conversion_30d(f, current, previous)
    rate = bought / cohort_leads if cohort_leads else None
    evidence: dict[str, Any] = {
        "new_customers": c.observed,
        "previous_new_customers": before,
        "expected_new_customers": expected,
        "conversion_30d": rate,
        "conversion_30d_leads": cohort_leads,
        "conversion_30d_cohort": None if cohort is None else [cohort.first.isoformat(), cohort.last.isoformat()],
    }
    code = "conversion_down" if status == "worse" else ""
    lost = max((expected or 0.0) - c.observed, 0.0) if status == "worse" else 0.0
    if targets.conversion_rate and status != "worse" and cohort_leads:
        target = targets.conversion_rate
        p_below = float(sps.binom.cdf(bought, cohort_leads, target))
        evidence["target_conversion_30d"] = target
        if rate is not None and rate < target * (1 - MIN_CHANGE) and p_below < ALPHA:
            status, code = "below_target", "conversion_below_target"
            lost = target * cohort_leads - bought
            text += f" {pct(rate)} of leads bought within {CONVERSION_WINDOW_DAYS} days; your target is {pct(target)}."
    return StageReading(
        2,
        "conversion",
        "sales",
        STAGES[1][3],
        "new_customers",
        c.observed,
        before,
        c,
        status,
        text,
        code,
        lost,
        evidence,
    )


def read_buying(f: Facts, current: Period, previous: Period) -> StageReading:
    now, before = split_counts(f.checkouts, "checkouts", "completed")
    c = proportion_ratio(now["completed"], now["checkouts"], before["completed"], before["checkouts"])
    enough = min(now["checkouts"], before["checkouts"]) >= MIN_EVENTS
    status = judge(c, enough)
    r_now = now["completed"] / now["checkouts"] if now["checkouts"] else None
    r_before = before["completed"] / before["checkouts"] if before["checkouts"] else None
    text = (
        f"{pct(r_now)} of {now['checkouts']:,} started checkouts ended in an order within a day, against "
        f"{pct(r_before)} of {before['checkouts']:,} before ({change_words(c)})."
    )
    lost = (c.expected or 0.0) - c.observed if status == "worse" else 0.0
    return StageReading(
        3, "buying", "sales", STAGES[2][3], "checkout_completion", r_now, r_before, c, status, text,
        "checkout_completion_down" if status == "worse" else "", max(lost, 0.0),
        {"checkouts": now["checkouts"], "completed": now["completed"], "previous_checkouts": before["checkouts"],
         "previous_completed": before["completed"]},
    )  # fmt: skip


def read_thank_you(f: Facts, current: Period, previous: Period) -> StageReading:
    now, before = split_counts(f.thank_you, "orders", "thanked")
    orders_now, _ = split_counts(f.orders, "orders")
    w = f.thank_you_window_days
    evidence = {"orders": now["orders"], "thanked": now["thanked"], "previous_orders": before["orders"],
                "previous_thanked": before["thanked"], "window_days": w}  # fmt: skip
    if now["orders"] == 0 and orders_now["orders"] > 0:
        text = (
            "The stage history has no orders in this period although orders exist: compute it with "
            "'storefunnel cycle recompute' (or let the worker's tick do it)."
        )
        return StageReading(4, "thanked", "sales", STAGES[3][3], "thanked_share", None, None, None, "unknown", text,
                            "", 0.0, evidence)  # fmt: skip
    c = proportion_ratio(now["thanked"], now["orders"], before["thanked"], before["orders"])
    share_now = now["thanked"] / now["orders"] if now["orders"] else None
    share_before = before["thanked"] / before["orders"] if before["orders"] else None
    status = judge(c, min(now["orders"], before["orders"]) >= MIN_EVENTS)
    code = "thank_you_down" if status == "worse" else ""
    text = (
        f"{pct(share_now)} of {now['orders']:,} orders were thanked within {w} days, against {pct(share_before)} "
        f"before."
    )
    if share_now is not None and now["orders"] >= MIN_EVENTS and share_now < THANK_YOU_FLOOR:
        status, code = "low", "thank_you_missing"
    return StageReading(4, "thanked", "sales", STAGES[3][3], "thanked_share", share_now, share_before, c, status,
                        text, code, 0.0, evidence)  # fmt: skip


def read_keeping_in_touch(f: Facts, current: Period, previous: Period, origin: dt.date) -> StageReading:
    c, before = age_standardised(f.new_customers, f.repeat_orders, origin, current, previous, CUSTOMER_AGE_DAYS)
    status = judge(c, c.observed + before >= MIN_EVENTS)
    text = (
        f"Customers placed {c.observed:,} repeat orders in the last {current.days} days; the rates before predict "
        f"{c.expected or 0:,.0f} ({change_words(c)} per customer of the same age)."
    )
    return StageReading(
        5, "keeping_in_touch", "sales", STAGES[4][3], "repeat_orders", c.observed, before, c, status, text,
        "repeat_orders_down" if status == "worse" else "", 0.0,
        {"repeat_orders": c.observed, "previous_repeat_orders": before, "expected_repeat_orders": c.expected},
    )  # fmt: skip


# --- recommendations --------------------------------------------------------------------------------------

ADVICE_TEXT = {
    "lead_volume_down": (
        "Bring in more leads",
        "{text} {channels}Conversion of the leads you do get is not the problem, so this is marketing's job: go "
        "back to the 3 or 4 tactics that brought your leads and run them consistently.",
    ),
    "leads_below_target": (
        "Bring in more leads",
        "{text} Marketing has to generate more leads: pick the channels with the lowest cost per lead and give "
        "them more time and budget.",
    ),
    "conversion_down": (
        "Turn more leads into customers",
        "{text} You are getting the leads; fewer of them buy. Follow up the best-scored leads (Sales, Follow-up), "
        "lower the barrier to a first order (a welcome offer, free shipping) and check what changed in your shop.",
    ),
    "conversion_below_target": (
        "Turn more leads into customers",
        "{text} Follow up the best-scored leads and make the first order easier.",
    ),
    "checkout_completion_down": (
        "Fix the checkout",
        "{text} People who start a checkout are leaving without buying: try it yourself (payment, shipping "
        "costs, errors), and switch on the abandoned-cart flow.",
    ),
    "thank_you_missing": (
        "Say thank you after every order",
        "{text} A thank-you keeps the customer close and brings the next order: switch on the thank-you flow.",
    ),
    "thank_you_down": (
        "Say thank you after every order",
        "{text} Fewer buyers get a thank-you than before: check that the thank-you flow is on and its emails "
        "are delivered.",
    ),
    "repeat_orders_down": (
        "Keep in touch with your customers",
        "{text} Customers come back less than they did: use the keep-in-touch flow and the customers-at-risk list.",
    ),
}


@dataclass(frozen=True)
class Recommendation:
    rank: int
    side: str
    stage: str
    kind: str  # problem | opportunity
    title: str
    text: str
    evidence: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "side": self.side,
            "stage": self.stage,
            "kind": self.kind,
            "title": self.title,
            "text": self.text,
            "evidence": self.evidence,
        }


def channel_words(reading: StageReading) -> str:
    lost = [r for r in reading.evidence.get("by_channel", []) if r["change"] < 0][:2]
    if not lost:
        return ""
    parts = [f"{r['channel']} ({r['previous']:,} to {r['current']:,})" for r in lost]
    return f"Most of the drop is in {' and '.join(parts)}. "


def problem_recommendation(reading: StageReading) -> tuple[str, str]:
    title, template = ADVICE_TEXT[reading.code]
    return title, template.format(text=reading.text, channels=channel_words(reading))


def severity(reading: StageReading) -> tuple[int, float]:
    """Problems first by kind (an absent step before a drop), then by how unlikely they are to be noise."""
    absent = 0 if reading.status == "low" else 1
    p = reading.comparison.p_value if reading.comparison and reading.comparison.p_value is not None else 1.0
    return absent, p


def marketing_loss(prospecting: StageReading, conversion: StageReading) -> float:
    """Customers the lead shortfall costs: the missing leads times the earlier customers per lead."""
    now, before = prospecting.current or 0.0, prospecting.previous or 0.0
    if before <= 0:
        return 0.0
    per_lead = (conversion.previous or 0.0) / before
    aim = prospecting.evidence.get("target_leads", before) if prospecting.status == "below_target" else before
    return max(aim - now, 0.0) * per_lead


@dataclass(frozen=True)
class Advice:
    current: Period
    previous: Period
    focus: str
    reason: str
    summary: str
    stages: list[StageReading]
    recommendations: list[Recommendation]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": {"from": self.current.first.isoformat(), "to": self.current.last.isoformat()},
            "previous": {"from": self.previous.first.isoformat(), "to": self.previous.last.isoformat()},
            "focus": self.focus,
            "reason": self.reason,
            "summary": self.summary,
            "alpha": ALPHA,
            "min_change": MIN_CHANGE,
            "stages": [s.as_dict() for s in self.stages],
            "recommendations": [r.as_dict() for r in self.recommendations],
        }


def decide(stages: list[StageReading], opportunities: list[Recommendation]) -> tuple[str, str, str]:
    """(focus, reason, summary) from the stage readings."""
    marketing = [s for s in stages if s.side == "marketing" and s.problem]
    sales = [s for s in stages if s.side == "sales" and s.problem]
    prospecting, conversion = stages[0], stages[1]
    if marketing and sales:
        m_loss = marketing_loss(prospecting, conversion)
        s_loss = sum(s.lost_customers for s in sales)
        absent_step = any(s.status == "low" for s in sales)
        side = "sales" if absent_step or s_loss >= m_loss else "marketing"
        top = min(sales if side == "sales" else marketing, key=severity)
        return (
            side,
            top.code,
            (
                f"Both sides slipped; {side} costs you more customers "
                f"(about {max(s_loss, m_loss):,.0f} against {min(s_loss, m_loss):,.0f}). "
                f"Start with: {top.label.lower()}."
            ),
        )
    if marketing:
        top = min(marketing, key=severity)
        return "marketing", top.code, f"Improve marketing: {top.text}"
    if sales:
        top = min(sales, key=severity)
        return "sales", top.code, f"Improve sales ({top.label.lower()}): {top.text}"
    if prospecting.status == "unknown" and conversion.status == "unknown":
        return (
            "unclear",
            "not_enough_data",
            ("Not enough data to say: too few leads and customers in these two periods to tell a change from noise."),
        )
    return (
        "unclear",
        "no_significant_change",
        (
            "Neither side shows a significant change: leads and conversion are where they were. Keep going, "
            + ("and consider the opportunity below." if opportunities else "and check again next week.")
        ),
    )


def advise(
    f: Facts, current: Period, previous: Period, targets: Targets | None = None,
    opportunities: list[Recommendation] | None = None,
) -> Advice:  # fmt: skip
    """The advice from the counts alone (no database): usable on any store's aggregates."""
    targets = targets or Targets()
    origin = previous.first - dt.timedelta(days=CUSTOMER_AGE_DAYS + 1)
    stages = [
        read_prospecting(f, current, previous, targets),
        read_conversion(f, current, previous, origin, targets),
        read_buying(f, current, previous),
        read_thank_you(f, current, previous),
        read_keeping_in_touch(f, current, previous, origin),
    ]
    opportunities = opportunities or []
    focus, reason, summary = decide(stages, opportunities)
    problems = sorted((s for s in stages if s.problem), key=lambda s: (s.side != focus, *severity(s)))
    recs = []
    for s in problems:
        title, text = problem_recommendation(s)
        recs.append(Recommendation(0, s.side, s.stage, "problem", title, text, {"stage": s.as_dict(), **s.evidence}))
    recs.extend(opportunities)
    ranked = [Recommendation(i + 1, r.side, r.stage, r.kind, r.title, r.text, r.evidence) for i, r in enumerate(recs)]
    return Advice(current, previous, focus, reason, summary, stages, ranked)


def who_buys_opportunity(
    runner: Runner, workspace_id: int, current: Period, previous: Period, currency: str
) -> list[Recommendation]:
    """The buying group to aim marketing at, over both periods (more data, fewer false findings)."""
    from storefunnel.insight.who_buys import segment_rules, sentence, who_buys

    found = who_buys(runner, workspace_id, Period(previous.first, current.last), currency)
    top = found.top
    if top is None:
        return []
    text = (
        f"{sentence(top)} Aim your next campaign at this group where they hang out, and save it as a buying group "
        "(Together, Who buys) to follow it."
    )
    evidence = {**top.as_dict(), "rules": segment_rules(top.attributes)}
    return [Recommendation(0, "marketing", "prospecting", "opportunity", "Target the group that buys", text, evidence)]


def advice(
    runner: Runner, workspace_id: int, current: Period, currency: str, targets: Targets, window_days: int
) -> Advice:
    previous = previous_of(current)
    facts = load_facts(runner, workspace_id, current, previous, window_days)
    return advise(
        facts, current, previous, targets, who_buys_opportunity(runner, workspace_id, current, previous, currency)
    )


def advice_report(
    session: Session, workspace_id: int, period: Period | None = None, runner: Runner | None = None
) -> dict[str, Any]:
    """The advice for ``period`` (default: the last 28 whole days) as JSON-ready data, computed on ``runner`` or
    the workspace's analytics engine (``insight.snapshots``); settings and targets come from the session."""
    from storefunnel.insight.snapshots import analytics_runner, source

    rules = get_rules(session, workspace_id)
    currency = workspace_currency(session, workspace_id)
    targets = get_targets(session, workspace_id)
    with analytics_runner(session, workspace_id) if runner is None else nullcontext(runner) as r:
        result = advice(r, workspace_id, period or default_period(), currency, targets, rules.thank_you_window_days)
        return {**result.as_dict(), "source": source(r)}
