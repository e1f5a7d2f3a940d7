"""The funnel: visitors -> leads -> customers -> repeat customers, and where it leaks.

"How many leads are you getting, and what % of them are converting?" The period's leads are a cohort:
customers are those of them with a counted order before the end of the period, repeat customers those with
two or more. Visitors are the distinct people seen in the period: anonymous ids never tied to a contact, plus
contacts with a touch or who became a lead in it (so every lead is a visitor and each step is a proportion).

Each part is one aggregate query over the facts (``queries_*``), then small math on its counts (``summarise_*``,
pure functions on plain numbers, usable without a database).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import ibis.expr.types as ir
import numpy as np
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.insight.engine import Columns, Runner
from storefunnel.insight.facts import Period, buyers, days_between, flag, seconds_between, table, week_of
from storefunnel.insight.stats import Rate, quantiles_from_counts

STEPS = ("visitors", "leads", "customers", "repeat_customers")
DEFAULT_WINDOW_DAYS = 30
CAMPAIGN_LOOKBACK_DAYS = 30
NO_CAMPAIGN = "(none)"
NO_CHANNEL = "Unassigned"
TOUCHES_CLAIM = (5, 12)  # "it takes 5 to 12 touches to make a sale"


def _leads(workspace_id: int, period: Period) -> ir.Table:
    c = table("contacts")
    return c.filter(c.workspace_id == workspace_id, c.lead_at >= period.start, c.lead_at < period.end)


@lru_cache(maxsize=64)
def lead_campaigns(workspace_id: int, period: Period) -> ir.Table:
    """The campaign of each lead: its last campaign-tagged touch in its lead channel in the 30 days up to lead_at."""
    leads = _leads(workspace_id, period)
    lookback = dt.timedelta(days=CAMPAIGN_LOOKBACK_DAYS)
    t = table("touches")
    tagged = t.filter(
        t.workspace_id == workspace_id,
        t.contact_id.notnull(),
        t.campaign.notnull(),
        t.campaign != "",
        t.occurred_at >= period.start - lookback,
        t.occurred_at < period.end,
    )
    lead = leads.select(lead_id=leads.id, lead_at=leads.lead_at, lead_channel=leads.lead_channel)
    m = tagged.join(
        lead,
        [tagged.contact_id == lead.lead_id, tagged.channel == lead.lead_channel, tagged.occurred_at <= lead.lead_at],
    )
    m = m.filter(seconds_between(m.lead_at, m.occurred_at) <= CAMPAIGN_LOOKBACK_DAYS * 86400)
    return m.group_by(campaign_contact=m.lead_id).aggregate(campaign=m.campaign.argmax(m.occurred_at))


@lru_cache(maxsize=64)
def lead_facts(workspace_id: int, period: Period) -> ir.Table:
    """One row per lead of the period: lead time, channel, campaign, first order time and orders by period end."""
    leads = _leads(workspace_id, period)
    b = buyers(workspace_id, period.end)
    camp = lead_campaigns(workspace_id, period)
    j = leads.left_join(b, leads.id == b.contact_id)
    j = j.left_join(camp, j.id == camp.campaign_contact)
    return j.select(
        contact_id=j.id,
        lead_at=j.lead_at,
        channel=j.lead_channel.fill_null(NO_CHANNEL),
        campaign=j.campaign.fill_null(NO_CAMPAIGN),
        first_at=j.first_at,
        n_orders=j.n_orders.fill_null(0),
    )


@lru_cache(maxsize=64)
def query_cohort(workspace_id: int, period: Period, window_days: int) -> ir.Table:
    """Leads grouped by (lead week, channel, campaign): customers, repeat, and conversion within the window."""
    f = lead_facts(workspace_id, period)
    window_s = window_days * 86400
    mature_before = period.end - dt.timedelta(days=window_days)
    converted = f.first_at.notnull()
    mature = f.lead_at < mature_before
    rows = f.select(
        week=week_of(f.lead_at),
        channel=f.channel,
        campaign=f.campaign,
        customer=flag(converted),
        repeat=flag(f.n_orders >= 2),
        mature=flag(mature),
        mature_converted=flag(mature & converted & (seconds_between(f.first_at, f.lead_at) <= window_s)),
    )
    return rows.group_by("week", "channel", "campaign").aggregate(
        leads=rows.count(),
        customers=rows.customer.sum(),
        repeat_customers=rows.repeat.sum(),
        mature_leads=rows.mature.sum(),
        converted_in_window=rows.mature_converted.sum(),
    )


@lru_cache(maxsize=64)
def query_time_to_convert(workspace_id: int, period: Period) -> ir.Table:
    """Whole days from lead to first order (0 when the order came first), as a histogram."""
    f = lead_facts(workspace_id, period)
    f = f.filter(f.first_at.notnull())
    d = days_between(f.first_at, f.lead_at)
    rows = f.select(days=ibis_greatest0(d))
    return rows.group_by("days").aggregate(customers=rows.count())


def ibis_greatest0(value: ir.IntegerValue) -> ir.IntegerValue:
    return (value < 0).ifelse(0, value)


@lru_cache(maxsize=64)
def query_visitors(workspace_id: int, period: Period) -> ir.Table:
    """Distinct visitors by the week each was first seen in the period: known (contacts) and anonymous."""
    t = table("touches")
    t = t.filter(t.workspace_id == workspace_id, t.occurred_at >= period.start, t.occurred_at < period.end)
    leads = _leads(workspace_id, period)
    known = t.filter(t.contact_id.notnull()).select(key=t.contact_id, at=t.occurred_at)
    known = known.union(leads.select(key=leads.id, at=leads.lead_at), distinct=False)
    first_known = known.group_by("key").aggregate(at=known.at.min())
    anon = t.filter(t.contact_id.isnull(), t.anonymous_id.notnull())
    first_anon = anon.group_by(key=anon.anonymous_id).aggregate(at=anon.occurred_at.min())
    kw = first_known.group_by(week=week_of(first_known.at)).aggregate(known=first_known.count())
    aw = first_anon.group_by(week=week_of(first_anon.at)).aggregate(anonymous=first_anon.count())
    both = kw.select(kw.week, kw.known, anonymous=kw.known * 0).union(
        aw.select(aw.week, known=aw.anonymous * 0, anonymous=aw.anonymous), distinct=False
    )
    return both.group_by("week").aggregate(known=both.known.sum(), anonymous=both.anonymous.sum())


@lru_cache(maxsize=64)
def query_new_customers(workspace_id: int, period: Period) -> ir.Table:
    """Contacts whose first counted order fell in the period, by week (whenever they became leads)."""
    b = buyers(workspace_id, period.end)
    b = b.filter(b.first_at >= period.start)
    return b.group_by(week=week_of(b.first_at)).aggregate(new_customers=b.count())


@lru_cache(maxsize=64)
def query_touches_before_first_order(workspace_id: int, period: Period) -> ir.Table:
    """For contacts whose first order fell in the period: how many of their touches came strictly before it."""
    b = buyers(workspace_id, period.end)
    b = b.filter(b.first_at >= period.start)
    t = table("touches")
    t = t.filter(t.workspace_id == workspace_id, t.contact_id.notnull(), t.occurred_at < period.end)
    t = t.select(touch_contact=t.contact_id, touch_at=t.occurred_at)
    j = b.left_join(t, [b.contact_id == t.touch_contact, t.touch_at < b.first_at])
    per = j.group_by(j.contact_id).aggregate(touches=j.touch_at.count())
    return per.group_by("touches").aggregate(customers=per.count())


@lru_cache(maxsize=64)
def query_segments(workspace_id: int, period: Period) -> ir.Table:
    """The period's leads by (current) segment: leads, customers, repeat customers."""
    f = lead_facts(workspace_id, period)
    sm = table("segment_members")
    sm = sm.filter(sm.workspace_id == workspace_id, sm.left_at.isnull())
    seg = table("segments")
    seg = seg.filter(seg.workspace_id == workspace_id)
    j = f.join(sm, f.contact_id == sm.contact_id).join(seg, sm.segment_id == seg.id)
    rows = j.select(
        segment_id=j.segment_id,
        segment=j.name,
        customer=flag(j.first_at.notnull()),
        repeat=flag(j.n_orders >= 2),
    )
    return rows.group_by("segment_id", "segment").aggregate(
        leads=rows.count(), customers=rows.customer.sum(), repeat_customers=rows.repeat.sum()
    )


# --- the math on counts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    count: int
    from_previous: Rate | None  # None for the first step

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "from_previous": self.from_previous.as_dict() if self.from_previous else None,
        }


def summarise_steps(visitors: int, leads: int, customers: int, repeat_customers: int) -> list[Step]:
    """Step counts -> step conversion rates with Wilson 95% intervals."""
    counts = [visitors, leads, customers, repeat_customers]
    if any(b > a for a, b in itertools.pairwise(counts)):
        raise Invalid("funnel: each step must be a subset of the one before (counts must not grow)")
    return [
        Step(name, n, None if i == 0 else Rate(n, counts[i - 1]))
        for i, (name, n) in enumerate(zip(STEPS, counts, strict=True))
    ]


@dataclass(frozen=True)
class Distribution:
    """A histogram of whole numbers with its count, quartiles and mean."""

    values: list[int]
    counts: list[int]

    @property
    def n(self) -> int:
        return int(sum(self.counts))

    @property
    def quartiles(self) -> list[float | None]:
        return quantiles_from_counts(self.values, self.counts)

    @property
    def mean(self) -> float | None:
        n = self.n
        return float(np.dot(self.values, self.counts) / n) if n else None

    def share_between(self, low: int, high: int) -> Rate:
        """How many of the observations lie in ``low..high`` (both included)."""
        k = sum(c for v, c in zip(self.values, self.counts, strict=True) if low <= v <= high)
        return Rate(int(k), self.n)

    def as_dict(self) -> dict[str, Any]:
        q = self.quartiles
        return {
            "n": self.n,
            "p25": q[0],
            "median": q[1],
            "p75": q[2],
            "mean": self.mean,
            "histogram": {"value": self.values, "count": self.counts},
        }


def distribution(values: list[int], counts: list[int]) -> Distribution:
    order = sorted(range(len(values)), key=lambda i: values[i])
    return Distribution([int(values[i]) for i in order], [int(counts[i]) for i in order])


@dataclass(frozen=True)
class Breakdown:
    """One row of a breakdown: a channel, campaign, segment or week."""

    key: str
    leads: int
    customers: int
    repeat_customers: int
    mature_leads: int = 0
    converted_in_window: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "leads": self.leads,
            "customers": Rate(self.customers, self.leads).as_dict(),
            "repeat_customers": self.repeat_customers,
            "converted_in_window": Rate(self.converted_in_window, self.mature_leads).as_dict(),
            **self.extra,
        }


def _sum_by(cols: Columns, keys: list[str]) -> dict[tuple[Any, ...], dict[str, int]]:
    metrics = ("leads", "customers", "repeat_customers", "mature_leads", "converted_in_window")
    out: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(metrics, 0))
    for i in range(len(cols["leads"])):
        key = tuple(cols[k][i] for k in keys)
        for m in metrics:
            out[key][m] += int(cols[m][i] or 0)
    return out


def _breakdown(key: str, m: dict[str, int], extra: dict[str, int] | None = None) -> Breakdown:
    return Breakdown(
        key,
        m["leads"],
        m["customers"],
        m["repeat_customers"],
        m["mature_leads"],
        m["converted_in_window"],
        extra or {},
    )


@dataclass(frozen=True)
class Funnel:
    period: Period
    window_days: int
    steps: list[Step]
    converted_in_window: Rate
    by_channel: list[Breakdown]
    by_campaign: list[Breakdown]
    by_segment: list[Breakdown]
    by_week: list[Breakdown]
    time_to_convert_days: Distribution
    touches_before_first_order: Distribution

    def as_dict(self) -> dict[str, Any]:
        low, high = TOUCHES_CLAIM
        return {
            "from": self.period.first.isoformat(),
            "to": self.period.last.isoformat(),
            "window_days": self.window_days,
            "steps": [s.as_dict() for s in self.steps],
            "converted_in_window": self.converted_in_window.as_dict(),
            "by_channel": [b.as_dict() for b in self.by_channel],
            "by_campaign": [b.as_dict() for b in self.by_campaign],
            "by_segment": [b.as_dict() for b in self.by_segment],
            "by_week": [b.as_dict() for b in self.by_week],
            "time_to_convert_days": self.time_to_convert_days.as_dict(),
            "touches_before_first_order": {
                **self.touches_before_first_order.as_dict(),
                "share_5_to_12": self.touches_before_first_order.share_between(low, high).as_dict(),
            },
        }


def funnel(runner: Runner, workspace_id: int, period: Period, window_days: int = DEFAULT_WINDOW_DAYS) -> Funnel:
    """The funnel of ``period`` on whatever engine ``runner`` drives."""
    if not 1 <= window_days <= 3660:
        raise Invalid("window_days: must be between 1 and 3660")
    cohort = runner.run(query_cohort(workspace_id, period, window_days))
    visitors = runner.run(query_visitors(workspace_id, period))
    new_customers = runner.run(query_new_customers(workspace_id, period))
    ttc = runner.run(query_time_to_convert(workspace_id, period))
    touches = runner.run(query_touches_before_first_order(workspace_id, period))
    segments = runner.run(query_segments(workspace_id, period))

    total = _sum_by(cohort, [])[()]
    n_visitors = sum(visitors["known"]) + sum(visitors["anonymous"])
    steps = summarise_steps(n_visitors, total["leads"], total["customers"], total["repeat_customers"])

    def rows(keys: list[str], label: Any) -> list[Breakdown]:
        grouped = _sum_by(cohort, keys)
        out = [_breakdown(label(k), v) for k, v in grouped.items()]
        return sorted(out, key=lambda b: (-b.leads, b.key))

    by_channel = rows(["channel"], lambda k: str(k[0]))
    by_campaign = rows(["channel", "campaign"], lambda k: f"{k[0]} / {k[1]}")
    weekly = _sum_by(cohort, ["week"])
    vis_week = {w: k + a for w, k, a in zip(visitors["week"], visitors["known"], visitors["anonymous"], strict=True)}
    new_week = dict(zip(new_customers["week"], new_customers["new_customers"], strict=True))
    weeks = sorted(set(weekly) | {(w,) for w in vis_week} | {(w,) for w in new_week})
    empty = dict.fromkeys(("leads", "customers", "repeat_customers", "mature_leads", "converted_in_window"), 0)
    by_week = [
        _breakdown(
            w[0].isoformat(),
            weekly.get(w, empty),
            extra={"visitors": int(vis_week.get(w[0], 0)), "new_customers": int(new_week.get(w[0], 0))},
        )
        for w in weeks
    ]
    by_segment = sorted(
        (
            Breakdown(str(name), int(n), int(c), int(r), extra={"segment_id": int(sid)})
            for sid, name, n, c, r in zip(
                segments["segment_id"],
                segments["segment"],
                segments["leads"],
                segments["customers"],
                segments["repeat_customers"],
                strict=True,
            )
        ),
        key=lambda b: (-b.leads, b.key),
    )
    return Funnel(
        period=period,
        window_days=window_days,
        steps=steps,
        converted_in_window=Rate(total["converted_in_window"], total["mature_leads"]),
        by_channel=by_channel,
        by_campaign=by_campaign,
        by_segment=by_segment,
        by_week=by_week,
        time_to_convert_days=distribution(ttc["days"], ttc["customers"]),
        touches_before_first_order=distribution(touches["touches"], touches["customers"]),
    )


def funnel_report(
    session: Session, workspace_id: int, period: Period, window_days: int = DEFAULT_WINDOW_DAYS
) -> dict[str, Any]:
    """The funnel as JSON-ready data, computed on the workspace's analytics engine (``insight.snapshots``)."""
    from storefunnel.insight.snapshots import analytics_runner, source

    with analytics_runner(session, workspace_id) as runner:
        return {**funnel(runner, workspace_id, period, window_days).as_dict(), "source": source(runner)}
