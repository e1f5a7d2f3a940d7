"""SQL for products."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.models import Product
from storefunnel.pagination import paginate
from storefunnel.tenancy import scoped


def sku_taken(session: Session, workspace_id: int, sku: str) -> bool:
    return (
        session.scalar(scoped(Product, workspace_id).where(Product.sku == sku).with_only_columns(Product.id))
        is not None
    )


def list_products(
    session: Session, workspace_id: int, cursor: str | None, limit: int, category: str | None, q: str | None
) -> tuple[Sequence[Product], str | None]:
    stmt = scoped(Product, workspace_id)
    if category is not None:
        stmt = stmt.where(Product.category == category)
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(sa.or_(sa.func.lower(Product.name).like(like), sa.func.lower(Product.sku).like(like)))
    return paginate(session, stmt, Product.id, cursor, limit)
