"""Store webhooks: ``POST /webhooks/shopify/{workspace_id}`` and ``POST /webhooks/woocommerce/{workspace_id}``.

The workspace id in the path only says which secret to check; the HMAC-SHA256 signature of the raw body is what
authenticates the call, so nothing is parsed or stored before it verifies. The platform's delivery id is kept
as a receipt in the same transaction as the data, which makes a redelivery a harmless no-op.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from storefunnel.cycle.service import on_facts_changed
from storefunnel.db import SessionDep
from storefunnel.errors import AppError, Invalid, TooLarge, Unauthorized
from storefunnel.ingest import shopify, woocommerce
from storefunnel.ingest.orders_upsert import (
    ContactIn,
    Counts,
    OrderIn,
    RecordError,
    merge_contacts,
    record_receipt,
    upsert_orders,
)
from storefunnel.models import Order, WebhookSecret, Workspace
from storefunnel.tenancy import scoped

MAX_BODY = 5 * 1024 * 1024
Platform = Literal["shopify", "woocommerce"]
PLATFORMS: tuple[str, ...] = ("shopify", "woocommerce")
_WOO_PING = re.compile(rb"webhook_id=\d+")


class BadRequest(AppError):
    status, code, title = 400, "bad-request", "Bad request"


class WebhookResult(BaseModel):
    status: Literal["processed", "duplicate", "ping"]
    topic: str | None = None
    counts: dict[str, int] = {}


# ------------------------------------------------------------------------------------------- secrets


def set_secret(session: Session, workspace_id: int, platform: str, secret: str | None = None) -> str:
    """Store the secret a platform signs with (Shopify: the app's client secret; WooCommerce: the one you typed)."""
    if platform not in PLATFORMS:
        raise Invalid(f"platform: must be one of {', '.join(PLATFORMS)}")
    value = secret if secret is not None else secrets.token_urlsafe(32)
    if not value or len(value) > 200:
        raise Invalid("secret: must be 1 to 200 characters")
    row = session.scalar(scoped(WebhookSecret, workspace_id).where(WebhookSecret.platform == platform))
    if row is None:
        session.add(WebhookSecret(workspace_id=workspace_id, platform=platform, secret=value))
    else:
        row.secret = value
    session.flush()
    return value


def get_secret(session: Session, workspace_id: int, platform: str) -> str | None:
    stmt = scoped(WebhookSecret, workspace_id).where(WebhookSecret.platform == platform)
    row = session.scalar(stmt)
    return row.secret if row else None


def sign(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(body, secret)): the signature both platforms send."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(secret: str | None, body: bytes, signature: str | None) -> None:
    if not secret or not signature:
        raise Unauthorized("missing webhook signature or no webhook secret set for this workspace")
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("webhook signature is not base64") from None
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise Unauthorized("webhook signature does not match the body")


# ------------------------------------------------------------------------------------------- service


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise BadRequest("body: expected a JSON object")
    return payload


def _records(topic: str, payload: dict[str, Any]) -> ContactIn | OrderIn:
    """Map the payload before anything is written, so a payload we cannot read stores nothing."""
    try:
        if topic in shopify.CUSTOMER_TOPICS:
            return shopify.contact_from_payload(payload)
        if topic in shopify.ORDER_TOPICS:
            return shopify.order_from_payload(payload)
        return woocommerce.order_from_payload(payload)
    except RecordError as exc:
        raise Invalid(str(exc), errors=[{"field": str(exc).split(":", 1)[0], "message": str(exc)}]) from None


def _apply(session: Session, workspace_id: int, record: ContactIn | OrderIn) -> Counts:
    if isinstance(record, ContactIn):
        return merge_contacts(session, workspace_id, [record], overwrite=True)
    counts = upsert_orders(session, workspace_id, [record], overwrite_contacts=True)
    # An order moves its buyer through the sales cycle now, so the thank-you can follow within seconds.
    contact_id = session.scalar(
        sa.select(Order.contact_id).where(
            Order.workspace_id == workspace_id, Order.source == record.source, Order.external_id == record.external_id
        )
    )
    if contact_id is not None:
        on_facts_changed(session, workspace_id, [contact_id])
    return counts


def receive(
    session: Session,
    platform: str,
    workspace_id: int,
    *,
    body: bytes,
    topic: str | None,
    signature: str | None,
    delivery_id: str | None,
) -> WebhookResult:
    """Verify, deduplicate and apply one delivery; raises before storing anything if it is not acceptable."""
    if platform == "woocommerce" and topic is None and _WOO_PING.fullmatch(body.strip()):
        # WooCommerce pings the URL unsigned when a webhook is saved and disables it unless it gets a 2xx.
        return WebhookResult(status="ping")
    exists = session.scalar(sa.select(Workspace.id).where(Workspace.id == workspace_id))
    verify(get_secret(session, workspace_id, platform) if exists else None, body, signature)
    topics = shopify.TOPICS if platform == "shopify" else woocommerce.TOPICS
    if not topic:
        raise BadRequest("topic: the topic header is missing")
    if topic not in topics:
        raise BadRequest(f"topic: {topic!r} is not handled; expected one of {', '.join(sorted(topics))}")
    record = _records(topic, _json_object(body))
    if delivery_id and not record_receipt(session, workspace_id, platform, delivery_id):
        return WebhookResult(status="duplicate", topic=topic)
    counts = _apply(session, workspace_id, record)
    return WebhookResult(status="processed", topic=topic, counts=counts.values)


# ------------------------------------------------------------------------------------------- routes


async def _raw_body(request: Request) -> bytes:
    """The exact bytes that were signed, refused past MAX_BODY without reading the rest into memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"body: larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge(f"body: larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


RawBody = Annotated[bytes, Depends(_raw_body)]
router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _header(request: Request) -> Callable[[str], str | None]:
    return lambda name: request.headers.get(name)


@router.post("/shopify/{workspace_id}", response_model=WebhookResult)
def shopify_webhook(workspace_id: int, request: Request, body: RawBody, session: SessionDep) -> WebhookResult:
    """Shopify ``orders/create``, ``orders/updated``, ``orders/paid``, ``orders/cancelled``, ``customers/*``."""
    h = _header(request)
    return receive(
        session,
        "shopify",
        workspace_id,
        body=body,
        topic=h("x-shopify-topic"),
        signature=h("x-shopify-hmac-sha256"),
        delivery_id=h("x-shopify-webhook-id") or h("x-shopify-event-id"),
    )


@router.post("/woocommerce/{workspace_id}", response_model=WebhookResult)
def woocommerce_webhook(workspace_id: int, request: Request, body: RawBody, session: SessionDep) -> WebhookResult:
    """WooCommerce ``order.created`` and ``order.updated``."""
    h = _header(request)
    return receive(
        session,
        "woocommerce",
        workspace_id,
        body=body,
        topic=h("x-wc-webhook-topic"),
        signature=h("x-wc-webhook-signature"),
        delivery_id=h("x-wc-webhook-delivery-id"),
    )
