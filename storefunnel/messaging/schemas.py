"""Email API shapes: templates, campaigns, flows, sends (messages), suppressions, events, settings, results."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from storefunnel.limits import MAX_ID, NO_NUL

RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
Kind = Literal["marketing", "transactional"]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00\r\n]*$")]
MAX_DELAY_MINUTES = 525_600  # a flow step waits at most a year


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: Kind = "marketing"
    subject: str = Field(min_length=1, max_length=500, pattern=NO_NUL)
    html: str = Field(default="", max_length=200_000, pattern=NO_NUL)
    text: str = Field(default="", max_length=200_000, pattern=NO_NUL)


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    kind: Kind | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=500, pattern=NO_NUL)
    html: str | None = Field(default=None, max_length=200_000, pattern=NO_NUL)
    text: str | None = Field(default=None, max_length=200_000, pattern=NO_NUL)


class Template(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    subject: str
    html: str
    text: str
    created_at: dt.datetime
    updated_at: dt.datetime


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: RowId | None = Field(default=None, description="Render for this contact; default: a sample contact.")


class Preview(BaseModel):
    subject: str
    html: str
    text: str


class TestSendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: EmailStr | None = Field(default=None, description="Where to send the test (required).")
    contact_id: RowId | None = Field(default=None, description="Whose data fills the template; default: a sample.")


class TestSendResult(BaseModel):
    to: str
    message_id: str
    result: str
    detail: str


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00\r\n]*$")
    template_id: RowId
    segment_id: RowId | None = Field(default=None, description="The buying group; omitted: every contact.")


class CampaignUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00\r\n]*$")
    template_id: RowId | None = None
    segment_id: RowId | None = None


class CampaignSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send_at: dt.datetime | None = Field(
        default=None,
        description="When to send; a time without an offset is in the workspace's timezone. Omitted: now.",
    )


class Campaign(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    template_id: int
    segment_id: int | None
    status: str
    scheduled_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    recipients: int
    created_at: dt.datetime


class Results(BaseModel):
    """What a message did: the ledger (queued … unknown), what readers did, and orders credited by last click."""

    queued: int = 0
    sent: int = 0
    delivered: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    bounced: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    complained: int = 0
    orders: int = 0
    revenue: int = Field(default=0, description="Minor units of the workspace currency.")
    currency: str = "EUR"
    attribution_days: int = 5


class CampaignResults(Campaign):
    results: Results


class FlowStepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_minutes: int = Field(ge=0, le=MAX_DELAY_MINUTES, description="Wait after the previous step (or the trigger).")
    template_id: RowId
    condition: dict[str, Any] = Field(
        default_factory=dict,
        description='Optional: {"no_open_of_previous": true}, {"no_click_of_previous": true}, '
        '{"stage_in": ["keeping_in_touch"]}. A step whose condition fails is passed over.',
    )


class FlowStep(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    position: int
    delay_minutes: int
    template_id: int
    condition: dict[str, Any]


class FlowCreate(BaseModel):
    """A ready-made flow by name (welcome, abandoned_cart, thank_you, keep_in_touch, win_back, keep_in_touch_clv),
    or a flow of your own with a trigger and steps."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    enabled: bool = False
    description: str = Field(default="", max_length=500, pattern=NO_NUL)
    kind: Kind | None = None
    trigger_kind: Literal["stage", "event", "order", "lead", "clv"] | None = None
    trigger_value: str = Field(default="", max_length=200, pattern=NO_NUL)
    exit_on_order: bool | None = None
    steps: list[FlowStepIn] | None = Field(default=None, max_length=20)


class FlowUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500, pattern=NO_NUL)
    exit_on_order: bool | None = None
    steps: list[FlowStepIn] | None = Field(default=None, min_length=1, max_length=20)


class Flow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    kind: str
    trigger_kind: str
    trigger_value: str
    exit_on_order: bool
    enabled: bool
    steps: list[FlowStep] = []
    active_enrollments: int = 0


class FlowStepResults(BaseModel):
    step: FlowStep
    results: Results


class FlowResults(BaseModel):
    flow: Flow
    steps: list[FlowStepResults]


class Message(BaseModel):
    """One send: one message to one contact."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    contact_id: int
    template_id: int
    campaign_id: int | None
    flow_id: int | None
    flow_step_id: int | None
    kind: str
    to_email: str | None
    status: str
    due_at: dt.datetime
    attempts: int
    message_id: str | None
    sent_at: dt.datetime | None
    detail: str
    created_at: dt.datetime


class SuppressionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    reason: Literal["hard_bounce", "complaint", "unsubscribe", "manual"]
    detail: str = Field(default="", max_length=500, pattern=NO_NUL)


class Suppression(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    reason: str
    detail: str
    created_at: dt.datetime


class EventCreate(BaseModel):
    """A bounce or complaint reported by the mail system (a DSN, a feedback loop), for a send or an address."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bounced", "complained"]
    send_id: RowId | None = None
    email: EmailStr | None = None
    hard: bool = Field(default=True, description="A hard (permanent) bounce suppresses the address; a soft one not.")
    detail: str = Field(default="", max_length=500, pattern=NO_NUL)


class SettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_address: str | None = Field(default=None, max_length=300)
    reply_to: str | None = Field(default=None, max_length=300)
    unsubscribe_mailto: str | None = Field(default=None, max_length=254)
    frequency_cap: int | None = Field(default=None, ge=1, le=100)
    attribution_days: int | None = Field(default=None, ge=1, le=90)
    soft_bounce_limit: int | None = Field(default=None, ge=1, le=20)


class ReportOutcome(BaseModel):
    """What a bounce or complaint report did to one message (see docs/email.md, Bounces and complaints)."""

    kind: Literal["hard_bounce", "soft_bounce", "delayed", "delivered", "complaint", "ignored"]
    email: str | None
    send_id: int | None
    status: str = Field(description='The RFC 3463 status of the recipient, e.g. "5.1.1"; empty for complaints.')
    matched: bool = Field(description="Whether the report names a message this workspace sent.")
    suppressed: bool = Field(description="Whether the address was put on the suppression list by this report.")
    duplicate: bool = Field(description="The same report was read before: nothing changed.")
    detail: str


class ReportResult(BaseModel):
    report_type: Literal["delivery-status", "feedback-report"]
    outcomes: list[ReportOutcome]
