"""Email: templates, campaigns, flows and their steps, who is in which flow, every send, suppressions, events.

``sends`` is the ledger of the at-most-once guarantee: one row per (campaign, contact) and per (flow enrollment,
flow step), enforced by UNIQUE constraints, so no retry, race or restart can create a second message for the
same thing. A row moves ``queued`` -> ``sending`` (claimed by one worker, with an attempt id and a Message-ID
written before any byte goes to the SMTP server) -> ``sent`` in a separate commit; see docs/email.md.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class MessageKind(enum.StrEnum):
    """Marketing needs consent; transactional (a thank-you for an order) does not, but never goes to a bounce."""

    marketing = "marketing"
    transactional = "transactional"


class SendStatus(enum.StrEnum):
    queued = "queued"  # waiting for its due time and a worker
    sending = "sending"  # claimed by one worker; the SMTP conversation may be under way
    sent = "sent"  # the SMTP server accepted it (250 after DATA)
    skipped = "skipped"  # not sent on purpose: no consent, unsubscribed, suppressed, frequency cap, no address
    failed = "failed"  # refused by the server or out of retries; never reached the recipient
    unknown = "unknown"  # the worker died or the connection broke mid-delivery: maybe delivered, never resent


class EventKind(enum.StrEnum):
    sent = "sent"
    delivered = "delivered"
    bounced = "bounced"
    complained = "complained"
    opened = "opened"
    clicked = "clicked"
    unsubscribed = "unsubscribed"
    delayed = "delayed"  # a relay reported the message delayed (RFC 3464 Action: delayed): still being tried


class SuppressionReason(enum.StrEnum):
    hard_bounce = "hard_bounce"
    soft_bounce = "soft_bounce"  # several temporary failures in a row: stops marketing, not transactional mail
    complaint = "complaint"
    unsubscribe = "unsubscribe"
    manual = "manual"


class EmailTemplate(WorkspaceScoped, Base):
    __tablename__ = "email_templates"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name", name="uq_email_templates_workspace_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(16), default=MessageKind.marketing.value)
    subject: Mapped[str] = mapped_column(sa.String(500))
    html: Mapped[str] = mapped_column(sa.Text, default="")
    text: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Campaign(WorkspaceScoped, Base):
    """One message to a segment (or to every contact when ``segment_id`` is NULL), now or at ``scheduled_at``."""

    __tablename__ = "campaigns"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "name", name="uq_campaigns_workspace_name"),
        sa.Index("ix_campaigns_due", "status", "scheduled_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    template_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("email_templates.id", ondelete="RESTRICT"))
    segment_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("segments.id", ondelete="SET NULL"), default=None
    )
    # draft -> scheduled -> sending (recipients written) -> sent (nothing left queued); or cancelled.
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    recipients: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Flow(WorkspaceScoped, Base):
    """An automated sequence started by a trigger; ``cursor`` is how far its trigger source has been read."""

    __tablename__ = "flows"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name", name="uq_flows_workspace_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    kind: Mapped[str] = mapped_column(sa.String(16), default=MessageKind.marketing.value)
    # trigger_kind: stage (a cycle transition to trigger_value), event (a track event named trigger_value),
    # order (a new order that counts as buying), lead (a new contact), clv (the keep-in-touch list).
    trigger_kind: Mapped[str] = mapped_column(sa.String(16))
    trigger_value: Mapped[str] = mapped_column(sa.String(200), default="")
    exit_on_order: Mapped[bool] = mapped_column(default=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    cursor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FlowStep(WorkspaceScoped, Base):
    __tablename__ = "flow_steps"
    __table_args__ = (sa.UniqueConstraint("flow_id", "position", name="uq_flow_steps_flow_position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    flow_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("flows.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column()
    delay_minutes: Mapped[int] = mapped_column(default=0)
    template_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("email_templates.id", ondelete="RESTRICT"))
    # e.g. {"no_open_of_previous": true}: a step whose condition fails is passed over, the flow goes on.
    condition: Mapped[dict[str, Any]] = mapped_column(default=dict)


class FlowEnrollment(WorkspaceScoped, Base):
    """One contact's way through one flow; ``trigger_key`` (e.g. ``order:42``) makes a replayed trigger harmless."""

    __tablename__ = "flow_enrollments"
    __table_args__ = (
        sa.UniqueConstraint("flow_id", "contact_id", "trigger_key", name="uq_flow_enrollments_trigger"),
        sa.Index("ix_flow_enrollments_due", "status", "due_at"),
        sa.Index("ix_flow_enrollments_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    flow_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("flows.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    trigger_key: Mapped[str] = mapped_column(sa.String(100))
    next_position: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(sa.String(12), default="active")  # active, completed, exited
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    exit_reason: Mapped[str] = mapped_column(sa.String(100), default="")


class Send(WorkspaceScoped, Base):
    """One message to one contact: the unit of the at-most-once guarantee."""

    __tablename__ = "sends"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "contact_id", name="uq_sends_campaign_contact"),
        sa.UniqueConstraint("enrollment_id", "flow_step_id", name="uq_sends_enrollment_step"),
        sa.Index("ix_sends_due", "status", "due_at"),
        sa.Index("ix_sends_contact", "contact_id", "created_at"),
        sa.Index("ix_sends_flow_step", "flow_step_id"),
        sa.Index("ix_sends_template", "template_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    template_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("email_templates.id", ondelete="RESTRICT"))
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), default=None
    )
    flow_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("flows.id", ondelete="CASCADE"), default=None)
    flow_step_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("flow_steps.id", ondelete="CASCADE"), default=None
    )
    enrollment_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("flow_enrollments.id", ondelete="CASCADE"), default=None
    )
    kind: Mapped[str] = mapped_column(sa.String(16), default=MessageKind.marketing.value)
    to_email: Mapped[str | None] = mapped_column(sa.String(254), default=None)
    status: Mapped[str] = mapped_column(sa.String(12), default=SendStatus.queued.value)
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    attempt_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    message_id: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    detail: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Suppression(WorkspaceScoped, Base):
    """An address that must not be mailed: hard bounce and complaint stop everything, unsubscribe stops marketing."""

    __tablename__ = "suppressions"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "email", name="uq_suppressions_workspace_email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    reason: Mapped[str] = mapped_column(sa.String(16))
    detail: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MessageEvent(WorkspaceScoped, Base):
    """What happened to a message after it was sent; ``dedupe_key`` makes a replayed report (a DSN) harmless."""

    __tablename__ = "message_events"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "dedupe_key", name="uq_message_events_workspace_dedupe"),
        sa.Index("ix_message_events_send", "send_id", "kind"),
        sa.Index("ix_message_events_contact", "contact_id", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("sends.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    url: Mapped[str | None] = mapped_column(sa.Text, default=None)
    detail: Mapped[str] = mapped_column(sa.String(500), default="")
    # The RFC 3463 status of a bounce or delay ("5.1.1", "4.2.2"): 5 is permanent (hard), 4 temporary (soft).
    status_code: Mapped[str] = mapped_column(sa.String(16), default="")
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(100), default=None)
