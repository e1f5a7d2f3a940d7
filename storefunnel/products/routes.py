"""/api/v1/products: thin handlers over the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.limits import MAX_ID
from storefunnel.models import Product as ProductRow
from storefunnel.pagination import DEFAULT_LIMIT, CursorParam, LimitParam, Page
from storefunnel.products import repository, service
from storefunnel.products.schemas import Product, ProductCreate, ProductUpdate
from storefunnel.tenancy import get_scoped

router = APIRouter(prefix="/products", tags=["products"])
ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", response_model=Product, status_code=201)
def create_product(data: ProductCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> ProductRow:
    return service.create_product(session, workspace_id, data)


@router.get("", response_model=Page[Product])
def list_products(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
    category: str | None = None,
    q: str | None = None,
) -> Page[Product]:
    rows, next_cursor = repository.list_products(session, workspace_id, cursor, limit, category, q)
    return Page[Product](data=[Product.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{product_id}", response_model=Product)
def get_product(product_id: ProductId, session: SessionDep, workspace_id: CurrentWorkspace) -> ProductRow:
    return get_scoped(session, ProductRow, workspace_id, product_id)


@router.patch("/{product_id}", response_model=Product)
def update_product(
    product_id: ProductId, data: ProductUpdate, session: SessionDep, workspace_id: CurrentWorkspace
) -> ProductRow:
    return service.update_product(session, workspace_id, product_id, data)
