"""Lead scoring: the model each workspace trained on its own history, and the latest score of every contact."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class ScoringModel(WorkspaceScoped, Base):
    """One trained model: coefficients on standardized features, how it was trained, and its holdout metrics.

    Every training is kept (the newest is the one in use), so an owner can see whether a retrain helped.
    """

    __tablename__ = "scoring_models"
    __table_args__ = (sa.Index("ix_scoring_models_workspace_trained", "workspace_id", "trained_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trained_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    horizon_days: Mapped[int] = mapped_column()
    half_life_days: Mapped[float] = mapped_column(sa.Float)
    # {"names": [...], "groups": [...], "mean": [...], "scale": [...], "coef": [...], "intercept": x, ...}
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"auc": x, "recency_auc": x, "n_train": n, "calibration": [...], ...}
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ContactScore(WorkspaceScoped, Base):
    """A contact's latest score: the probability of a first order within the model's horizon, split in two."""

    __tablename__ = "contact_scores"
    __table_args__ = (
        sa.UniqueConstraint("contact_id", name="uq_contact_scores_contact_id"),
        sa.Index("ix_contact_scores_workspace_score", "workspace_id", "score"),
        sa.Index("ix_contact_scores_model", "model_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("scoring_models.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(sa.Float)
    logit: Mapped[float] = mapped_column(sa.Float)
    fit: Mapped[float] = mapped_column(sa.Float)
    engagement: Mapped[float] = mapped_column(sa.Float)
    scored_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
