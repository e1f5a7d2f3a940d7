"""Retention: do customers come back? Cohorts by the month of their first order.

For customers whose first counted order fell in the period, cohort ``m`` is that month; the matrix gives, for
each month ``k`` after it (k = 0 is the first month itself), the share of the cohort that placed a repeat
order in that month, and the cohort's revenue in it. The repeat purchase rate is the share of those customers
with two or more orders by the end of the period; the time between orders is over consecutive orders of the
same customer. Months are UTC calendar months; revenue counts orders in the store's currency.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
from sqlalchemy.orm import Session

from storefunnel.insight.engine import Runner, workspace_currency
from storefunnel.insight.facts import Period, days_between, flag, month_of, valid_orders
from storefunnel.insight.stats import Rate, quantiles_from_counts


def _orders_with_first(workspace_id: int, period: Period) -> ir.Table:
    o = valid_orders(workspace_id)
    o = o.filter(o.placed_at < period.end)
    first = o.group_by(first_contact=o.contact_id).aggregate(first_at=o.placed_at.min())
    first = first.filter(first.first_at >= period.start)
    return o.join(first, o.contact_id == first.first_contact)


@lru_cache(maxsize=64)
def query_cohorts(workspace_id: int, period: Period, currency: str) -> ir.Table:
    """(cohort month, months since) -> customers with a repeat order, orders, revenue; k = -1 rows: cohort sizes."""
    j = _orders_with_first(workspace_id, period)
    k = (j.placed_at.year() - j.first_at.year()) * 12 + (j.placed_at.month() - j.first_at.month())
    rows = j.select(
        cohort=month_of(j.first_at),
        k=k.cast("int64"),
        contact_id=j.contact_id,
        repeat=j.placed_at > j.first_at,
        revenue=(j.currency == currency).ifelse(j.total, 0),
    )
    rep = rows.filter(rows.repeat)
    active = rep.group_by("cohort", "k").aggregate(
        returning=rep.contact_id.nunique(), orders=rep.count(), revenue=ibis.literal(0, "int64") * rep.count()
    )
    money = rows.group_by("cohort", "k").aggregate(
        returning=ibis.literal(0, "int64") * rows.count(),
        orders=ibis.literal(0, "int64") * rows.count(),
        revenue=rows.revenue.sum(),
    )
    first = rows.filter(~rows.repeat)
    sizes = first.group_by("cohort").aggregate(
        k=ibis.literal(-1, "int64"),
        returning=first.contact_id.nunique(),
        orders=first.count(),
        revenue=ibis.literal(0, "int64") * first.count(),
    )
    both = active.union(money, distinct=False).union(
        sizes.select("cohort", "k", "returning", "orders", "revenue"), distinct=False
    )
    return both.group_by("cohort", "k").aggregate(
        returning=both.returning.sum(), orders=both.orders.sum(), revenue=both.revenue.sum()
    )


@lru_cache(maxsize=64)
def query_gaps(workspace_id: int, period: Period) -> ir.Table:
    """Whole days between consecutive orders of the period's new customers, as a histogram; and orders each."""
    j = _orders_with_first(workspace_id, period)
    w = ibis.window(group_by=j.contact_id, order_by=[j.placed_at, j.id])
    prev = j.placed_at.lag().over(w)
    g = j.select(gap=days_between(j.placed_at, prev)).filter(lambda t: t.gap.notnull())
    return g.group_by("gap").aggregate(n=g.count())


@lru_cache(maxsize=64)
def query_order_counts(workspace_id: int, period: Period) -> ir.Table:
    """Customers by number of orders (the repeat purchase rate's numerator and denominator)."""
    j = _orders_with_first(workspace_id, period)
    per = j.group_by(j.contact_id).aggregate(orders=j.count())
    return per.group_by(repeat=flag(per.orders >= 2)).aggregate(customers=per.count())


@dataclass(frozen=True)
class Cohort:
    month: dt.date
    customers: int
    returning: list[int]  # index k: customers of the cohort with a repeat order in month k
    revenue: list[int]  # index k: the cohort's revenue in month k (first orders included)

    @property
    def retention(self) -> list[float | None]:
        return [r / self.customers if self.customers else None for r in self.returning]

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month.isoformat()[:7],
            "customers": self.customers,
            "returning": self.returning,
            "retention": self.retention,
            "revenue": self.revenue,
            "revenue_total": sum(self.revenue),
        }


def months_between(start: dt.date, end: dt.date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


def cohort_matrix(
    cohort: list[dt.date],
    k: list[int],
    returning: list[int],
    revenue: list[int],
    sizes: dict[dt.date, int],
    last: dt.date,
) -> list[Cohort]:
    """Rows (cohort month, k, returning customers, revenue) -> one Cohort per month, months up to ``last`` only."""
    out = []
    for month in sorted(sizes):
        width = months_between(month, last) + 1
        ret = [0] * width
        rev = [0] * width
        for m, kk, r, v in zip(cohort, k, returning, revenue, strict=True):
            if m == month and 0 <= kk < width:
                ret[kk] += int(r)
                rev[kk] += int(v)
        out.append(Cohort(month, sizes[month], ret, rev))
    return out


@dataclass(frozen=True)
class Retention:
    period: Period
    currency: str
    cohorts: list[Cohort]
    repeat_rate: Rate
    days_between_orders: list[float | None]  # p25, median, p75
    gaps: int

    def as_dict(self) -> dict[str, Any]:
        q = self.days_between_orders
        return {
            "from": self.period.first.isoformat(),
            "to": self.period.last.isoformat(),
            "currency": self.currency,
            "customers": self.repeat_rate.trials,
            "repeat_purchase_rate": self.repeat_rate.as_dict(),
            "days_between_orders": {"n": self.gaps, "p25": q[0], "median": q[1], "p75": q[2]},
            "cohorts": [c.as_dict() for c in self.cohorts],
        }


def retention(runner: Runner, workspace_id: int, period: Period, currency: str) -> Retention:
    cols = runner.run(query_cohorts(workspace_id, period, currency))
    gaps = runner.run(query_gaps(workspace_id, period))
    counts = runner.run(query_order_counts(workspace_id, period))
    sizes = {m: int(r) for m, kk, r in zip(cols["cohort"], cols["k"], cols["returning"], strict=True) if kk == -1}
    cohorts = cohort_matrix(cols["cohort"], cols["k"], cols["returning"], cols["revenue"], sizes, period.last)
    by_flag = dict(zip(counts["repeat"], counts["customers"], strict=True))
    customers = int(sum(by_flag.values()))
    gap_n = int(np.sum(gaps["n"])) if gaps["n"] else 0
    return Retention(
        period=period,
        currency=currency,
        cohorts=cohorts,
        repeat_rate=Rate(int(by_flag.get(1, 0)), customers),
        days_between_orders=quantiles_from_counts(gaps["gap"], gaps["n"]),
        gaps=gap_n,
    )


def retention_report(session: Session, workspace_id: int, period: Period) -> dict[str, Any]:
    from storefunnel.insight.snapshots import analytics_runner, source

    currency = workspace_currency(session, workspace_id)
    with analytics_runner(session, workspace_id) as runner:
        return {**retention(runner, workspace_id, period, currency).as_dict(), "source": source(runner)}
