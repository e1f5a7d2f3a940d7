"""Stored model results: lifetime-value fits and per-customer predictions, related-product rules, best sellers.

Fitting is slow next to reading: the dashboard, the API and the email flows read these rows; ``storefunnel clv
fit`` and ``storefunnel related build`` (or the nightly job) replace them. Each build replaces a workspace's rows
in one transaction, so readers see the old set or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class ModelFit(WorkspaceScoped, Base):
    """One fit of a model (``kind``: ``clv`` or ``related``): its parameters, inputs and checks; history is kept."""

    __tablename__ = "model_fits"
    __table_args__ = (sa.Index("ix_model_fits_workspace_kind_fitted", "workspace_id", "kind", "fitted_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    fitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # clv: {"model": "bgnbd", "r": .., "alpha": .., "a": .., "b": .., "gamma_gamma": {...}, "observation_end": ..}
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # clv: customers, log-likelihood, holdout errors; related: baskets, rules, hit rates
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ClvPrediction(WorkspaceScoped, Base):
    """A customer's RFM summary and what the latest fit predicts for them (money in the store's minor units)."""

    __tablename__ = "clv_predictions"
    __table_args__ = (
        sa.UniqueConstraint("contact_id", name="uq_clv_predictions_contact_id"),
        sa.Index("ix_clv_predictions_workspace_clv", "workspace_id", "clv"),
        sa.Index("ix_clv_predictions_workspace_keep", "workspace_id", "keep_in_touch_rank"),
        sa.Index("ix_clv_predictions_fit", "fit_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    fit_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("model_fits.id", ondelete="CASCADE"))
    frequency: Mapped[float] = mapped_column(sa.Float)
    recency_days: Mapped[float] = mapped_column(sa.Float)
    age_days: Mapped[float] = mapped_column(sa.Float)
    monetary_value: Mapped[float] = mapped_column(sa.Float)
    probability_alive: Mapped[float] = mapped_column(sa.Float)
    expected_purchases_90d: Mapped[float] = mapped_column(sa.Float)
    expected_spend: Mapped[float] = mapped_column(sa.Float)
    clv: Mapped[float] = mapped_column(sa.Float)
    # 1 = the most valuable customer slipping away; NULL = not on the keep-in-touch list
    keep_in_touch_rank: Mapped[int | None] = mapped_column(default=None)


class RelatedRule(WorkspaceScoped, Base):
    """A pair rule ``antecedent -> consequent`` between products, with its support, confidence and lift."""

    __tablename__ = "related_rules"
    __table_args__ = (
        # The recommendation query looks rules up by what the contact owns (product ids are global), reading
        # the consequent and confidence from the index alone.
        sa.Index("ix_related_rules_antecedent", "antecedent_id", "consequent_id", "confidence"),
        sa.Index("ix_related_rules_consequent", "consequent_id"),
        sa.Index("ix_related_rules_workspace_lift", "workspace_id", "lift"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    antecedent_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("products.id", ondelete="CASCADE"))
    consequent_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("products.id", ondelete="CASCADE"))
    baskets: Mapped[int] = mapped_column()
    support: Mapped[float] = mapped_column(sa.Float)
    confidence: Mapped[float] = mapped_column(sa.Float)
    lift: Mapped[float] = mapped_column(sa.Float)


class BestSeller(WorkspaceScoped, Base):
    """The best sellers of a buying group (a segment; NULL = every customer), the fallback for recommendations."""

    __tablename__ = "best_sellers"
    __table_args__ = (
        sa.Index("ix_best_sellers_lookup", "workspace_id", "segment_id", "rank"),
        sa.Index("ix_best_sellers_product", "product_id"),
        sa.Index("ix_best_sellers_segment", "segment_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    segment_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("segments.id", ondelete="CASCADE"), default=None
    )
    product_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("products.id", ondelete="CASCADE"))
    orders: Mapped[int] = mapped_column()
    rank: Mapped[int] = mapped_column()
