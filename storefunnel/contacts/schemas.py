"""Contacts: ContactCreate, ContactUpdate (all optional), Contact (read), and the timeline items."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from storefunnel.contacts.countries import COUNTRY_CODES
from storefunnel.limits import MAX_ID
from storefunnel.models import AgeBand

MAX_TRAITS_BYTES = 16_384
MAX_TRAITS_KEYS = 200
_PHONE = re.compile(r"^\+?[0-9][0-9 ().\-/]{2,38}$")


def normalize_email(value: str) -> str:
    """Syntax-checked (no DNS: that belongs to sending, not storing) and lower-cased whole, so lookups are exact."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in COUNTRY_CODES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. PT, DE, US)")
    return code


def _phone(value: str) -> str:
    value = value.strip()
    if not _PHONE.match(value) or sum(c.isdigit() for c in value) > 15:
        raise ValueError("not a phone number (digits, optional leading +, spaces, dashes, dots, brackets)")
    return value


def _traits(value: dict[str, Any]) -> dict[str, Any]:
    """Traits are free-form, but bounded so one contact cannot bloat every segment query."""
    if len(value) > MAX_TRAITS_KEYS:
        raise ValueError(f"at most {MAX_TRAITS_KEYS} keys")
    size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
    if size > MAX_TRAITS_BYTES:
        raise ValueError(f"at most {MAX_TRAITS_BYTES} bytes of JSON, got {size}")
    if any(not key or len(key) > 100 for key in value):
        raise ValueError("keys must be 1 to 100 characters")
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("out of the representable range of dates") from None


def _unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be stored on every backend (NUL in text, NaN/Infinity in JSON), or None."""
    if isinstance(value, str):
        return "must not contain NUL (\\u0000) characters" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list | tuple):
        return next((reason for v in value if (reason := _unstorable(v))), None)
    return None


class Clean(BaseModel):
    """Refuses what PostgreSQL cannot store (NUL characters, NaN in JSON), which would otherwise fail late as a 500."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        reason = _unstorable(value)
        if reason:
            raise ValueError(reason)
        return value


def _gender(value: str) -> str:
    return value.strip().lower()


RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Email = Annotated[str, Field(max_length=254), AfterValidator(normalize_email)]
Country = Annotated[str, Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2"), AfterValidator(_country)]
Phone = Annotated[str, Field(max_length=40), AfterValidator(_phone)]
Traits = Annotated[dict[str, Any], AfterValidator(_traits)]
Gender = Annotated[str, Field(min_length=1, max_length=16), AfterValidator(_gender)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Place = Annotated[str, Field(min_length=1, max_length=100)]
ConsentSource = Annotated[
    str, Field(min_length=1, max_length=64, description="Where consent was given: form, checkout…")
]


class _ContactFields(Clean):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    first_name: Name | None = None
    last_name: Name | None = None
    phone: Phone | None = None
    country: Country | None = None
    region: Place | None = None
    city: Place | None = None
    age_band: AgeBand | None = None
    gender: Gender | None = None
    consent_source: ConsentSource | None = None
    unsubscribed_at: UTCTime | None = None


class ContactCreate(_ContactFields):
    email: Email | None = None
    traits: Traits = Field(default_factory=dict)
    email_consent: bool = False

    @model_validator(mode="after")
    def _identifiable(self) -> ContactCreate:
        if self.email is None and self.external_id is None:
            raise ValueError("email: an email or an external_id is required to identify the contact")
        if self.email_consent and self.consent_source is None:
            raise ValueError("consent_source: required when email_consent is true (where was consent given?)")
        if self.email_consent and self.unsubscribed_at is not None:
            raise ValueError("unsubscribed_at: a contact who consents is not unsubscribed")
        return self


class ContactUpdate(_ContactFields):
    email: Email | None = None
    traits: Traits | None = None
    email_consent: bool | None = None


class Contact(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    country: str | None
    region: str | None
    city: str | None
    age_band: str | None
    gender: str | None
    traits: dict[str, Any]
    email_consent: bool
    consent_source: str | None
    consent_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    lead_at: dt.datetime | None
    lead_channel: str | None
    stage: str | None
    stage_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class TouchItem(BaseModel):
    type: Literal["touch"] = "touch"
    id: int
    at: dt.datetime
    kind: str
    event: str | None
    channel: str
    source: str | None
    medium: str | None
    campaign: str | None
    content: str | None
    url: str | None


class OrderItem(BaseModel):
    type: Literal["order"] = "order"
    id: int
    at: dt.datetime
    external_id: str | None
    status: str
    currency: str
    total: int


class StageChangeItem(BaseModel):
    type: Literal["stage_change"] = "stage_change"
    id: int
    at: dt.datetime
    from_stage: str | None
    stage: str
    reason: str


TimelineItem = Annotated[TouchItem | OrderItem | StageChangeItem, Field(discriminator="type")]
