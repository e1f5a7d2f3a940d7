"""SQL for orders: natural-key lookups, product links by sku, lines of a page, the filtered list."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from storefunnel.models import Order, OrderLine, Product
from storefunnel.pagination import paginate
from storefunnel.tenancy import scoped


def external_id_taken(session: Session, workspace_id: int, source: str, external_id: str) -> bool:
    stmt = scoped(Order, workspace_id).where(Order.source == source, Order.external_id == external_id)
    return session.scalar(stmt.with_only_columns(Order.id)) is not None


def products_by_sku(session: Session, workspace_id: int, skus: Iterable[str]) -> dict[str, Product]:
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    return {p.sku: p for p in session.scalars(scoped(Product, workspace_id).where(Product.sku.in_(wanted)))}


def lines_of(session: Session, workspace_id: int, order_ids: Sequence[int]) -> dict[int, list[OrderLine]]:
    """The lines of several orders in one query (a page's worth), in their original order."""
    grouped: dict[int, list[OrderLine]] = defaultdict(list)
    if order_ids:
        stmt = scoped(OrderLine, workspace_id).where(OrderLine.order_id.in_(order_ids)).order_by(OrderLine.id)
        for line in session.scalars(stmt):
            grouped[line.order_id].append(line)
    return grouped


@dataclass(frozen=True)
class OrderFilters:
    contact_id: int | None = None
    placed_after: dt.datetime | None = None
    placed_before: dt.datetime | None = None
    status: str | None = None
    currency: str | None = None


def list_orders(
    session: Session, workspace_id: int, filters: OrderFilters, cursor: str | None, limit: int
) -> tuple[Sequence[Order], str | None]:
    stmt = scoped(Order, workspace_id)
    if filters.contact_id is not None:
        stmt = stmt.where(Order.contact_id == filters.contact_id)
    if filters.placed_after is not None:
        stmt = stmt.where(Order.placed_at >= filters.placed_after)
    if filters.placed_before is not None:
        stmt = stmt.where(Order.placed_at < filters.placed_before)
    if filters.status is not None:
        stmt = stmt.where(Order.status == filters.status)
    if filters.currency is not None:
        stmt = stmt.where(Order.currency == filters.currency.upper())
    return paginate(session, stmt, Order.id, cursor, limit)
