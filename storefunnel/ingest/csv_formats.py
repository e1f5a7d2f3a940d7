"""The three CSV layouts storefunnel reads, one row (or one order's rows) at a time into upsert records.

- contacts: ``email, first_name, last_name, phone, country, region, city, age_band, gender, email_consent``;
  any other column becomes a trait.
- orders: Shopify's order export, one row per line item, the order-level fields only on an order's first row.
- spend: ``date, channel, campaign, cost, currency``.

Column names are matched without regard to case or surrounding spaces. Every refusal is a ``RecordError`` whose
message starts with the column it is about; the importer turns it into a reject line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from storefunnel.contacts.countries import COUNTRY_CODES
from storefunnel.ingest import shopify
from storefunnel.ingest.channels import CHANNELS
from storefunnel.ingest.orders_upsert import (
    ContactIn,
    LineIn,
    OrderIn,
    RecordError,
    SpendIn,
    check_currency,
    clean_email,
    clip,
    parse_datetime,
    to_minor,
)
from storefunnel.models import AgeBand

KINDS = ("contacts", "orders", "spend")
CONTACT_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "phone",
    "country",
    "region",
    "city",
    "age_band",
    "gender",
    "email_consent",
)
REQUIRED: dict[str, tuple[str, ...]] = {
    "contacts": ("email",),
    "orders": ("name", "created at", "total", "lineitem quantity", "lineitem name", "lineitem price"),
    "spend": ("date", "channel", "cost"),
}
_TRUE = frozenset({"true", "yes", "y", "1", "subscribed", "opted_in"})
_FALSE = frozenset({"false", "no", "n", "0", "unsubscribed", "not_subscribed", "opted_out"})
_AGE_BANDS = frozenset(a.value for a in AgeBand)
_CHANNELS = {c.lower(): c for c in CHANNELS}


def header_key(kind: str, name: str) -> str:
    """Shopify's export names columns with spaces ("Lineitem sku"); the other layouts use snake_case."""
    key = name.strip().lower()
    return key if kind == "orders" else key.replace(" ", "_")


@dataclass(frozen=True)
class Columns:
    """Where each named column sits in a row; rows are plain lists, which csv.reader makes fastest."""

    index: dict[str, int]

    @classmethod
    def from_header(cls, kind: str, header: Sequence[str]) -> Columns:
        index: dict[str, int] = {}
        for i, name in enumerate(header):
            index.setdefault(header_key(kind, name), i)
        return cls(index)

    def missing(self, kind: str) -> list[str]:
        return [c for c in REQUIRED[kind] if c not in self.index]

    def get(self, row: Sequence[str], name: str) -> str:
        i = self.index.get(name)
        if i is None:
            return ""
        try:
            return row[i].strip()
        except IndexError:
            return ""


def parse_bool(text: str, field: str) -> bool | None:
    value = text.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RecordError(f"{field}: {text!r} is not yes/no or true/false")


def _country(text: str, field: str) -> str | None:
    code = text.strip().upper()
    if not code:
        return None
    if code not in COUNTRY_CODES:
        raise RecordError(f"{field}: {text!r} is not an ISO 3166-1 alpha-2 country code such as 'PT'")
    return code


def _bounded(text: str, limit: int, field: str) -> str | None:
    value = text.strip()
    if len(value) > limit:
        raise RecordError(f"{field}: longer than {limit} characters")
    return value or None


def contact_from_row(cols: Columns, row: Sequence[str], header: Sequence[str]) -> ContactIn:
    email = clean_email(cols.get(row, "email"))
    if email is None:
        raise RecordError("email: required")
    age_band = cols.get(row, "age_band") or None
    if age_band is not None and age_band not in _AGE_BANDS:
        raise RecordError(f"age_band: {age_band!r} is not one of {', '.join(sorted(_AGE_BANDS))}")
    traits: dict[str, str] = {}
    for i, name in enumerate(header):
        key = header_key("contacts", name)
        if key not in CONTACT_COLUMNS and key and i < len(row) and row[i].strip():
            traits[key] = row[i].strip()
    consent = parse_bool(cols.get(row, "email_consent"), "email_consent")
    return ContactIn(
        email=email,
        first_name=clip(cols.get(row, "first_name"), 100),
        last_name=clip(cols.get(row, "last_name"), 100),
        phone=_bounded(cols.get(row, "phone"), 40, "phone"),
        country=_country(cols.get(row, "country"), "country"),
        region=clip(cols.get(row, "region"), 100),
        city=clip(cols.get(row, "city"), 100),
        age_band=age_band,
        gender=_bounded(cols.get(row, "gender").lower(), 16, "gender"),
        traits=traits,
        email_consent=consent,
        consent_source="import" if consent else None,
    )


def spend_from_row(cols: Columns, row: Sequence[str], default_currency: str) -> SpendIn:
    text = cols.get(row, "date")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise RecordError(f"date: {text!r} is not a date like 2026-03-31") from None
    raw_channel = cols.get(row, "channel")
    channel = _CHANNELS.get(raw_channel.lower())
    if channel is None:
        raise RecordError(f"channel: {raw_channel!r} is not a channel; use one of {', '.join(CHANNELS)}")
    currency = check_currency(cols.get(row, "currency") or default_currency, "currency")
    cost = to_minor(cols.get(row, "cost"), currency, "cost")
    if cost < 0:
        raise RecordError("cost: must not be negative")
    return SpendIn(
        day=day,
        channel=channel,
        campaign=_bounded(cols.get(row, "campaign"), 200, "campaign") or "",
        cost=cost,
        currency=currency,
    )


class OrderRowsError(RecordError):
    """A Shopify order that cannot be taken, and the file line that is to blame."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _line(cols: Columns, row: Sequence[str], currency: str) -> LineIn:
    qty_text = cols.get(row, "lineitem quantity")
    try:
        quantity = int(qty_text)
    except ValueError:
        raise RecordError(f"Lineitem quantity: {qty_text!r} is not a whole number") from None
    if quantity < 0:
        raise RecordError("Lineitem quantity: must not be negative")
    price = to_minor(cols.get(row, "lineitem price"), currency, "Lineitem price")
    discount_text = cols.get(row, "lineitem discount")
    discount = to_minor(discount_text, currency, "Lineitem discount") if discount_text else 0
    name = cols.get(row, "lineitem name")
    sku = cols.get(row, "lineitem sku") or None
    return LineIn(
        product_key=shopify.product_key(sku, None, None, name),
        sku=clip(sku, 100),
        name=name[:300],
        quantity=quantity,
        unit_price=price,
        discount=discount,
        total=price * quantity - discount,
    )


def order_from_rows(
    cols: Columns, rows: Sequence[tuple[int, Sequence[str]]], default_currency: str, tz: dt.tzinfo
) -> OrderIn:
    """One order from its rows (file line, cells); the row with ``Created at`` carries the order-level fields."""
    head_line, head = next(((n, r) for n, r in rows if cols.get(r, "created at")), (0, ()))
    name = cols.get(rows[0][1], "name")
    if not head:
        raise OrderRowsError(
            rows[0][0], f"Name: no row of order {name!r} carries its order-level fields (Created at, Total…)"
        )
    line = head_line
    try:
        if len(name) > 128:
            raise RecordError("Name: longer than 128 characters")
        currency = check_currency(cols.get(head, "currency") or default_currency, "Currency")
        placed_at = parse_datetime(cols.get(head, "created at"), "Created at", tz)
        total = to_minor(cols.get(head, "total"), currency, "Total")
        shipping = to_minor(cols.get(head, "shipping") or "0", currency, "Shipping")
        tax = to_minor(cols.get(head, "taxes") or "0", currency, "Taxes")
        discount = to_minor(cols.get(head, "discount amount") or "0", currency, "Discount Amount")
        status = shopify.order_status(cols.get(head, "financial status"), bool(cols.get(head, "cancelled at")))
        email = next((e for _, r in rows if (e := cols.get(r, "email"))), "")
        contact = None
        if email:
            first, last = shopify.split_name(cols.get(head, "billing name"))
            accepts = parse_bool(cols.get(head, "accepts marketing"), "Accepts Marketing")
            contact = ContactIn(
                email=clean_email(email, "Email"),
                first_name=first,
                last_name=last,
                phone=clip(cols.get(head, "billing phone"), 40),
                country=shopify.country(cols.get(head, "billing country")),
                region=clip(cols.get(head, "billing province name") or cols.get(head, "billing province"), 100),
                city=clip(cols.get(head, "billing city"), 100),
                email_consent=True if accepts else None,
                consent_source=shopify.SOURCE if accepts else None,
                consent_at=placed_at if accepts else None,
            )
        lines = []
        for n, r in rows:
            line = n
            lines.append(_line(cols, r, currency))
    except RecordError as exc:
        raise OrderRowsError(line, str(exc)) from None
    codes = [c.strip() for c in cols.get(head, "discount code").split(",") if c.strip()]
    properties: dict[str, object] = {"financial_status": cols.get(head, "financial status") or None}
    if shopify_id := cols.get(head, "id"):
        properties["shopify_id"] = int(shopify_id) if shopify_id.isdigit() else shopify_id
    if source := cols.get(head, "source"):
        properties["source_name"] = source
    return OrderIn(
        source=shopify.SOURCE,
        external_id=name,
        placed_at=placed_at,
        currency=currency,
        subtotal=sum(ln.unit_price * ln.quantity for ln in lines),
        discount=discount,
        shipping=shipping,
        tax=tax,
        total=total,
        status=status,
        contact=contact,
        discount_codes=codes,
        properties=properties,
        lines=lines,
    )
