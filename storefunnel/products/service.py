"""Product catalogue operations; takes the session, never commits."""

from __future__ import annotations

from sqlalchemy.orm import Session

from storefunnel.errors import Conflict
from storefunnel.models import Product
from storefunnel.products import repository
from storefunnel.products.schemas import ProductCreate, ProductUpdate
from storefunnel.tenancy import get_scoped


def create_product(session: Session, workspace_id: int, data: ProductCreate) -> Product:
    if repository.sku_taken(session, workspace_id, data.sku):
        raise Conflict(f"sku: a product with sku {data.sku!r} already exists")
    product = Product(workspace_id=workspace_id, **data.model_dump())
    session.add(product)
    session.flush()
    return product


def update_product(session: Session, workspace_id: int, product_id: int, data: ProductUpdate) -> Product:
    product = get_scoped(session, Product, workspace_id, product_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(product, field, value)
    session.flush()
    return product
