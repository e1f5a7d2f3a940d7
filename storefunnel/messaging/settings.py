"""Per-workspace email settings, kept in ``workspaces.settings["messaging"]`` (only what differs need be stored)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storefunnel.errors import Invalid

SETTINGS_KEY = "messaging"


class MessagingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_address: str = Field(
        default="",
        max_length=300,
        description='The From header, e.g. "Shop <hello@shop.example>"; empty: the store name at noreply@ this host.',
    )
    reply_to: str = Field(default="", max_length=300, description="Reply-To header, if any.")
    unsubscribe_mailto: str = Field(
        default="",
        max_length=254,
        description="Address for List-Unsubscribe mailto: requests; empty: the From address.",
    )
    frequency_cap: int = Field(
        default=5,
        ge=1,
        le=100,
        description="At most this many marketing emails per contact in any 7 days, all sources together.",
    )
    attribution_days: int = Field(
        default=5,
        ge=1,
        le=90,
        description="Orders within this many days of a click on an email are credited to it (last click).",
    )
    soft_bounce_limit: int = Field(
        default=3,
        ge=1,
        le=20,
        description="After this many soft bounces in a row (4.x.x, no open or click between) the address gets no "
        "more marketing.",
    )

    @field_validator("from_address", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(c in value for c in "\r\n\x00"):
            raise ValueError("must be one line")
        return value.strip()


def messaging_settings(settings: dict[str, Any] | None) -> MessagingSettings:
    try:
        return MessagingSettings.model_validate((settings or {}).get(SETTINGS_KEY) or {})
    except ValidationError as exc:
        raise Invalid(f"stored messaging settings are invalid: {exc.errors()[0]['msg']}") from None
