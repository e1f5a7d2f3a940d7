"""Journeys for attribution: the touches before each conversion, and of the leads who never bought, from SQL.

A converting journey is a contact's touches strictly before an order (their first order, or every order with
``each_order``) and no older than ``lookback_days`` at that order; with ``each_order`` a journey starts after the
contact's previous order. A non-converting journey (a null) is a lead of the period who had no order by the
period's end: their touches up to then, no older than ``lookback_days`` at their last touch. Journeys are
returned as integer channel codes with offsets (the layout ``insight.attribution.Encoded`` uses), with the age
in days of every touch at the conversion, for time decay.

Two queries, one for each kind of journey; the database does the joins and the coarse time filter, numpy the
exact window, the coding and the grouping of identical paths.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.errors import Invalid
from storefunnel.insight.attribution import Encoded
from storefunnel.insight.facts import EXCLUDED_STATUSES, Period
from storefunnel.models import Contact, Order, Touch

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
By = Literal["channel", "campaign"]
MAX_TOUCHES = 50  # a longer journey keeps its latest touches: older ones carry almost no signal
MAX_LOOKBACK_DAYS = 365
NO_CAMPAIGN = "(no campaign)"


@dataclass(frozen=True)
class Journeys:
    """One row per journey. Path ``i`` is ``codes[offsets[i]:offsets[i + 1]]`` (oldest touch first); ``ages``
    is aligned with ``codes``; ``converted`` is 1 for a converting journey and 0 for a null."""

    labels: tuple[str, ...]
    codes: IntArray
    offsets: IntArray
    ages: FloatArray
    converted: FloatArray
    values: FloatArray  # order total in minor units (0 for nulls)
    contact_ids: IntArray

    @property
    def n(self) -> int:
        return len(self.offsets) - 1

    @property
    def conversions(self) -> int:
        return int(self.converted.sum())

    @property
    def nulls(self) -> int:
        return self.n - self.conversions

    def encoded(self, with_nulls: bool = True) -> Encoded:
        """Identical paths merged (conversions, nulls and values summed): what the models and bootstrap take."""
        keep = np.ones(self.n, dtype=bool) if with_nulls else self.converted > 0
        lengths = np.diff(self.offsets)[keep]
        row = np.repeat(np.arange(self.n), np.diff(self.offsets))
        codes = self.codes[keep[row]]
        n = int(keep.sum())
        if n == 0:
            z: FloatArray = np.zeros(0, dtype=np.float64)
            return Encoded(self.labels, codes, np.zeros(1, dtype=np.int64), z, z, z)
        width = int(lengths.max(initial=0))
        grid = np.full((n, max(width, 1)), -1, dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        pos = np.arange(codes.size) - np.repeat(starts, lengths)
        grid[np.repeat(np.arange(n), lengths), pos] = codes
        uniq, inverse = np.unique(grid, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        m = uniq.shape[0]
        conv = np.bincount(inverse, weights=self.converted[keep], minlength=m).astype(np.float64)
        nul = np.bincount(inverse, weights=1.0 - self.converted[keep], minlength=m).astype(np.float64)
        val = np.bincount(inverse, weights=self.values[keep], minlength=m).astype(np.float64)
        u_len = (uniq >= 0).sum(axis=1)
        u_codes = uniq[uniq >= 0]  # row-major: each path's codes in order
        offsets = np.concatenate(([0], np.cumsum(u_len))).astype(np.int64)
        return Encoded(self.labels, u_codes.astype(np.int64), offsets, conv, nul, val)

    def converting_paths(self) -> tuple[list[list[str]], list[FloatArray], FloatArray]:
        """The converting journeys as channel-name lists with their touch ages, one per journey (time decay)."""
        names = np.asarray(self.labels, dtype=object)
        rows = np.flatnonzero(self.converted > 0)
        paths = [names[self.codes[self.offsets[i] : self.offsets[i + 1]]].tolist() for i in rows]
        ages = [self.ages[self.offsets[i] : self.offsets[i + 1]] for i in rows]
        return paths, ages, self.values[rows]


def _epoch(column: Any, dialect: str) -> Any:
    """Seconds since 1970 as a float, computed by the database (no per-row datetime parsing in Python)."""
    if dialect == "sqlite":
        return (sa.func.julianday(column) - 2440587.5) * 86400.0
    return sa.extract("epoch", column)


def _label(by: By) -> Any:
    if by == "channel":
        return Touch.channel
    if by == "campaign":
        return sa.func.coalesce(Touch.campaign, NO_CAMPAIGN)
    raise Invalid("by: 'channel' or 'campaign'")


def _valid_orders(workspace_id: int, currency: str | None) -> list[Any]:
    preds = [Order.workspace_id == workspace_id, Order.contact_id.is_not(None), Order.status.not_in(EXCLUDED_STATUSES)]
    if currency is not None:
        preds.append(Order.currency == currency)
    return preds


def _converting_rows(
    session: Session,
    workspace_id: int,
    period: Period,
    lookback: dt.timedelta,
    each_order: bool,
    by: By,
    currency: str | None,
) -> list[Any]:
    dialect = session.get_bind().dialect.name
    ranked = (
        sa.select(
            Order.id.label("order_id"),
            Order.contact_id.label("contact_id"),
            Order.placed_at.label("placed_at"),
            Order.total.label("total"),
            sa.func.row_number().over(partition_by=Order.contact_id, order_by=(Order.placed_at, Order.id)).label("rn"),
            sa.func.lag(Order.placed_at)
            .over(partition_by=Order.contact_id, order_by=(Order.placed_at, Order.id))
            .label("prev_at"),
        )
        .where(*_valid_orders(workspace_id, currency), Order.placed_at < period.end.replace(tzinfo=dt.UTC))
        .subquery("ranked")
    )
    conv_preds = [ranked.c.placed_at >= period.start.replace(tzinfo=dt.UTC)]
    if not each_order:
        conv_preds.append(ranked.c.rn == 1)
    conv = sa.select(ranked).where(*conv_preds).subquery("conv")
    touch_preds = [
        Touch.workspace_id == workspace_id,
        Touch.contact_id == conv.c.contact_id,
        Touch.occurred_at < conv.c.placed_at,
        Touch.occurred_at >= (period.start - lookback).replace(tzinfo=dt.UTC),  # coarse; exact window in numpy
    ]
    if each_order:
        touch_preds.append(sa.or_(conv.c.prev_at.is_(None), Touch.occurred_at > conv.c.prev_at))
    stmt = (
        sa.select(
            conv.c.order_id,
            conv.c.contact_id,
            conv.c.total,
            _epoch(conv.c.placed_at, dialect).label("end_s"),
            _epoch(Touch.occurred_at, dialect).label("at_s"),
            _label(by),
        )
        .join_from(conv, Touch, sa.and_(*touch_preds))
        .order_by(conv.c.order_id, Touch.occurred_at, Touch.id)
    )
    return list(session.execute(stmt).all())


def _null_rows(
    session: Session, workspace_id: int, period: Period, lookback: dt.timedelta, by: By, currency: str | None
) -> list[Any]:
    """Touches (before the period's end) of the period's leads who had no valid order by then."""
    dialect = session.get_bind().dialect.name
    end = period.end.replace(tzinfo=dt.UTC)
    ordered = sa.select(Order.id).where(
        *_valid_orders(workspace_id, currency), Order.contact_id == Contact.id, Order.placed_at < end
    )
    leads = (
        sa.select(Contact.id.label("contact_id"))
        .where(
            Contact.workspace_id == workspace_id,
            Contact.lead_at >= period.start.replace(tzinfo=dt.UTC),
            Contact.lead_at < end,
            ~ordered.exists(),
        )
        .subquery("leads")
    )
    on = sa.and_(Touch.workspace_id == workspace_id, Touch.contact_id == leads.c.contact_id, Touch.occurred_at < end)
    stmt = (
        sa.select(leads.c.contact_id, _epoch(Touch.occurred_at, dialect).label("at_s"), _label(by))
        .join_from(leads, Touch, on)
        .order_by(leads.c.contact_id, Touch.occurred_at, Touch.id)
    )
    return list(session.execute(stmt).all())


def _groups(keys: IntArray) -> tuple[IntArray, IntArray]:
    """For rows sorted by ``keys``: the group index of every row and the start offset of every group."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    new = np.ones(keys.size, dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    return group.astype(np.int64), np.concatenate((starts, [keys.size])).astype(np.int64)


def _window(
    group: IntArray, at_s: FloatArray, end_s: FloatArray, lookback_s: float
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Touches inside the lookback window of their journey, at most MAX_TOUCHES (the latest), and their ages."""
    age_s = end_s - at_s
    keep = (age_s >= 0) & (age_s <= lookback_s)
    # rank from the end of each journey among the kept touches
    kept_group = np.where(keep, group, -1)
    rev_rank = np.zeros(group.size, dtype=np.int64)
    if keep.any():
        idx = np.flatnonzero(keep)
        g = kept_group[idx]
        counts = np.bincount(g, minlength=int(group.max(initial=0)) + 1)
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        pos = np.arange(idx.size) - first[g]
        rev_rank[idx] = counts[g] - 1 - pos
    keep &= rev_rank < MAX_TOUCHES
    return keep, age_s / 86400.0


def load_journeys(
    session: Session,
    workspace_id: int,
    period: Period,
    *,
    lookback_days: int = 30,
    by: By = "channel",
    each_order: bool = False,
    with_nulls: bool = True,
    currency: str | None = None,
) -> Journeys:
    """Converting journeys of the orders placed in ``period`` and, with ``with_nulls``, the period's leads who
    did not buy. Values are order totals in minor units; ``currency`` keeps only orders in that currency."""
    if not 1 <= lookback_days <= MAX_LOOKBACK_DAYS:
        raise Invalid(f"lookback_days: between 1 and {MAX_LOOKBACK_DAYS}")
    lookback = dt.timedelta(days=lookback_days)
    lookback_s = lookback.total_seconds()
    conv_rows = _converting_rows(session, workspace_id, period, lookback, each_order, by, currency)
    null_rows = _null_rows(session, workspace_id, period, lookback, by, currency) if with_nulls else []

    c_key = np.fromiter((r[0] for r in conv_rows), dtype=np.int64, count=len(conv_rows))
    c_contact = np.fromiter((r[1] for r in conv_rows), dtype=np.int64, count=len(conv_rows))
    c_total = np.fromiter((r[2] for r in conv_rows), dtype=np.float64, count=len(conv_rows))
    c_end = np.fromiter((r[3] for r in conv_rows), dtype=np.float64, count=len(conv_rows))
    c_at = np.fromiter((r[4] for r in conv_rows), dtype=np.float64, count=len(conv_rows))
    c_label = [r[5] for r in conv_rows]
    n_key = np.fromiter((r[0] for r in null_rows), dtype=np.int64, count=len(null_rows))
    n_at = np.fromiter((r[1] for r in null_rows), dtype=np.float64, count=len(null_rows))
    n_label = [r[2] for r in null_rows]

    c_group, c_starts = _groups(c_key)
    c_keep, c_age = _window(c_group, c_at, c_end, lookback_s)
    n_group, n_starts = _groups(n_key)
    # a null journey ends at its last touch
    n_last = n_at[n_starts[1:] - 1] if n_key.size else np.zeros(0)
    n_end = n_last[n_group] if n_key.size else np.zeros(0)
    n_keep, n_age = _window(n_group, n_at, n_end, lookback_s)

    labels_all = np.asarray(c_label + n_label, dtype=object)
    keep_all = np.concatenate((c_keep, n_keep))
    names, codes_all = (
        np.unique(labels_all[keep_all].astype(str), return_inverse=True) if keep_all.any() else (np.zeros(0), None)
    )
    codes = np.asarray(codes_all, dtype=np.int64).reshape(-1) if codes_all is not None else np.zeros(0, np.int64)
    n_conv_groups = c_starts.size - 1
    n_null_groups = n_starts.size - 1
    group_all = np.concatenate((c_group, n_group + n_conv_groups))[keep_all]
    n_groups = n_conv_groups + n_null_groups
    lengths = np.bincount(group_all, minlength=n_groups)
    nonempty = lengths > 0
    # A conversion with no touch in its window has no path to credit: it is left out here and counted by
    # ``converting_orders``, so the owner sees how many conversions the models could not explain.
    offsets = np.concatenate(([0], np.cumsum(lengths[nonempty]))).astype(np.int64)
    converted = np.concatenate((np.ones(n_conv_groups), np.zeros(n_null_groups)))[nonempty]
    first_rows = np.concatenate((c_starts[:-1], n_starts[:-1] + c_key.size)).astype(np.int64)
    totals = np.concatenate((c_total, np.zeros(n_key.size)))
    contacts = np.concatenate((c_contact, n_key))
    values = totals[first_rows][nonempty] if n_groups else np.zeros(0)
    contact_ids = contacts[first_rows][nonempty] if n_groups else np.zeros(0, np.int64)
    ages = np.concatenate((c_age, n_age))[keep_all]
    return Journeys(
        tuple(str(s) for s in names),
        codes,
        offsets,
        ages.astype(np.float64),
        converted.astype(np.float64),
        values.astype(np.float64),
        contact_ids.astype(np.int64),
    )


def converting_orders(
    session: Session, workspace_id: int, period: Period, each_order: bool = False, currency: str | None = None
) -> tuple[int, int]:
    """How many conversions the period has and their total value, touches or not (the models' denominators)."""
    ranked = (
        sa.select(
            Order.placed_at,
            Order.total,
            sa.func.row_number().over(partition_by=Order.contact_id, order_by=(Order.placed_at, Order.id)).label("rn"),
        )
        .where(*_valid_orders(workspace_id, currency), Order.placed_at < period.end.replace(tzinfo=dt.UTC))
        .subquery()
    )
    preds = [ranked.c.placed_at >= period.start.replace(tzinfo=dt.UTC)]
    if not each_order:
        preds.append(ranked.c.rn == 1)
    n, total = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(ranked.c.total), 0)).where(*preds)
    ).one()
    return int(n), int(total)
