"""Read and write models of the cycle API; the rules model itself lives in ``rules``."""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from storefunnel.cycle.rules import CycleRules

__all__ = ["CycleRules", "HistoryItem", "Pipeline", "RecomputeIn", "RecomputeOut", "StageCounts"]


class StageCounts(BaseModel):
    counts: dict[str, int] = Field(description="Contacts currently in each stage.")
    total: int


class HistoryItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    changed_at: dt.datetime
    from_stage: str | None
    stage: str
    reason: str


class RecomputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: AwareDatetime | None = Field(default=None, description="Compute the cycle as of this time (default now).")


class RecomputeOut(BaseModel):
    as_of: dt.datetime
    transitions: int
    counts: dict[str, int]


class PipelineStage(BaseModel):
    stage: str
    contacts: int = Field(description="Contacts in this stage at the end of the period.")
    entered: int = Field(description="Entries into this stage during the period.")
    exited: int = Field(description="Of those entries, how many left the stage before the end of the period.")
    median_days_in_stage: float | None = Field(description="Median days in the stage of the entries that left.")


class Conversion(BaseModel):
    from_stage: str
    to_stage: str
    count: int
    of: int = Field(description="Entries into from_stage during the period (the denominator).")
    rate: float
    low: float = Field(description="Wilson 95% interval, lower bound.")
    high: float = Field(description="Wilson 95% interval, upper bound.")


class Pipeline(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.datetime = Field(alias="from")
    to: dt.datetime
    stages: list[PipelineStage]
    conversions: list[Conversion]
