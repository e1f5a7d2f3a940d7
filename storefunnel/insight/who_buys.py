"""Who buys: groups over- or under-represented among customers compared with leads, with noise kept out.

For every cell of location x age band x gender (each single attribute, and every combination of them) with
enough support, the share of the period's customers in the cell is compared with the cell's share of the
period's leads. Under "this cell converts like everyone else" the customers in the cell are
Binomial(customers, lead share); the exact two-sided binomial test gives a p-value, and Benjamini & Hochberg
(1995) control the false discovery rate over all cells tested, so a finding at q <= 0.05 is advice, not noise.
Customers are the period's leads with a counted order before the period ends (the funnel's cohort).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ibis.expr.types as ir
import numpy as np
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.insight.engine import Runner, workspace_currency
from storefunnel.insight.facts import Period, buyers, flag, table, valid_orders
from storefunnel.insight.stats import benjamini_hochberg, binomial_tests, ratio
from storefunnel.models import Segment

DIMENSIONS = ("country", "city", "age_band", "gender")
UNKNOWN = "(unknown)"
DEFAULT_MIN_LEADS = 30
DEFAULT_MIN_CUSTOMERS = 10
DEFAULT_FDR = 0.05


@lru_cache(maxsize=64)
def query_cells(workspace_id: int, period: Period, currency: str) -> ir.Table:
    """The finest cells (country, city, age band, gender): leads, customers and customers' revenue."""
    c = table("contacts")
    leads = c.filter(c.workspace_id == workspace_id, c.lead_at >= period.start, c.lead_at < period.end)
    b = buyers(workspace_id, period.end)
    o = valid_orders(workspace_id, currency)
    o = o.filter(o.placed_at < period.end)
    rev = o.group_by(rev_contact=o.contact_id).aggregate(revenue=o.total.sum())
    j = leads.left_join(b, leads.id == b.contact_id).left_join(rev, leads.id == rev.rev_contact)
    rows = j.select(
        **{d: j[d].fill_null(UNKNOWN) for d in DIMENSIONS},
        customer=flag(j.first_at.notnull()),
        revenue=j.revenue.fill_null(0),
    )
    return rows.group_by(*DIMENSIONS).aggregate(
        leads=rows.count(), customers=rows.customer.sum(), revenue=rows.revenue.sum()
    )


@dataclass(frozen=True)
class Cell:
    """A group of contacts: the attributes fixed (the others free), and how it buys."""

    attributes: dict[str, str]
    leads: int
    customers: int
    revenue: int
    lead_share: float
    customer_share: float
    revenue_share: float | None
    lift: float | None
    p_value: float
    q_value: float

    @property
    def direction(self) -> str:
        return "over" if self.customer_share > self.lead_share else "under"

    def significant(self, fdr: float = DEFAULT_FDR) -> bool:
        return self.q_value <= fdr

    def as_dict(self) -> dict[str, Any]:
        return {
            "attributes": self.attributes,
            "leads": self.leads,
            "customers": self.customers,
            "revenue": self.revenue,
            "lead_share": self.lead_share,
            "customer_share": self.customer_share,
            "revenue_share": self.revenue_share,
            "lift": self.lift,
            "direction": self.direction,
            "p_value": self.p_value,
            "q_value": self.q_value,
        }


def cells_from_counts(
    attributes: dict[str, list[str]],
    leads: list[int],
    customers: list[int],
    revenue: list[int] | None = None,
    min_leads: int = DEFAULT_MIN_LEADS,
    min_customers: int = DEFAULT_MIN_CUSTOMERS,
) -> list[Cell]:
    """All cells (every non-empty combination of the attributes) with enough support, tested and FDR-corrected.

    ``attributes`` maps each attribute name to its value per finest cell; ``leads``/``customers``/``revenue``
    are the counts of those finest cells. Cells where an attribute is unknown are not tested. Sorted by
    q-value, then by the distance of the lift from 1.
    """
    names = list(attributes)
    n = len(leads)
    if any(len(v) != n for v in attributes.values()) or len(customers) != n:
        raise Invalid("cells: every column must have one value per cell")
    lead_arr = np.asarray(leads, dtype=np.int64)
    cust_arr = np.asarray(customers, dtype=np.int64)
    rev_arr = np.asarray(revenue if revenue is not None else [0] * n, dtype=np.int64)
    total_leads, total_customers, total_revenue = int(lead_arr.sum()), int(cust_arr.sum()), int(rev_arr.sum())
    if total_leads == 0 or total_customers == 0:
        return []
    found: list[tuple[dict[str, str], int, int, int]] = []
    for size in range(1, len(names) + 1):
        for combo in itertools.combinations(names, size):
            if "city" in combo and "country" in names and "country" not in combo:
                continue  # a city is named within its country (there are many Valencias)
            groups: dict[tuple[str, ...], list[int]] = {}
            for i in range(n):
                key = tuple(attributes[a][i] for a in combo)
                if UNKNOWN in key or None in key:
                    continue
                groups.setdefault(key, []).append(i)
            for key, idx in groups.items():
                nl, nc, nr = int(lead_arr[idx].sum()), int(cust_arr[idx].sum()), int(rev_arr[idx].sum())
                if nl < min_leads or nc < min_customers:
                    continue
                found.append((dict(zip(combo, key, strict=True)), nl, nc, nr))
    if not found:
        return []
    pvalues = binomial_tests(
        np.array([f[2] for f in found]), total_customers, np.array([f[1] / total_leads for f in found])
    )
    q = benjamini_hochberg(pvalues)
    cells = []
    for (attrs, nl, nc, nr), p, qv in zip(found, pvalues, q, strict=True):
        lead_share, customer_share = nl / total_leads, nc / total_customers
        cells.append(
            Cell(
                attributes=attrs,
                leads=nl,
                customers=nc,
                revenue=nr,
                lead_share=lead_share,
                customer_share=customer_share,
                revenue_share=ratio(nr, total_revenue),
                lift=ratio(customer_share, lead_share),
                p_value=float(p),
                q_value=float(qv),
            )
        )
    # ties broken by the attributes, so the order does not depend on the order rows came back in
    return sorted(cells, key=lambda c: (c.q_value, -abs(np.log(c.lift or 1.0)), sorted(c.attributes.items())))


def top_finding(cells: list[Cell], fdr: float = DEFAULT_FDR) -> Cell | None:
    """The buying group to act on: among over-represented cells significant at ``fdr``, the highest lift.

    A finer cell beats the broader ones it sits in when it concentrates the effect (its lift is higher).
    """
    over = [c for c in cells if c.significant(fdr) and c.direction == "over"]
    return min(over, key=lambda c: (-(c.lift or 0.0), -c.customers, sorted(c.attributes.items()))) if over else None


_GENDER_WORDS = {"female": "women", "male": "men", "non_binary": "non-binary people"}


def describe(attributes: dict[str, str]) -> str:
    """``{"gender": "female", "age_band": "25-29", "city": "Porto"}`` -> ``women aged 25-29 in Porto``."""
    who = _GENDER_WORDS.get(attributes.get("gender", ""), "people")
    if "gender" in attributes and attributes["gender"] not in _GENDER_WORDS:
        who = f"people of gender {attributes['gender']}"
    parts = [who]
    if "age_band" in attributes:
        band = attributes["age_band"]
        parts.append("under 18" if band == "under_18" else f"aged {band}")
    if "city" in attributes and "country" in attributes:
        parts.append(f"in {attributes['city']} ({attributes['country']})")
    elif "city" in attributes:
        parts.append(f"in {attributes['city']}")
    elif "country" in attributes:
        parts.append(f"in {attributes['country']}")
    return " ".join(parts)


def sentence(cell: Cell) -> str:
    """The finding in the owner's words, with both shares."""
    return (
        f"{cell.customer_share:.0%} of your customers are {describe(cell.attributes)}, "
        f"against {cell.lead_share:.0%} of your leads."
    )


def segment_rules(attributes: dict[str, str]) -> dict[str, Any]:
    """The segment rule (docs/segments.md) selecting exactly the contacts of a cell."""
    unknown = [a for a in attributes if a not in DIMENSIONS]
    if unknown or not attributes:
        raise Invalid(f"attributes: use one or more of {', '.join(DIMENSIONS)}")
    return {"all": [{"field": a, "op": "eq", "value": v} for a, v in sorted(attributes.items())]}


@dataclass(frozen=True)
class WhoBuys:
    period: Period
    currency: str
    leads: int
    customers: int
    cells: list[Cell]
    fdr: float
    min_leads: int
    min_customers: int

    @property
    def top(self) -> Cell | None:
        return top_finding(self.cells, self.fdr)

    def as_dict(self, limit: int = 50) -> dict[str, Any]:
        top = self.top
        significant = [c for c in self.cells if c.significant(self.fdr)]
        return {
            "from": self.period.first.isoformat(),
            "to": self.period.last.isoformat(),
            "currency": self.currency,
            "leads": self.leads,
            "customers": self.customers,
            "fdr": self.fdr,
            "min_leads": self.min_leads,
            "min_customers": self.min_customers,
            "cells_tested": len(self.cells),
            "top": None
            if top is None
            else {**top.as_dict(), "sentence": sentence(top), "rules": segment_rules(top.attributes)},
            "significant": [c.as_dict() for c in significant[:limit]],
            "cells": [c.as_dict() for c in self.cells[:limit]],
        }


def who_buys(
    runner: Runner,
    workspace_id: int,
    period: Period,
    currency: str,
    min_leads: int = DEFAULT_MIN_LEADS,
    min_customers: int = DEFAULT_MIN_CUSTOMERS,
    fdr: float = DEFAULT_FDR,
) -> WhoBuys:
    if min_leads < 1 or min_customers < 0:
        raise Invalid("min_leads: must be at least 1 (and min_customers at least 0)")
    if not 0 < fdr < 1:
        raise Invalid("fdr: must be between 0 and 1")
    cols = runner.run(query_cells(workspace_id, period, currency))
    cells = cells_from_counts(
        {d: cols[d] for d in DIMENSIONS}, cols["leads"], cols["customers"], cols["revenue"], min_leads, min_customers
    )
    return WhoBuys(
        period, currency, int(sum(cols["leads"])), int(sum(cols["customers"])), cells, fdr, min_leads, min_customers
    )


def who_buys_report(
    session: Session,
    workspace_id: int,
    period: Period,
    min_leads: int = DEFAULT_MIN_LEADS,
    min_customers: int = DEFAULT_MIN_CUSTOMERS,
    fdr: float = DEFAULT_FDR,
) -> dict[str, Any]:
    currency = workspace_currency(session, workspace_id)
    from storefunnel.insight.snapshots import analytics_runner, source

    with analytics_runner(session, workspace_id) as runner:
        found = who_buys(runner, workspace_id, period, currency, min_leads, min_customers, fdr)
        return {**found.as_dict(), "source": source(runner)}


def create_buying_group(
    session: Session, workspace_id: int, attributes: dict[str, str], name: str | None = None
) -> Segment:
    """Save a cell as a dynamic segment through the segments service (which validates and fills it)."""
    from storefunnel.segments.schemas import SegmentCreate
    from storefunnel.segments.service import create_segment

    rules = segment_rules(attributes)
    label = name or describe(attributes).capitalize()[:100]
    data = SegmentCreate(name=label, description="Buying group found by who-buys", kind="dynamic", rules=rules)
    return create_segment(session, workspace_id, data)
