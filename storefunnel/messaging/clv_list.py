"""The keep-in-touch list from the lifetime-value model: valuable customers who are slipping away.

Orders are read in one query, turned into RFM with ``insight.clv.rfm_summary``, a BG/NBD is fitted, and
``insight.clv.keep_in_touch`` picks the customers; this module only prepares the arrays and maps indices to ids.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.cycle.rules import rules_from_settings
from storefunnel.errors import Invalid
from storefunnel.models import Order, Workspace

log = logging.getLogger(__name__)
MIN_CUSTOMERS = 20  # below this the model cannot be fitted meaningfully


def slipping_customers(session: Session, workspace_id: int, now: dt.datetime, limit: int = 1000) -> list[int]:
    """Contact ids on the keep-in-touch list, most valuable first; empty when there is too little history."""
    from storefunnel.insight import clv

    if not hasattr(clv, "keep_in_touch"):
        return []
    ws = session.get(Workspace, workspace_id)
    cancelled = rules_from_settings(ws.settings if ws else None).cancelled_statuses
    rows = session.execute(
        sa.select(Order.contact_id, Order.placed_at, Order.total).where(
            Order.workspace_id == workspace_id,
            Order.contact_id.is_not(None),
            Order.placed_at <= now,
            Order.status.not_in(cancelled),
        )
    ).all()
    if not rows:
        return []
    ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    days = np.asarray([r[1].replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
    values = np.asarray([r[2] for r in rows], dtype=np.float64)
    try:
        rfm = clv.rfm_summary(ids, days, values, observation_end=np.datetime64(now.replace(tzinfo=None), "D"))
        if rfm.customer_ids.size < MIN_CUSTOMERS:
            return []
        model = clv.fit_bgnbd(rfm.frequency, rfm.recency, rfm.T)
        picks = clv.keep_in_touch(rfm.frequency, rfm.recency, rfm.T, rfm.monetary_value, model, days_ago=30)
    except (Invalid, FloatingPointError, ValueError) as exc:
        log.warning("keep-in-touch list for workspace %s not computed: %s", workspace_id, exc)
        return []
    return [int(rfm.customer_ids[i]) for i in picks[:limit]]
