"""The Overview: leads, customers, conversion, orders and revenue for a range of days in the store's timezone.

Everything is aggregated in the database (group-by); Python only touches one row per day and currency.
Days are the workspace's display-timezone days on every backend: PostgreSQL converts with ``AT TIME ZONE``;
SQLite has no zone database, so each timestamp is shifted by the UTC offset in force at that instant, the
offsets of the range being computed here from the IANA database (exact across DST changes and for zones
with half- or quarter-hour offsets, where bucketing whole UTC hours would be wrong).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from storefunnel.errors import Invalid
from storefunnel.models import Contact, Order, Workspace

# Orders that did not (or no longer) bring money in: they count for nothing, not even a first order.
EXCLUDED_STATUSES = ("cancelled", "refunded")
MAX_RANGE_DAYS = 3660
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def zone(name: str, field_name: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"{field_name}: unknown IANA timezone {name!r}") from None


@dataclass(frozen=True)
class LocalRange:
    """The days ``first``..``last`` (both included) as the store's owner sees them, in ``timezone``."""

    first: dt.date
    last: dt.date
    timezone: str

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise Invalid("to: the last day must not be before the first day ('from')")
        if (self.last - self.first).days + 1 > MAX_RANGE_DAYS:
            raise Invalid(f"to: a range may span at most {MAX_RANGE_DAYS} days")
        zone(self.timezone)

    @classmethod
    def last_days(cls, days: int, timezone: str, now: dt.datetime | None = None) -> LocalRange:
        """The ``days`` days ending today (today included) in ``timezone``."""
        today = (now or dt.datetime.now(dt.UTC)).astimezone(zone(timezone)).date()
        return cls(today - dt.timedelta(days=days - 1), today, timezone)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    @property
    def start_utc(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), self.tz).astimezone(dt.UTC)

    @property
    def end_utc(self) -> dt.datetime:
        """Exclusive: local midnight after the last day."""
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), self.tz).astimezone(dt.UTC)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range(self.days)]


@dataclass(frozen=True)
class Proportion:
    """``successes`` out of ``trials`` with its Wilson score 95% interval (None when there were no trials)."""

    successes: int
    trials: int

    @property
    def rate(self) -> float | None:
        return self.successes / self.trials if self.trials else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.successes, self.trials)


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson (1927) score interval: unlike p ± z·se it stays inside [0, 1] and is honest for small counts."""
    if trials <= 0:
        return None
    p = successes / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class DayFigures:
    day: dt.date
    leads: int = 0
    orders: int = 0
    revenue: int = 0


@dataclass(frozen=True)
class Overview:
    range: LocalRange
    currency: str
    leads: int
    customers: int
    conversion: Proportion
    orders: int
    revenue: int
    # Revenue of orders in another currency than the workspace's: shown apart, never added up.
    other_revenue: dict[str, int] = field(default_factory=dict)
    daily: list[DayFigures] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        interval = self.conversion.interval
        return {
            "from": self.range.first.isoformat(),
            "to": self.range.last.isoformat(),
            "timezone": self.range.timezone,
            "currency": self.currency,
            "leads": self.leads,
            "customers": self.customers,
            "conversion": {
                "converted": self.conversion.successes,
                "leads": self.conversion.trials,
                "rate": self.conversion.rate,
                "interval95": list(interval) if interval else None,
            },
            "orders": self.orders,
            "revenue": self.revenue,
            "other_revenue": self.other_revenue,
            "daily": {
                "day": [d.day.isoformat() for d in self.daily],
                "leads": [d.leads for d in self.daily],
                "orders": [d.orders for d in self.daily],
                "revenue": [d.revenue for d in self.daily],
            },
        }


def utc_offsets(tz: ZoneInfo, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime | None, int]]:
    """The UTC offsets (seconds) in force over [start, end): ``[(until, offset), ..., (None, last_offset)]``.

    Steps a day at a time and bisects to the second where the offset changes (real zones change at most
    a few times a year, never twice a day).
    """

    def off(t: dt.datetime) -> int:
        delta = t.astimezone(tz).utcoffset()
        return int(delta.total_seconds()) if delta else 0

    segments: list[tuple[dt.datetime | None, int]] = []
    current = off(start)
    t = start
    while t < end:
        nxt = min(t + dt.timedelta(days=1), end)
        if off(nxt) == current:
            t = nxt
            continue
        lo, hi = int(t.timestamp()), math.ceil(nxt.timestamp())  # off(lo) == current != off(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if off(dt.datetime.fromtimestamp(mid, dt.UTC)) == current:
                lo = mid
            else:
                hi = mid
        t = dt.datetime.fromtimestamp(hi, dt.UTC)
        segments.append((t, current))
        current = off(t)
    segments.append((None, current))
    return segments


def local_day(column: Any, dialect: str, rng: LocalRange) -> sa.ColumnElement[Any]:
    """SQL for the local calendar day of a UTC ``column``, for rows inside ``rng``."""
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone(rng.timezone, column), sa.Date)
    segments = utc_offsets(rng.tz, rng.start_utc, rng.end_utc)
    modifiers: list[tuple[dt.datetime | None, str]] = [(until, f"{offset:+d} seconds") for until, offset in segments]
    if len(modifiers) == 1:
        return sa.func.date(column, modifiers[0][1])
    shift = sa.case(
        *[(column < until, modifier) for until, modifier in modifiers[:-1]],
        else_=modifiers[-1][1],
    )
    return sa.func.date(column, shift)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _valid_orders() -> sa.ColumnElement[bool]:
    return Order.status.not_in(EXCLUDED_STATUSES)


def _valid_order_of(contact_id: Any, workspace_id: int, before: dt.datetime) -> sa.Exists:
    """EXISTS a counted order of that contact placed before ``before`` (an index seek on contact and time)."""
    p = aliased(Order)
    return sa.exists().where(
        p.workspace_id == workspace_id,
        p.contact_id == contact_id,
        p.placed_at < before,
        p.status.not_in(EXCLUDED_STATUSES),
    )


def daily_leads(session: Session, workspace_id: int, rng: LocalRange) -> dict[dt.date, int]:
    dialect = session.get_bind().dialect.name
    inner = (
        sa.select(local_day(Contact.lead_at, dialect, rng).label("day"))
        .where(Contact.workspace_id == workspace_id, Contact.lead_at >= rng.start_utc, Contact.lead_at < rng.end_utc)
        .subquery()
    )
    rows = session.execute(sa.select(inner.c.day, sa.func.count()).group_by(inner.c.day))
    return {_as_date(day): int(n) for day, n in rows}


def daily_orders(session: Session, workspace_id: int, rng: LocalRange) -> dict[tuple[dt.date, str], tuple[int, int]]:
    """(day, currency) -> (orders, revenue in minor units)."""
    dialect = session.get_bind().dialect.name
    inner = (
        sa.select(
            local_day(Order.placed_at, dialect, rng).label("day"),
            Order.currency.label("currency"),
            Order.total.label("total"),
        )
        .where(
            Order.workspace_id == workspace_id,
            Order.placed_at >= rng.start_utc,
            Order.placed_at < rng.end_utc,
            _valid_orders(),
        )
        .subquery()
    )
    stmt = sa.select(inner.c.day, inner.c.currency, sa.func.count(), sa.func.coalesce(sa.func.sum(inner.c.total), 0))
    rows = session.execute(stmt.group_by(inner.c.day, inner.c.currency))
    return {(_as_date(day), str(cur)): (int(n), int(total)) for day, cur, n, total in rows}


def count_customers(session: Session, workspace_id: int, rng: LocalRange) -> int:
    """Contacts whose first order falls in the range: an order in the range and none counted before it.

    Written from the range's orders outwards so its cost follows the range, not the store's whole history.
    """
    stmt = sa.select(sa.func.count(sa.distinct(Order.contact_id))).where(
        Order.workspace_id == workspace_id,
        Order.contact_id.is_not(None),
        Order.placed_at >= rng.start_utc,
        Order.placed_at < rng.end_utc,
        _valid_orders(),
        ~_valid_order_of(Order.contact_id, workspace_id, rng.start_utc),
    )
    return int(session.scalar(stmt) or 0)


def lead_conversion(session: Session, workspace_id: int, rng: LocalRange) -> Proportion:
    """Of the range's leads, how many had placed a first order by the end of the range."""
    converted = _valid_order_of(Contact.id, workspace_id, rng.end_utc)
    stmt = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((converted, 1), else_=0)), 0)).where(
        Contact.workspace_id == workspace_id, Contact.lead_at >= rng.start_utc, Contact.lead_at < rng.end_utc
    )
    leads, n_converted = session.execute(stmt).one()
    return Proportion(int(n_converted), int(leads))


def overview(session: Session, workspace: Workspace, rng: LocalRange) -> Overview:
    """All Overview figures for ``rng``; totals are sums of the daily groups, so chart and figures agree."""
    leads_by_day = daily_leads(session, workspace.id, rng)
    orders_by_day = daily_orders(session, workspace.id, rng)
    currency = workspace.currency
    orders_per_day: dict[dt.date, int] = {}
    revenue_per_day: dict[dt.date, int] = {}
    other: dict[str, int] = {}
    for (day, cur), (n, total) in orders_by_day.items():
        orders_per_day[day] = orders_per_day.get(day, 0) + n
        if cur == currency:
            revenue_per_day[day] = revenue_per_day.get(day, 0) + total
        else:
            other[cur] = other.get(cur, 0) + total
    daily = [
        DayFigures(d, leads_by_day.get(d, 0), orders_per_day.get(d, 0), revenue_per_day.get(d, 0)) for d in rng.dates()
    ]
    return Overview(
        range=rng,
        currency=currency,
        leads=sum(leads_by_day.values()),
        customers=count_customers(session, workspace.id, rng),
        conversion=lead_conversion(session, workspace.id, rng),
        orders=sum(orders_per_day.values()),
        revenue=sum(revenue_per_day.values()),
        other_revenue=dict(sorted(other.items())),
        daily=daily,
    )
