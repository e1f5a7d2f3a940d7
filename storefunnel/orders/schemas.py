"""Orders: OrderCreate (with lines), OrderUpdate (all optional), Order (read, with lines).

Money is integer minor units of ``currency``; the server computes every total and refuses a client's that disagrees.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from storefunnel.contacts.schemas import Clean, Email, RowId, UTCTime
from storefunnel.orders.currencies import CURRENCY_CODES

MAX_PROPERTIES_BYTES = 16_384
MAX_LINES = 1_000
# A bound well above any real order, so sums stay far inside a signed 64-bit column.
MAX_AMOUNT = 10**13


class OrderStatus(enum.StrEnum):
    pending = "pending"
    paid = "paid"
    partially_refunded = "partially_refunded"
    refunded = "refunded"
    cancelled = "cancelled"
    fulfilled = "fulfilled"


def _currency(value: str) -> str:
    if value not in CURRENCY_CODES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code in upper case (e.g. EUR, USD, JPY)")
    return value


def _properties(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"at most {MAX_PROPERTIES_BYTES} bytes of JSON, got {size}")
    return value


Currency = Annotated[
    str, Field(min_length=3, max_length=3, description="ISO 4217, e.g. EUR"), AfterValidator(_currency)
]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, description="Minor units (cents).")]
Properties = Annotated[dict[str, Any], AfterValidator(_properties)]


class OrderLineCreate(Clean):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: str | None = Field(default=None, min_length=1, max_length=100, description="Links the workspace's product.")
    name: str | None = Field(default=None, max_length=300, description="Defaults to the product's name.")
    quantity: int = Field(ge=1, le=1_000_000)
    unit_price: Amount
    discount: Amount = 0

    @model_validator(mode="after")
    def _discount_fits(self) -> OrderLineCreate:
        if self.quantity * self.unit_price > MAX_AMOUNT:
            raise ValueError(f"unit_price: quantity × unit_price is over {MAX_AMOUNT}")
        if self.discount > self.quantity * self.unit_price:
            raise ValueError("discount: larger than quantity × unit_price")
        return self


class OrderCreate(Clean):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    contact_id: RowId | None = Field(default=None, description="A contact of this workspace; or give email.")
    email: Email | None = Field(default=None, description="Finds or creates the contact with this email.")
    source: str = Field(default="api", min_length=1, max_length=20)
    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    placed_at: UTCTime
    currency: Currency
    status: OrderStatus = OrderStatus.paid
    lines: list[OrderLineCreate] = Field(min_length=1, max_length=MAX_LINES)
    discount: Amount = 0
    shipping: Amount = 0
    tax: Amount = 0
    subtotal: int | None = Field(default=None, description="Optional check: must equal the sum of the line totals.")
    total: int | None = Field(default=None, description="Optional check: subtotal - discount + shipping + tax.")
    discount_codes: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    properties: Properties = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_contact_reference(self) -> OrderCreate:
        if self.contact_id is not None and self.email is not None:
            raise ValueError("contact_id: give contact_id or email, not both")
        return self


class OrderUpdate(Clean):
    model_config = ConfigDict(extra="forbid")

    status: OrderStatus | None = None
    properties: Properties | None = None


class OrderLine(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    product_id: int | None
    sku: str | None
    name: str
    quantity: int
    unit_price: int
    discount: int
    total: int


class Order(BaseModel):
    id: int
    contact_id: int | None
    source: str
    external_id: str | None
    placed_at: dt.datetime
    currency: str
    status: str
    subtotal: int
    discount: int
    shipping: int
    tax: int
    total: int
    discount_codes: list[str]
    properties: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    lines: list[OrderLine]
