"""/api/v1/orders: thin handlers over the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime

from storefunnel.auth.deps import CurrentWorkspace
from storefunnel.db import SessionDep
from storefunnel.limits import MAX_ID, NO_NUL
from storefunnel.orders import repository, service
from storefunnel.orders.schemas import Order, OrderCreate, OrderStatus, OrderUpdate
from storefunnel.pagination import DEFAULT_LIMIT, CursorParam, LimitParam, Page

router = APIRouter(prefix="/orders", tags=["orders"])
OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", response_model=Order, status_code=201)
def create_order(data: OrderCreate, session: SessionDep, workspace_id: CurrentWorkspace) -> Order:
    return service.create_order(session, workspace_id, data)


@router.get("", response_model=Page[Order])
def list_orders(
    session: SessionDep,
    workspace_id: CurrentWorkspace,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
    contact_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    placed_after: Annotated[AwareDatetime | None, Query(description="placed_at >= this (inclusive).")] = None,
    placed_before: Annotated[AwareDatetime | None, Query(description="placed_at < this (exclusive).")] = None,
    status: OrderStatus | None = None,
    currency: Annotated[str | None, Query(min_length=3, max_length=3, pattern=NO_NUL, description="ISO 4217.")] = None,
) -> Page[Order]:
    filters = repository.OrderFilters(
        contact_id=contact_id,
        placed_after=placed_after,
        placed_before=placed_before,
        status=status.value if status else None,
        currency=currency,
    )
    rows, next_cursor = repository.list_orders(session, workspace_id, filters, cursor, limit)
    return Page[Order](data=service.page_to_read(session, workspace_id, rows), next_cursor=next_cursor)


@router.get("/{order_id}", response_model=Order)
def get_order(order_id: OrderId, session: SessionDep, workspace_id: CurrentWorkspace) -> Order:
    return service.get_order(session, workspace_id, order_id)


@router.patch("/{order_id}", response_model=Order)
def update_order(order_id: OrderId, data: OrderUpdate, session: SessionDep, workspace_id: CurrentWorkspace) -> Order:
    return service.update_order(session, workspace_id, order_id, data)
