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
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storefunnel.contacts.countries import COUNTRY_CODES
from storefunnel.ingest import shopify
from storefunnel.ingest.channels import CHANNELS
from storefunnel.ingest.orders_upsert import (
    ContactIn,
    LineIn,
    OrderBatch,
    OrderIn,
    RecordError,
    SpendIn,
    check_currency,
    clean_email,
    clip,
    dumps,
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
        properties["shopify_id"] = int(shopify_id) if shopify_id.isascii() and shopify_id.isdigit() else shopify_id
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


class _Slow(Exception):
    """The fast path met something it does not handle; the exact path decides."""


# The Shopify export columns the fast path reads; a file without one of them takes the exact path only.
FAST_ORDER_COLUMNS = (
    "name",
    "created at",
    "currency",
    "total",
    "shipping",
    "taxes",
    "discount amount",
    "financial status",
    "cancelled at",
    "email",
    "billing name",
    "accepts marketing",
    "billing phone",
    "billing country",
    "billing province name",
    "billing province",
    "billing city",
    "discount code",
    "id",
    "source",
    "lineitem quantity",
    "lineitem price",
    "lineitem discount",
    "lineitem name",
    "lineitem sku",
)
_CACHE_LIMIT = 100_000


class FastOrders:
    """Shopify export rows straight to staging rows, without ``OrderIn`` objects, for the common shape of an order.

    An export repeats the same currencies, prices, statuses and customers over and over, so those conversions are
    cached (and the caches cleared now and then, so memory stays flat). Anything unusual (a refused value, a missing
    ``Created at`` on an order's first row, a short row) goes to :func:`order_from_rows`, which gives the same
    result or the same refusal as ever; ``tests/ingest/test_import.py`` checks both paths agree.
    """

    def __init__(self, cols: Columns, default_currency: str, tz: dt.tzinfo, pg: bool) -> None:
        self.cols = cols
        self.default_currency = default_currency
        self.tz = tz
        self.pg = pg
        self.at = {name: cols.index[name] for name in FAST_ORDER_COLUMNS}
        self.currencies: dict[str, str] = {}
        self.money: dict[str, dict[str, int]] = {}
        self.statuses: dict[tuple[str, bool], str] = {}
        self.emails: dict[str, str | None] = {}
        self.custom_keys: dict[str, str] = {}

    @classmethod
    def for_columns(cls, cols: Columns, default_currency: str, tz: dt.tzinfo, pg: bool) -> FastOrders | None:
        if any(name not in cols.index for name in FAST_ORDER_COLUMNS):
            return None
        return cls(cols, default_currency, tz, pg)

    def trim(self) -> None:
        """Forget cached conversions once they grow large (called between chunks)."""
        caches: list[dict[Any, Any]] = [self.currencies, self.statuses, self.emails, self.custom_keys]
        caches.extend(self.money.values())
        if sum(len(c) for c in caches) > _CACHE_LIMIT:
            for cache in caches:
                cache.clear()

    def add(self, batch: OrderBatch, rows: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Add one order's rows to ``batch``; raises :class:`OrderRowsError` for an order that is refused."""
        try:
            self._fast(batch, rows)
        except (_Slow, RecordError, ValueError, IndexError, KeyError):
            batch.add(order_from_rows(self.cols, rows, self.default_currency, self.tz))

    def _amounts(self, currency: str) -> dict[str, int]:
        cache = self.money.get(currency)
        if cache is None:
            cache = self.money[currency] = {}
        return cache

    def _fast(self, batch: OrderBatch, rows: Sequence[tuple[int, Sequence[str]]]) -> None:
        at = self.at
        head = rows[0][1]
        created = head[at["created at"]].strip()
        name = head[at["name"]].strip()
        if not created or len(name) > 128:
            raise _Slow
        currency_text = head[at["currency"]]
        currency = self.currencies.get(currency_text)
        if currency is None:
            currency = check_currency(currency_text.strip() or self.default_currency, "Currency")
            self.currencies[currency_text] = currency
        money = self._amounts(currency)

        def amount(text: str, optional: bool) -> int:
            value = money.get(text)
            if value is None:
                stripped = text.strip()
                if not stripped and optional:
                    return 0
                value = money[text] = to_minor(stripped, currency, "amount")
            return value

        placed_at = batch.ts(parse_datetime(created, "Created at", self.tz))
        total = amount(head[at["total"]], False)
        shipping = amount(head[at["shipping"]], True)
        tax = amount(head[at["taxes"]], True)
        discount = amount(head[at["discount amount"]], True)
        status_text = head[at["financial status"]].strip()
        status_key = (status_text, bool(head[at["cancelled at"]].strip()))
        status = self.statuses.get(status_key)
        if status is None:
            status = self.statuses[status_key] = shopify.order_status(*status_key)

        i_qty, i_price, i_disc = at["lineitem quantity"], at["lineitem price"], at["lineitem discount"]
        i_name, i_sku, i_email = at["lineitem name"], at["lineitem sku"], at["email"]
        email_text = ""
        lines: list[tuple[Any, ...]] = []
        digest: list[str] = []
        subtotal = 0
        for position, (_, row) in enumerate(rows):
            quantity = int(row[i_qty])
            if quantity < 0:
                raise _Slow
            price = amount(row[i_price], False)
            line_discount = amount(row[i_disc], True)
            title = row[i_name].strip()
            sku: str | None = row[i_sku].strip()
            if sku:
                key = sku if len(sku) <= 100 else shopify.product_key(sku, None, None, title)
                sku = sku[:100]
            else:
                sku = None
                key = self.custom_keys.get(title) or self.custom_keys.setdefault(
                    title, shopify.product_key(None, None, None, title)
                )
            title = title[:300]
            line_total = price * quantity - line_discount
            subtotal += price * quantity
            lines.append((name, position, key, sku, title, quantity, price, line_discount, line_total))
            digest.append(f"{key}|{sku}|{title}|{quantity}|{price}|{line_discount}|{line_total}")
            if not email_text:
                email_text = row[i_email].strip()

        contact = None
        if email_text:
            email = self.emails.get(email_text)
            if email is None:
                email = self.emails[email_text] = clean_email(email_text, "Email")
            first, last = shopify.split_name(head[at["billing name"]])
            accepts = parse_bool(head[at["accepts marketing"]], "Accepts Marketing")
            contact = ContactIn(
                email=email,
                first_name=first,
                last_name=last,
                phone=clip(head[at["billing phone"]], 40),
                country=shopify.country(head[at["billing country"]]),
                region=clip(head[at["billing province name"]].strip() or head[at["billing province"]], 100),
                city=clip(head[at["billing city"]], 100),
                email_consent=True if accepts else None,
                consent_source=shopify.SOURCE if accepts else None,
                consent_at=parse_datetime(created, "Created at", self.tz) if accepts else None,
            )
        codes_text = head[at["discount code"]]
        codes = [c.strip() for c in codes_text.split(",") if c.strip()] if codes_text.strip() else []
        properties: dict[str, object] = {
            "financial_status": status_text or None,
            "lines_digest": hashlib.sha1("\n".join(digest).encode(), usedforsecurity=False).hexdigest()[:16],
        }
        if shopify_id := head[at["id"]].strip():
            properties["shopify_id"] = int(shopify_id) if shopify_id.isascii() and shopify_id.isdigit() else shopify_id
        if source := head[at["source"]].strip():
            properties["source_name"] = source

        # Everything is checked: only now does the batch change.
        contact_key = batch.add_contact(contact) if contact is not None else None
        for line in lines:
            batch.products.setdefault(line[2], (line[4], line[6], currency))
        batch.orders.append(
            (
                shopify.SOURCE,
                name,
                contact_key,
                placed_at,
                currency,
                subtotal,
                discount,
                shipping,
                tax,
                total,
                status,
                dumps(codes),
                dumps(properties),
                None,
            )
        )
        batch.lines.extend(lines)
