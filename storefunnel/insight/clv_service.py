"""Lifetime value over the store's orders: fit, store per-customer predictions, and keep in touch.

Purchases per (customer, day) are summed in SQL; ``insight.clv`` turns them into RFM and fits BG/NBD (or
Pareto/NBD) and Gamma-Gamma. A fit is stored (``model_fits``) with one prediction row per customer
(``clv_predictions``): P(alive), expected purchases in the next 90 days, expected spend per order, 12-month CLV
and the rank on the keep-in-touch list. Pages, the API and the email flows read those rows; only a fit writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.db import utcnow
from storefunnel.errors import Invalid, NotFound
from storefunnel.insight import clv
from storefunnel.insight.engine import workspace_currency
from storefunnel.insight.facts import EXCLUDED_STATUSES
from storefunnel.models import ClvPrediction, Contact, ModelFit, Order, Segment, SegmentMember
from storefunnel.segments import service as segments
from storefunnel.segments.repository import segment_by_name
from storefunnel.segments.schemas import MembersChange, SegmentCreate

ModelName = Literal["bgnbd", "pareto_nbd"]
MIN_CUSTOMERS = 20
HORIZON_DAYS = 90
CLV_MONTHS = 12
KEEP_IN_TOUCH_SEGMENT = "Keep in touch (lifetime value)"
KEEP_IN_TOUCH_DAYS_AGO = 30
MEMBER_BATCH = 10_000
INSERT_BATCH = 5_000


def purchase_days(
    session: Session, workspace_id: int, before: dt.datetime, currency: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(contact id, UTC day number since 1970, value in minor units) per purchase day, summed in SQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        day = sa.cast(sa.func.julianday(Order.placed_at) - 2440587.5, sa.Integer)
    else:
        day = sa.cast(sa.func.floor(sa.extract("epoch", Order.placed_at) / 86400), sa.BigInteger)
    stmt = (
        sa.select(Order.contact_id, day.label("day"), sa.func.sum(Order.total))
        .where(
            Order.workspace_id == workspace_id,
            Order.contact_id.is_not(None),
            Order.status.not_in(EXCLUDED_STATUSES),
            Order.currency == currency,
            Order.placed_at < before,
        )
        .group_by(Order.contact_id, day)
    )
    rows = session.execute(stmt).all()
    n = len(rows)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    days = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    values = np.fromiter((r[2] for r in rows), dtype=np.float64, count=n)
    return ids, days, values


def _day_number(when: dt.datetime) -> int:
    return (when.astimezone(dt.UTC).date() - dt.date(1970, 1, 1)).days


def _observation_end(observation_end: dt.date | None) -> dt.datetime:
    """The fit sees orders up to the end of this UTC day (default: yesterday, the last complete day)."""
    day = observation_end or (utcnow().date() - dt.timedelta(days=1))
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)


def fit_models(
    ids: npt.NDArray[np.int64],
    days: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    end_day: int,
    model: ModelName = "bgnbd",
) -> tuple[clv.RFM, clv.BetaGeo | clv.ParetoNBD, clv.GammaGamma | None]:
    """RFM per customer and the fitted purchase and spend models (spend only with enough repeat customers)."""
    rfm = clv.rfm_summary(ids, days, values, observation_end=end_day)
    if rfm.customer_ids.size < MIN_CUSTOMERS:
        raise Invalid(f"orders: at least {MIN_CUSTOMERS} customers are needed to fit, found {rfm.customer_ids.size}")
    purchase: clv.BetaGeo | clv.ParetoNBD
    if model == "bgnbd":
        purchase = clv.fit_bgnbd(rfm.frequency, rfm.recency, rfm.T)
    elif model == "pareto_nbd":
        purchase = clv.fit_pareto_nbd(rfm.frequency, rfm.recency, rfm.T)
    else:
        raise Invalid("model: bgnbd or pareto_nbd")
    repeaters = int(np.sum((rfm.frequency > 0) & (rfm.monetary_value > 0)))
    spend = clv.fit_gamma_gamma(rfm.frequency, rfm.monetary_value) if repeaters >= MIN_CUSTOMERS else None
    if spend is not None and spend.q <= 1:
        spend = None  # the population mean spend p*v/(q-1) does not exist: fall back to each customer's own mean
    return rfm, purchase, spend


def _params(model: clv.BetaGeo | clv.ParetoNBD | clv.GammaGamma) -> dict[str, float]:
    return {k: float(v) for k, v in vars(model).items() if isinstance(v, float)}


def fit_clv(
    session: Session, workspace_id: int, observation_end: dt.date | None = None, model: ModelName = "bgnbd"
) -> ModelFit:
    """Fit on every valid order up to ``observation_end`` and replace the workspace's stored predictions."""
    if model not in ("bgnbd", "pareto_nbd"):
        raise Invalid("model: bgnbd or pareto_nbd")
    currency = workspace_currency(session, workspace_id)
    end = _observation_end(observation_end)
    end_day = _day_number(end) - 1
    ids, days, values = purchase_days(session, workspace_id, end, currency)
    if ids.size == 0:
        raise Invalid(f"orders: no orders in {currency} to fit on")
    rfm, purchase, spend = fit_models(ids, days, values, end_day, model)
    x, tx, t, m = rfm.frequency, rfm.recency, rfm.T, rfm.monetary_value
    alive = purchase.probability_alive(x, tx, t)
    expected = purchase.expected_purchases(HORIZON_DAYS, x, tx, t)
    if spend is not None:
        per_order = spend.expected_spend(x, m)
    else:
        per_order = np.where(m > 0, m, _first_values(ids, days, values, rfm))
    value = purchase.clv(x, tx, t, per_order, months=CLV_MONTHS)
    picks = clv.keep_in_touch(x, tx, t, per_order, purchase, None, days_ago=KEEP_IN_TOUCH_DAYS_AGO)
    rank = np.zeros(x.size, dtype=np.int64)
    rank[picks] = np.arange(1, picks.size + 1)
    fit = ModelFit(
        workspace_id=workspace_id,
        kind="clv",
        params={
            "model": model,
            "purchase": _params(purchase),
            "spend": _params(spend) if spend is not None else None,
            "observation_end": (end - dt.timedelta(days=1)).date().isoformat(),
            "currency": currency,
            "time_unit": "day",
            "horizon_days": HORIZON_DAYS,
            "clv_months": CLV_MONTHS,
        },
        metrics={
            "customers": int(x.size),
            "repeat_customers": int(np.sum(x > 0)),
            "purchase_days": int(ids.size),
            "keep_in_touch": int(picks.size),
            "total_clv": float(value.sum()),
            "mean_probability_alive": float(alive.mean()),
        },
    )
    session.add(fit)
    session.flush()
    session.execute(sa.delete(ClvPrediction).where(ClvPrediction.workspace_id == workspace_id))
    rows = [
        {
            "workspace_id": workspace_id,
            "contact_id": int(c),
            "fit_id": fit.id,
            "frequency": float(a),
            "recency_days": float(b),
            "age_days": float(d),
            "monetary_value": float(e),
            "probability_alive": float(f),
            "expected_purchases_90d": float(g),
            "expected_spend": float(h),
            "clv": float(i),
            "keep_in_touch_rank": int(k) if k else None,
        }
        for c, a, b, d, e, f, g, h, i, k in zip(
            rfm.customer_ids.tolist(),
            x.tolist(),
            tx.tolist(),
            t.tolist(),
            m.tolist(),
            alive.tolist(),
            expected.tolist(),
            per_order.tolist(),
            value.tolist(),
            rank.tolist(),
            strict=True,
        )
    ]
    for start in range(0, len(rows), INSERT_BATCH):
        session.execute(sa.insert(ClvPrediction), rows[start : start + INSERT_BATCH])
    session.flush()
    return fit


def _first_values(
    ids: npt.NDArray[np.int64], days: npt.NDArray[np.int64], values: npt.NDArray[np.float64], rfm: clv.RFM
) -> npt.NDArray[np.float64]:
    """Each customer's mean purchase-day value (first purchase included): the spend of one-time buyers."""
    pos = np.searchsorted(rfm.customer_ids, ids)
    total = np.bincount(pos, weights=values, minlength=rfm.customer_ids.size)
    count = np.bincount(pos, minlength=rfm.customer_ids.size)
    return np.asarray(total / np.maximum(count, 1), dtype=np.float64)


def latest_fit(session: Session, workspace_id: int) -> ModelFit:
    fit = session.scalars(
        sa.select(ModelFit)
        .where(ModelFit.workspace_id == workspace_id, ModelFit.kind == "clv")
        .order_by(ModelFit.fitted_at.desc(), ModelFit.id.desc())
        .limit(1)
    ).first()
    if fit is None:
        raise NotFound("no lifetime-value fit yet: run 'storefunnel clv fit' or POST /api/v1/clv/fit")
    return fit


def fit_report(fit: ModelFit) -> dict[str, Any]:
    return {"id": fit.id, "fitted_at": fit.fitted_at.isoformat(), "params": fit.params, "metrics": fit.metrics}


def _prediction(p: ClvPrediction, c: Contact | None) -> dict[str, Any]:
    return {
        "contact_id": p.contact_id,
        "email": c.email if c else None,
        "first_name": c.first_name if c else None,
        "last_name": c.last_name if c else None,
        "frequency": p.frequency,
        "recency_days": p.recency_days,
        "age_days": p.age_days,
        "monetary_value": p.monetary_value,
        "probability_alive": p.probability_alive,
        "expected_purchases_90d": p.expected_purchases_90d,
        "expected_spend": p.expected_spend,
        "clv": p.clv,
        "keep_in_touch_rank": p.keep_in_touch_rank,
    }


def customers(
    session: Session, workspace_id: int, *, keep_in_touch: bool = False, limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """Stored predictions, most valuable first (or in keep-in-touch order), with the contact's name and email."""
    fit = latest_fit(session, workspace_id)
    base = sa.select(ClvPrediction, Contact).join(Contact, Contact.id == ClvPrediction.contact_id)
    preds = [ClvPrediction.workspace_id == workspace_id]
    order: tuple[Any, ...]
    if keep_in_touch:
        preds.append(ClvPrediction.keep_in_touch_rank.is_not(None))
        order = (ClvPrediction.keep_in_touch_rank,)
    else:
        order = (ClvPrediction.clv.desc(), ClvPrediction.contact_id)
    total = session.scalar(sa.select(sa.func.count()).select_from(ClvPrediction).where(*preds)) or 0
    rows = session.execute(base.where(*preds).order_by(*order).limit(limit).offset(offset)).all()
    return {
        "fit_id": fit.id,
        "currency": fit.params.get("currency"),
        "total": int(total),
        "limit": limit,
        "offset": offset,
        "items": [_prediction(p, c) for p, c in rows],
    }


def customer(session: Session, workspace_id: int, contact_id: int) -> dict[str, Any]:
    row = session.execute(
        sa.select(ClvPrediction, Contact)
        .join(Contact, Contact.id == ClvPrediction.contact_id)
        .where(ClvPrediction.workspace_id == workspace_id, ClvPrediction.contact_id == contact_id)
    ).first()
    if row is None:
        raise NotFound(f"contact {contact_id} has no lifetime-value prediction (not a customer at the last fit)")
    return _prediction(row[0], row[1])


def distribution(session: Session, workspace_id: int, bins: int = 20) -> dict[str, Any]:
    """Histogram of the stored 12-month CLVs (minor units), for the chart; the top 1% share one last bin."""
    fit = latest_fit(session, workspace_id)
    values = np.asarray(
        session.scalars(sa.select(ClvPrediction.clv).where(ClvPrediction.workspace_id == workspace_id)).all(),
        dtype=np.float64,
    )
    if values.size == 0:
        return {"fit_id": fit.id, "edges": [], "counts": [], "customers": 0}
    top = float(np.quantile(values, 0.99))
    edges = np.linspace(0.0, max(top, 1.0), bins + 1)
    counts = np.histogram(np.minimum(values, edges[-1]), bins=edges)[0]
    return {
        "fit_id": fit.id,
        "currency": fit.params.get("currency"),
        "edges": edges.tolist(),
        "counts": counts.astype(int).tolist(),
        "customers": int(values.size),
        "total": float(values.sum()),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
    }


def holdout_report(
    session: Session,
    workspace_id: int,
    holdout_days: int = 90,
    observation_end: dt.date | None = None,
    model: ModelName = "bgnbd",
) -> dict[str, Any]:
    """Fit on the orders before the last ``holdout_days`` and compare predicted with actual purchase days."""
    if not 7 <= holdout_days <= 730:
        raise Invalid("holdout_days: between 7 and 730")
    currency = workspace_currency(session, workspace_id)
    end = _observation_end(observation_end)
    end_day = _day_number(end) - 1
    ids, days, _ = purchase_days(session, workspace_id, end, currency)
    cal_end = end_day - holdout_days
    if np.unique(ids[days <= cal_end]).size < MIN_CUSTOMERS:
        raise Invalid(f"holdout_days: fewer than {MIN_CUSTOMERS} customers bought before the holdout period")
    rep = clv.calibration_holdout_report(ids, days, cal_end, end_day, model=model)
    corr = rep.correlation
    return {
        "model": model,
        "calibration_end": (dt.date(1970, 1, 1) + dt.timedelta(days=cal_end)).isoformat(),
        "observation_end": (dt.date(1970, 1, 1) + dt.timedelta(days=end_day)).isoformat(),
        "holdout_days": holdout_days,
        "params": rep.params,
        "rows": rep.rows(),
        "total_actual": rep.total_actual,
        "total_predicted": rep.total_predicted,
        "mae": rep.mae,
        "rmse": rep.rmse,
        "correlation": None if np.isnan(corr) else corr,
    }


def keep_in_touch_ids(session: Session, workspace_id: int) -> list[int]:
    return list(
        session.scalars(
            sa.select(ClvPrediction.contact_id)
            .where(ClvPrediction.workspace_id == workspace_id, ClvPrediction.keep_in_touch_rank.is_not(None))
            .order_by(ClvPrediction.keep_in_touch_rank)
        ).all()
    )


def refresh_keep_in_touch_segment(session: Session, workspace_id: int) -> dict[str, Any]:
    """Make the static segment "Keep in touch (lifetime value)" hold exactly the stored keep-in-touch list, so
    email flows can target it; created on first use. Past stays stay in the segment's history."""
    latest_fit(session, workspace_id)
    segment: Segment | None = segment_by_name(session, workspace_id, KEEP_IN_TOUCH_SEGMENT)
    if segment is None:
        segment = segments.create_segment(
            session,
            workspace_id,
            SegmentCreate(
                name=KEEP_IN_TOUCH_SEGMENT,
                kind="static",
                description="Valuable customers who are slipping away, from the latest lifetime-value fit.",
            ),
        )
    elif segment.kind != "static":
        raise Invalid(f"segment: {KEEP_IN_TOUCH_SEGMENT!r} exists and is dynamic; rename it to let the list refresh")
    target = set(keep_in_touch_ids(session, workspace_id))
    current = set(
        session.scalars(
            sa.select(SegmentMember.contact_id).where(
                SegmentMember.workspace_id == workspace_id,
                SegmentMember.segment_id == segment.id,
                SegmentMember.left_at.is_(None),
            )
        ).all()
    )
    gone, new = sorted(current - target), sorted(target - current)
    removed = added = 0
    count = segment.member_count
    for start in range(0, len(gone), MEMBER_BATCH):
        n, count = segments.remove_members(
            session, workspace_id, segment.id, MembersChange(contact_ids=gone[start : start + MEMBER_BATCH])
        )
        removed += n
    for start in range(0, len(new), MEMBER_BATCH):
        n, count = segments.add_members(
            session, workspace_id, segment.id, MembersChange(contact_ids=new[start : start + MEMBER_BATCH])
        )
        added += n
    return {"segment_id": segment.id, "name": segment.name, "added": added, "removed": removed, "member_count": count}
