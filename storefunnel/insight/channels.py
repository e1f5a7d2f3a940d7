"""Channels and tactics: what each channel and campaign brought in against what it cost.

The period's leads are the cohort, credited to their lead channel and lead campaign (see ``funnel``): leads,
customers among them (a counted order before the period ends) and their revenue (orders in the store's currency
before the period ends). Spend is the period's spend on that channel and campaign. Money is integer minor
units; ratios are floats, None where the denominator is zero.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ibis.expr.types as ir
from sqlalchemy.orm import Session

from storefunnel.insight.engine import Runner, workspace_currency
from storefunnel.insight.facts import Period, flag, table, valid_orders
from storefunnel.insight.funnel import NO_CAMPAIGN, lead_facts
from storefunnel.insight.stats import Rate, ratio


@lru_cache(maxsize=64)
def query_channels(workspace_id: int, period: Period, currency: str) -> ir.Table:
    """(channel, campaign) -> leads, customers, revenue, spend: one query, a union of the two sides."""
    f = lead_facts(workspace_id, period)
    o = valid_orders(workspace_id, currency)
    o = o.filter(o.placed_at < period.end)
    revenue = o.group_by(rev_contact=o.contact_id).aggregate(revenue=o.total.sum())
    j = f.left_join(revenue, f.contact_id == revenue.rev_contact)
    leads = j.group_by("channel", "campaign").aggregate(
        leads=j.count(),
        customers=flag(j.first_at.notnull()).sum(),
        revenue=j.revenue.fill_null(0).sum(),
        spend=ibis_zero(j),
    )
    s = table("spend")
    s = s.filter(s.workspace_id == workspace_id, s.day >= period.first, s.day <= period.last, s.currency == currency)
    s = s.mutate(campaign=(s.campaign.isnull() | (s.campaign == "")).ifelse(NO_CAMPAIGN, s.campaign))
    spend = s.group_by("channel", "campaign").aggregate(
        leads=ibis_zero(s), customers=ibis_zero(s), revenue=ibis_zero(s), spend=s.cost.sum()
    )
    both = leads.union(spend, distinct=False)
    return both.group_by("channel", "campaign").aggregate(
        leads=both.leads.sum(), customers=both.customers.sum(), revenue=both.revenue.sum(), spend=both.spend.sum()
    )


def ibis_zero(t: ir.Table) -> ir.IntegerScalar:
    """An int64 zero aggregate, so both sides of the union have the same column types on every engine."""
    return (t.count() * 0).cast("int64")


@dataclass(frozen=True)
class Tactic:
    """Figures of one channel, or one campaign of a channel (``campaign`` None for the channel's total)."""

    channel: str
    campaign: str | None
    leads: int
    customers: int
    revenue: int
    spend: int

    @property
    def cost_per_lead(self) -> float | None:
        return ratio(self.spend, self.leads)

    @property
    def acquisition_cost(self) -> float | None:
        return ratio(self.spend, self.customers)

    @property
    def return_on_ad_spend(self) -> float | None:
        return ratio(self.revenue, self.spend)

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "campaign": self.campaign,
            "leads": self.leads,
            "customers": self.customers,
            "conversion": Rate(self.customers, self.leads).as_dict(),
            "revenue": self.revenue,
            "spend": self.spend,
            "cost_per_lead": self.cost_per_lead,
            "customer_acquisition_cost": self.acquisition_cost,
            "return_on_ad_spend": self.return_on_ad_spend,
        }


def summarise_tactics(rows: list[Tactic]) -> tuple[list[Tactic], list[Tactic]]:
    """Campaign rows -> (channel totals, campaign rows), each sorted by revenue then leads, largest first."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        t = totals[r.channel]
        t[0] += r.leads
        t[1] += r.customers
        t[2] += r.revenue
        t[3] += r.spend
    channels = [Tactic(ch, None, *v) for ch, v in totals.items()]

    def key(t: Tactic) -> tuple[int, int, str, str]:
        return (-t.revenue, -t.leads, t.channel, t.campaign or "")

    return sorted(channels, key=key), sorted(rows, key=key)


@dataclass(frozen=True)
class Channels:
    period: Period
    currency: str
    channels: list[Tactic]
    campaigns: list[Tactic]

    @property
    def total(self) -> Tactic:
        return Tactic(
            "all",
            None,
            sum(t.leads for t in self.channels),
            sum(t.customers for t in self.channels),
            sum(t.revenue for t in self.channels),
            sum(t.spend for t in self.channels),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.period.first.isoformat(),
            "to": self.period.last.isoformat(),
            "currency": self.currency,
            "total": self.total.as_dict(),
            "channels": [t.as_dict() for t in self.channels],
            "campaigns": [t.as_dict() for t in self.campaigns],
        }


def channels(runner: Runner, workspace_id: int, period: Period, currency: str) -> Channels:
    cols = runner.run(query_channels(workspace_id, period, currency))
    rows = [
        Tactic(str(ch), str(camp), int(n or 0), int(c or 0), int(r or 0), int(s or 0))
        for ch, camp, n, c, r, s in zip(
            cols["channel"],
            cols["campaign"],
            cols["leads"],
            cols["customers"],
            cols["revenue"],
            cols["spend"],
            strict=True,
        )
    ]
    by_channel, by_campaign = summarise_tactics(rows)
    return Channels(period, currency, by_channel, by_campaign)


def channels_report(session: Session, workspace_id: int, period: Period) -> dict[str, Any]:
    from storefunnel.insight.snapshots import analytics_runner, source

    currency = workspace_currency(session, workspace_id)
    with analytics_runner(session, workspace_id) as runner:
        return {**channels(runner, workspace_id, period, currency).as_dict(), "source": source(runner)}
