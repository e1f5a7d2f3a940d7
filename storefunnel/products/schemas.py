"""Products: ProductCreate, ProductUpdate (all optional), Product (read)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from storefunnel.limits import NO_NUL

Currency = Field(min_length=3, max_length=3, pattern="^[A-Z]{3}$", description="ISO 4217, e.g. EUR")


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    name: str = Field(min_length=1, max_length=300, pattern=NO_NUL)
    category: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    price: int = Field(ge=0, le=2**62, description="Price in minor units (cents).")
    currency: str = Currency


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=300, pattern=NO_NUL)
    category: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    price: int | None = Field(default=None, ge=0, le=2**62)
    currency: str | None = Field(default=None, min_length=3, max_length=3, pattern="^[A-Z]{3}$")


class Product(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sku: str
    name: str
    category: str | None
    price: int
    currency: str
    created_at: dt.datetime
