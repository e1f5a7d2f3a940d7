"""Read and write models of the scoring API."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(default=30, ge=7, le=180, description="Predict a first order within this many days.")
    half_life_days: float = Field(
        default=14.0, gt=0, le=365, description="A touch this many days old counts half as much as one today."
    )
    target_segments: list[int] | None = Field(
        default=None,
        max_length=50,
        description="Segment ids the store targets (fit features); omitted keeps the stored list.",
    )
    as_of: AwareDatetime | None = Field(default=None, description="Train as if it were this time (default now).")


class CalibrationBin(BaseModel):
    bin: int
    contacts: int
    predicted: float
    observed: float
    buyers: int
    min_predicted: float
    max_predicted: float


class Metrics(BaseModel):
    auc: float | None = Field(description="Holdout ROC AUC of the model trained one horizon earlier.")
    recency_auc: float | None = Field(description="Holdout AUC of ranking by days since the last touch alone.")
    train_cutoff: dt.datetime
    holdout_cutoff: dt.datetime
    n_train: int
    train_buyers: int
    n_holdout: int
    holdout_buyers: int
    base_rate: float
    calibration: list[CalibrationBin]


class Coefficient(BaseModel):
    feature: str
    group: Literal["fit", "engagement"]
    label: str
    weight: float = Field(description="Logit change per standard deviation of the feature.")


class ModelOut(BaseModel):
    id: int
    trained_at: dt.datetime
    horizon_days: int
    half_life_days: float
    target_segments: dict[str, str]
    scored: int
    metrics: Metrics
    coefficients: list[Coefficient]


class ScoreItem(BaseModel):
    contact_id: int
    email: str | None
    name: str
    stage: str | None
    score: float = Field(description="Probability of a first order within the model's horizon.")
    fit: float = Field(description="Logit points from who the contact is, relative to the average contact.")
    engagement: float = Field(description="Logit points from what the contact has been doing.")
    scored_at: dt.datetime


class ScoresPage(BaseModel):
    data: list[ScoreItem]
    next_cursor: str | None = None


class Factor(BaseModel):
    feature: str
    group: Literal["fit", "engagement"]
    text: str = Field(description='Plain words, e.g. "4 email opens, recent ones counted more".')
    value: float
    contribution: float = Field(description="Logit points this factor adds (coefficient x standardized value).")


class Explanation(BaseModel):
    contact_id: int
    model_id: int
    scored_at: dt.datetime
    score: float
    logit: float
    base: float = Field(description="Logit of the average contact (the intercept).")
    fit: float
    engagement: float
    factors: list[Factor]


class TouchBrief(BaseModel):
    occurred_at: dt.datetime
    kind: str
    event: str | None
    channel: str


class FollowUpItem(ScoreItem):
    top_factors: list[Factor]
    last_touches: list[TouchBrief]
