"""Order operations; takes the session, never commits. The server is the one that adds money up."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefunnel.contacts import repository as contacts_repository
from storefunnel.cycle.service import on_facts_changed
from storefunnel.db import utcnow
from storefunnel.errors import Conflict, Invalid
from storefunnel.jobs import wakeup
from storefunnel.models import Contact, OrderLine
from storefunnel.models import Order as OrderRow
from storefunnel.orders import repository
from storefunnel.orders.schemas import Order, OrderCreate, OrderUpdate
from storefunnel.orders.schemas import OrderLine as OrderLineRead
from storefunnel.tenancy import get_scoped


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", errors=[{"field": field, "message": message}])


def to_read(order: OrderRow, lines: Sequence[OrderLine]) -> Order:
    return Order(
        id=order.id,
        contact_id=order.contact_id,
        source=order.source,
        external_id=order.external_id,
        placed_at=order.placed_at,
        currency=order.currency,
        status=order.status,
        subtotal=order.subtotal,
        discount=order.discount,
        shipping=order.shipping,
        tax=order.tax,
        total=order.total,
        discount_codes=list(order.discount_codes or []),
        properties=dict(order.properties or {}),
        created_at=order.created_at,
        updated_at=order.updated_at,
        lines=[OrderLineRead.model_validate(line) for line in lines],
    )


def _contact_id(session: Session, workspace_id: int, data: OrderCreate) -> int | None:
    """The order's contact: an id that must be this workspace's, or an email found or created here."""
    if data.contact_id is not None:
        found = session.scalar(
            sa.select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.id == data.contact_id)
        )
        if found is None:
            raise _invalid("contact_id", f"contact {data.contact_id} not found in this workspace")
        return found
    if data.email is None:
        return None
    existing = contacts_repository.id_by_email(session, workspace_id, data.email)
    if existing is not None:
        return existing
    contact = Contact(workspace_id=workspace_id, email=data.email, traits={})
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
    except sa.exc.IntegrityError:
        # Another request created the same email between our read and our insert: use theirs.
        again = contacts_repository.id_by_email(session, workspace_id, data.email)
        if again is None:
            raise
        return again
    return contact.id


def create_order(session: Session, workspace_id: int, data: OrderCreate) -> Order:
    if data.external_id is not None and repository.external_id_taken(
        session, workspace_id, data.source, data.external_id
    ):
        raise Conflict(
            f"external_id: an order with external_id {data.external_id!r} from source {data.source!r} already exists",
            errors=[{"field": "external_id"}],
        )
    products = repository.products_by_sku(session, workspace_id, (ln.sku for ln in data.lines if ln.sku))
    lines: list[OrderLine] = []
    for i, ln in enumerate(data.lines):
        product = products.get(ln.sku) if ln.sku else None
        name = ln.name or (product.name if product else "")
        if not name and not ln.sku:
            raise _invalid(f"lines.{i}.name", "a line needs a sku or a name")
        lines.append(
            OrderLine(
                workspace_id=workspace_id,
                product_id=product.id if product else None,
                sku=ln.sku,
                name=name,
                quantity=ln.quantity,
                unit_price=ln.unit_price,
                discount=ln.discount,
                total=ln.quantity * ln.unit_price - ln.discount,
            )
        )
    subtotal = sum(line.total for line in lines)
    if data.discount > subtotal:
        raise _invalid("discount", f"order discount {data.discount} is larger than the subtotal {subtotal}")
    total = subtotal - data.discount + data.shipping + data.tax
    if data.subtotal is not None and data.subtotal != subtotal:
        raise _invalid("subtotal", f"is {data.subtotal} but the lines add up to {subtotal}")
    if data.total is not None and data.total != total:
        raise _invalid(
            "total",
            f"is {data.total} but subtotal {subtotal} - discount {data.discount} + shipping {data.shipping}"
            f" + tax {data.tax} = {total}",
        )
    contact_id = _contact_id(session, workspace_id, data)
    order = OrderRow(
        workspace_id=workspace_id,
        contact_id=contact_id,
        source=data.source,
        external_id=data.external_id,
        placed_at=data.placed_at,
        currency=data.currency,
        status=data.status.value,
        subtotal=subtotal,
        discount=data.discount,
        shipping=data.shipping,
        tax=data.tax,
        total=total,
        discount_codes=list(data.discount_codes),
        properties=data.properties,
    )
    try:
        with session.begin_nested():
            session.add(order)
            session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(
            f"external_id: an order with external_id {data.external_id!r} was created concurrently",
            errors=[{"field": "external_id"}],
        ) from None
    for line in lines:
        line.order_id = order.id
    session.add_all(lines)
    session.flush()
    _advance_cycle(session, workspace_id, order)
    wakeup.request(session)  # a flow (the thank-you) may start: wake a worker after the commit
    return to_read(order, lines)


def _advance_cycle(session: Session, workspace_id: int, order: OrderRow) -> None:
    """An order (or its cancellation) moves the buyer through the sales cycle in the same transaction."""
    if order.contact_id is not None:
        on_facts_changed(session, workspace_id, [order.contact_id])


def get_order(session: Session, workspace_id: int, order_id: int) -> Order:
    order = get_scoped(session, OrderRow, workspace_id, order_id)
    return to_read(order, repository.lines_of(session, workspace_id, [order.id]).get(order.id, []))


def update_order(session: Session, workspace_id: int, order_id: int, data: OrderUpdate) -> Order:
    order = get_scoped(session, OrderRow, workspace_id, order_id)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise _invalid(field, "may not be null")
        setattr(order, field, value.value if field == "status" else value)
    order.updated_at = utcnow()
    session.flush()
    if "status" in changes:
        _advance_cycle(session, workspace_id, order)
    return to_read(order, repository.lines_of(session, workspace_id, [order.id]).get(order.id, []))


def page_to_read(session: Session, workspace_id: int, orders: Sequence[OrderRow]) -> list[Order]:
    lines = repository.lines_of(session, workspace_id, [o.id for o in orders])
    return [to_read(o, lines.get(o.id, [])) for o in orders]
