"""Shopify webhook payloads (REST Admin API shape) mapped onto storefunnel's contacts, products and orders.

Orders are keyed by their name ("#1001"), the key Shopify's CSV export carries too, so a CSV back-fill and the
live webhooks land on the same rows. Amounts are the shop-currency strings, converted exactly to minor units.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from storefunnel.contacts.countries import COUNTRY_CODES
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

SOURCE = "shopify"
ORDER_TOPICS = frozenset({"orders/create", "orders/updated", "orders/paid", "orders/cancelled"})
CUSTOMER_TOPICS = frozenset({"customers/create", "customers/update"})
TOPICS = ORDER_TOPICS | CUSTOMER_TOPICS
# Shopify's financial statuses, kept as they are; a cancelled order is "cancelled" whatever its payment state.
FINANCIAL_STATUSES = frozenset(
    {"pending", "authorized", "partially_paid", "paid", "partially_refunded", "refunded", "voided", "expired"}
)
SUBSCRIBED = "subscribed"


def order_status(financial_status: str | None, cancelled: bool) -> str:
    if cancelled:
        return "cancelled"
    status = (financial_status or "").strip().lower().replace(" ", "_")
    if not status:
        return "pending"
    if status not in FINANCIAL_STATUSES:
        raise RecordError(f"financial_status: {financial_status!r} is not a Shopify financial status")
    return status


def country(value: Any) -> str | None:
    """An ISO 3166-1 alpha-2 code, or None: a bad country in an order should not cost the order."""
    code = str(value or "").strip().upper()
    return code if code in COUNTRY_CODES else None


def product_key(sku: str | None, product_id: Any, variant_id: Any, title: str) -> str:
    """The products.sku a line maps to: its SKU, else the Shopify product and variant ids."""
    if sku:
        return sku if len(sku) <= 100 else "sku-sha1:" + hashlib.sha1(sku.encode(), usedforsecurity=False).hexdigest()
    if product_id:
        return f"{SOURCE}:{product_id}:{variant_id or ''}"
    digest = hashlib.sha1(title.encode(), usedforsecurity=False).hexdigest()[:20]
    return f"{SOURCE}:custom:{digest}"


def split_name(full: str | None) -> tuple[str | None, str | None]:
    text = (full or "").strip()
    if not text:
        return None, None
    first, _, last = text.partition(" ")
    return clip(first, 100), clip(last, 100)


def as_object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"{field}: expected an object")
    return value


def as_list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"{field}: expected a list")
    return value


def _consent(customer: dict[str, Any], fallback: Any) -> tuple[bool | None, dt.datetime | None]:
    """``email_marketing_consent`` (current API) or ``accepts_marketing`` (older versions)."""
    marketing = as_object(customer.get("email_marketing_consent"), "customer.email_marketing_consent")
    if marketing:
        at_text = marketing.get("consent_updated_at")
        at = parse_datetime(at_text, "customer.email_marketing_consent.consent_updated_at") if at_text else None
        return marketing.get("state") == SUBSCRIBED, at
    accepts = customer.get("accepts_marketing", fallback)
    return (bool(accepts) if accepts is not None else None), None


def customer_contact(
    customer: dict[str, Any], *, email: Any = None, address: Any = None, accepts: Any = None
) -> ContactIn:
    """A Shopify customer object (with an order's email and billing address as fallbacks)."""
    place = as_object(customer.get("default_address"), "customer.default_address") or as_object(
        address, "billing_address"
    )
    consent, consent_at = _consent(customer, accepts)
    cid = customer.get("id")
    return ContactIn(
        email=clean_email(customer.get("email") or email, "customer.email"),
        external_id=f"{SOURCE}:{cid}" if cid else None,
        first_name=clip(customer.get("first_name") or place.get("first_name"), 100),
        last_name=clip(customer.get("last_name") or place.get("last_name"), 100),
        phone=clip(customer.get("phone") or place.get("phone"), 40),
        country=country(place.get("country_code")),
        region=clip(place.get("province"), 100),
        city=clip(place.get("city"), 100),
        email_consent=consent,
        consent_source=SOURCE if consent else None,
        consent_at=consent_at,
    )


def _line(item: Any, index: int, currency: str) -> LineIn:
    field = f"line_items[{index}]"
    item = as_object(item, field)
    try:
        quantity = int(item.get("quantity", 0))
    except (TypeError, ValueError):
        raise RecordError(f"{field}.quantity: expected a whole number") from None
    if quantity < 0:
        raise RecordError(f"{field}.quantity: must not be negative")
    price = to_minor(item.get("price"), currency, f"{field}.price")
    allocations = as_list(item.get("discount_allocations"), f"{field}.discount_allocations")
    if allocations:
        discount = sum(
            to_minor(
                as_object(a, f"{field}.discount_allocations").get("amount"), currency, f"{field}.discount_allocations"
            )
            for a in allocations
        )
    else:
        discount = to_minor(item.get("total_discount") or "0", currency, f"{field}.total_discount")
    title = str(item.get("name") or item.get("title") or "")
    sku = str(item.get("sku") or "").strip() or None
    return LineIn(
        product_key=product_key(sku, item.get("product_id"), item.get("variant_id"), title),
        sku=clip(sku, 100),
        name=title[:300],
        quantity=quantity,
        unit_price=price,
        discount=discount,
        total=price * quantity - discount,
    )


def _money_set(payload: dict[str, Any], key: str) -> Any:
    shop = as_object(as_object(payload.get(key), key).get("shop_money"), f"{key}.shop_money")
    return shop.get("amount")


def order_from_payload(payload: dict[str, Any]) -> OrderIn:
    """An ``orders/*`` webhook body as an order with its customer and lines."""
    name = str(payload.get("name") or "").strip()
    if not name:
        raise RecordError("name: the order name (e.g. '#1001') is required")
    if len(name) > 128:
        raise RecordError("name: longer than 128 characters")
    currency = check_currency(payload.get("currency"), "currency")
    lines = [_line(item, i, currency) for i, item in enumerate(as_list(payload.get("line_items"), "line_items"))]
    if payload.get("total_line_items_price") is not None:
        subtotal = to_minor(payload["total_line_items_price"], currency, "total_line_items_price")
    else:
        subtotal = sum(ln.unit_price * ln.quantity for ln in lines)
    shipping_amount = _money_set(payload, "total_shipping_price_set")
    if shipping_amount is not None:
        shipping = to_minor(shipping_amount, currency, "total_shipping_price_set.shop_money.amount")
    else:
        shipping = sum(
            to_minor(as_object(s, "shipping_lines").get("price") or "0", currency, "shipping_lines.price")
            for s in as_list(payload.get("shipping_lines"), "shipping_lines")
        )
    codes = [
        str(as_object(d, "discount_codes").get("code") or "")
        for d in as_list(payload.get("discount_codes"), "discount_codes")
    ]
    customer = as_object(payload.get("customer"), "customer")
    email = payload.get("email") or payload.get("contact_email")
    contact = None
    if customer or email:
        contact = customer_contact(
            customer,
            email=email,
            address=payload.get("billing_address"),
            accepts=payload.get("buyer_accepts_marketing"),
        )
    properties: dict[str, Any] = {"shopify_id": payload.get("id"), "financial_status": payload.get("financial_status")}
    for key in ("source_name", "landing_site", "referring_site", "test"):
        if payload.get(key) not in (None, ""):
            properties[key] = payload[key]
    updated = payload.get("updated_at")
    return OrderIn(
        source=SOURCE,
        external_id=name,
        placed_at=parse_datetime(payload.get("created_at"), "created_at"),
        currency=currency,
        subtotal=subtotal,
        discount=to_minor(payload.get("total_discounts") or "0", currency, "total_discounts"),
        shipping=shipping,
        tax=to_minor(payload.get("total_tax") or "0", currency, "total_tax"),
        total=to_minor(payload.get("total_price"), currency, "total_price"),
        status=order_status(payload.get("financial_status"), bool(payload.get("cancelled_at"))),
        contact=contact,
        discount_codes=[c for c in codes if c],
        properties=properties,
        lines=lines,
        source_updated_at=parse_datetime(updated, "updated_at") if updated else None,
    )


def contact_from_payload(payload: dict[str, Any]) -> ContactIn:
    """A ``customers/*`` webhook body; the customer record is the source of truth for the person."""
    contact = customer_contact(payload)
    if contact.email is None and contact.external_id is None:
        raise RecordError("id: a customer needs an id or an email")
    return contact
