"""What ingest needs to be idempotent and what marketing spends."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class Receipt(WorkspaceScoped, Base):
    """One row per delivered message/webhook/import row key: a replay finds it and changes nothing."""

    __tablename__ = "receipts"
    __table_args__ = (sa.PrimaryKeyConstraint("workspace_id", "source", "key", name="pk_receipts"),)

    source: Mapped[str] = mapped_column(sa.String(20))
    key: Mapped[str] = mapped_column(sa.String(200))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Spend(WorkspaceScoped, Base):
    """Money spent on a tactic (channel, campaign) on one day."""

    __tablename__ = "spend"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "day", "channel", "campaign", name="uq_spend_workspace_day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date)
    channel: Mapped[str] = mapped_column(sa.String(40))
    campaign: Mapped[str] = mapped_column(sa.String(200), default="")
    cost: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))


class WebhookSecret(WorkspaceScoped, Base):
    """Shared secret a store platform signs its webhooks with (kept in clear: HMAC needs it)."""

    __tablename__ = "webhook_secrets"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "platform", name="uq_webhook_secrets_platform"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(sa.String(20))
    secret: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
