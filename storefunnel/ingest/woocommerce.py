"""WooCommerce webhook payloads (REST API v3 order shape) mapped onto storefunnel's contacts, products and orders.

Orders are keyed by WooCommerce's order id. Line ``subtotal`` is before coupons and ``total`` after, both
without tax; the order's ``total`` is what the customer paid.
"""

from __future__ import annotations

from typing import Any

from storefunnel.ingest.orders_upsert import (
    ContactIn,
    LineIn,
    OrderIn,
    RecordError,
    check_currency,
    clean_email,
    clip,
    parse_datetime,
    to_minor,
)
from storefunnel.ingest.shopify import as_list, as_object, country

SOURCE = "woocommerce"
TOPICS = frozenset({"order.created", "order.updated"})
STATUSES = {
    "processing": "paid",
    "completed": "paid",
    "pending": "pending",
    "on-hold": "pending",
    "checkout-draft": "pending",
    "cancelled": "cancelled",
    "refunded": "refunded",
    "failed": "failed",
    "trash": "cancelled",
}


def order_status(value: Any) -> str:
    status = str(value or "").strip().lower()
    if status not in STATUSES:
        raise RecordError(f"status: {value!r} is not a WooCommerce order status")
    return STATUSES[status]


def _line(item: Any, index: int, currency: str) -> LineIn:
    field = f"line_items[{index}]"
    item = as_object(item, field)
    try:
        quantity = int(item.get("quantity", 0))
    except (TypeError, ValueError):
        raise RecordError(f"{field}.quantity: expected a whole number") from None
    if quantity < 0:
        raise RecordError(f"{field}.quantity: must not be negative")
    before = to_minor(item.get("subtotal") or "0", currency, f"{field}.subtotal")
    after = to_minor(item.get("total") or "0", currency, f"{field}.total")
    sku = str(item.get("sku") or "").strip() or None
    product_id, variation_id = item.get("product_id"), item.get("variation_id")
    key = sku if sku and len(sku) <= 100 else f"{SOURCE}:{product_id or 0}:{variation_id or 0}"
    return LineIn(
        product_key=key,
        sku=clip(sku, 100),
        name=str(item.get("name") or "")[:300],
        quantity=quantity,
        # The unit price is the line's pre-coupon subtotal shared out; the line total stays exact.
        unit_price=round(before / quantity) if quantity else before,
        discount=before - after,
        total=after,
    )


def _when(payload: dict[str, Any], key: str) -> Any:
    """WooCommerce sends ``*_gmt`` times without an offset; they are UTC."""
    return payload.get(f"{key}_gmt") or payload.get(key)


def order_from_payload(payload: dict[str, Any]) -> OrderIn:
    order_id = payload.get("id")
    if not order_id:
        raise RecordError("id: the order id is required")
    currency = check_currency(payload.get("currency"), "currency")
    lines = [_line(item, i, currency) for i, item in enumerate(as_list(payload.get("line_items"), "line_items"))]
    billing = as_object(payload.get("billing"), "billing")
    email = clean_email(billing.get("email"), "billing.email")
    customer_id = payload.get("customer_id")
    contact = None
    if email or customer_id:
        contact = ContactIn(
            email=email,
            external_id=f"{SOURCE}:{customer_id}" if customer_id else None,
            first_name=clip(billing.get("first_name"), 100),
            last_name=clip(billing.get("last_name"), 100),
            phone=clip(billing.get("phone"), 40),
            country=country(billing.get("country")),
            region=clip(billing.get("state"), 100),
            city=clip(billing.get("city"), 100),
        )
    coupons = [as_object(c, "coupon_lines") for c in as_list(payload.get("coupon_lines"), "coupon_lines")]
    modified = _when(payload, "date_modified")
    return OrderIn(
        source=SOURCE,
        external_id=str(order_id),
        placed_at=parse_datetime(_when(payload, "date_created"), "date_created_gmt"),
        currency=currency,
        subtotal=sum(ln.discount + ln.total for ln in lines),
        discount=to_minor(payload.get("discount_total") or "0", currency, "discount_total"),
        shipping=to_minor(payload.get("shipping_total") or "0", currency, "shipping_total"),
        tax=to_minor(payload.get("total_tax") or "0", currency, "total_tax"),
        total=to_minor(payload.get("total"), currency, "total"),
        status=order_status(payload.get("status")),
        contact=contact,
        discount_codes=[str(c.get("code")) for c in coupons if c.get("code")],
        properties={
            "woocommerce_id": order_id,
            "number": payload.get("number"),
            "woocommerce_status": payload.get("status"),
            "payment_method": payload.get("payment_method"),
        },
        lines=lines,
        source_updated_at=parse_datetime(modified, "date_modified_gmt") if modified else None,
    )
