"""Products, orders and their lines. Money is integer minor units with a currency."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefunnel.db import Base, BigId, JSONType, utcnow
from storefunnel.models.workspace import WorkspaceScoped


class Product(WorkspaceScoped, Base):
    __tablename__ = "products"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "sku", name="uq_products_workspace_sku"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sku: Mapped[str] = mapped_column(sa.String(100))
    name: Mapped[str] = mapped_column(sa.String(300))
    category: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    price: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    currency: Mapped[str] = mapped_column(sa.String(3), default="EUR")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Order(WorkspaceScoped, Base):
    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "source", "external_id", name="uq_orders_workspace_source_ext"),
        sa.Index("ix_orders_contact_time", "contact_id", "placed_at"),
        sa.Index("ix_orders_time", "workspace_id", "placed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    source: Mapped[str] = mapped_column(sa.String(20), default="api")
    external_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    placed_at: Mapped[dt.datetime]
    currency: Mapped[str] = mapped_column(sa.String(3))
    subtotal: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    discount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    shipping: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    tax: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    status: Mapped[str] = mapped_column(sa.String(20), default="paid")
    discount_codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OrderLine(WorkspaceScoped, Base):
    """One line item of an order.

    No foreign key to ``workspaces``: a line goes with its order (``ON DELETE CASCADE``), and the order with its
    workspace. An import of a million lines pays each foreign key as a trigger call per row.
    """

    __tablename__ = "order_lines"
    __table_args__ = (
        sa.Index("ix_order_lines_order", "order_id"),
        sa.Index("ix_order_lines_product", "product_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigId)
    order_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("products.id", ondelete="SET NULL"), default=None
    )
    sku: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    name: Mapped[str] = mapped_column(sa.String(300), default="")
    quantity: Mapped[int] = mapped_column(default=1)
    unit_price: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    discount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
