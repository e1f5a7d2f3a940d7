"""Orders that arrive through the API or a store webhook move their buyer to `buying` at once."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.ingest.webhooks import set_secret
from storefunnel.models import Contact, Workspace

# Within the thank-you window, so the buyer is still in `buying` when the test looks.
RECENT = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()


def test_api_order_moves_the_buyer_to_buying(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace
) -> None:
    body = {
        "email": "buyer@example.com",
        "placed_at": RECENT,
        "currency": "EUR",
        "lines": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": 1200}],
    }
    r = client.post("/api/v1/orders", json=body, headers=auth)
    assert r.status_code == 201, r.text
    contact = session.get(Contact, r.json()["contact_id"])
    assert contact is not None
    session.refresh(contact)
    assert contact.stage == "buying"


def test_shopify_order_webhook_moves_the_buyer_to_buying(
    client: TestClient, session: Session, workspace: Workspace
) -> None:
    secret = set_secret(session, workspace.id, "shopify", "s3cret")
    payload = {
        "id": 820982911946154508,
        "name": "#9001",
        "email": "shopper@example.com",
        "created_at": RECENT,
        "updated_at": RECENT,
        "currency": "EUR",
        "financial_status": "paid",
        "subtotal_price": "20.00",
        "total_discounts": "0.00",
        "total_tax": "0.00",
        "total_price": "20.00",
        "line_items": [{"id": 1, "sku": "TEE", "title": "Tee", "quantity": 1, "price": "20.00"}],
        "customer": {"id": 115310627314723954, "email": "shopper@example.com"},
    }
    raw = json.dumps(payload).encode()
    signature = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    r = client.post(
        f"/webhooks/shopify/{workspace.id}",
        content=raw,
        headers={
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": "hook-9001",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 200, r.text
    contact = session.query(Contact).filter_by(workspace_id=workspace.id, email="shopper@example.com").one()
    assert contact.stage == "buying"
