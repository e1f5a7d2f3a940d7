"""Shopify and WooCommerce webhooks through the real app: signatures, replays, updates and exact amounts."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.ingest.webhooks import MAX_BODY, set_secret, sign
from storefunnel.models import Contact, Order, OrderLine, Product, Receipt, Workspace

DATA = Path(__file__).parent / "data"
SECRET = "shpss_test_5f1c0e7d9b2a4c6e8f0a1b3c5d7e9f11"
WOO_SECRET = "woo secret with spaces & symbols!"


def payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


def shopify_post(
    client: TestClient,
    ws: int,
    body: dict[str, Any] | bytes,
    topic: str = "orders/create",
    *,
    secret: str | None = SECRET,
    webhook_id: str | None = None,
    signature: str | None = None,
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": "barro-studio.myshopify.com",
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
    }
    if signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature
    elif secret is not None:
        headers["X-Shopify-Hmac-Sha256"] = sign(secret, raw)
    return client.post(f"/webhooks/shopify/{ws}", content=raw, headers=headers)


def woo_post(
    client: TestClient,
    ws: int,
    body: dict[str, Any],
    topic: str = "order.created",
    *,
    delivery: str | None = None,
    secret: str = WOO_SECRET,
) -> Any:
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": "https://shop.example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": "order",
        "X-WC-Webhook-Event": topic.split(".")[1],
        "X-WC-Webhook-Signature": sign(secret, raw),
        "X-WC-Webhook-ID": "17",
        "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex,
    }
    return client.post(f"/webhooks/woocommerce/{ws}", content=raw, headers=headers)


@pytest.fixture
def ws(session: Session, workspace: Workspace) -> int:
    set_secret(session, workspace.id, "shopify", SECRET)
    set_secret(session, workspace.id, "woocommerce", WOO_SECRET)
    return workspace.id


def count(session: Session, model: Any, ws: int) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(model.workspace_id == ws)) or 0)


def stored_nothing(session: Session, ws: int) -> bool:
    return all(count(session, m, ws) == 0 for m in (Contact, Order, OrderLine, Product, Receipt))


def the_order(session: Session, ws: int, external_id: str) -> Order:
    return session.scalars(sa.select(Order).where(Order.workspace_id == ws, Order.external_id == external_id)).one()


def lines_of(session: Session, order: Order) -> list[OrderLine]:
    stmt = sa.select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)
    return list(session.scalars(stmt))


def test_shopify_order_create_maps_every_amount(client: TestClient, session: Session, ws: int) -> None:
    r = shopify_post(client, ws, payload("shopify_order_create.json"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processed"
    order = the_order(session, ws, "#1001")
    assert order.source == "shopify"
    assert (order.currency, order.subtotal, order.discount, order.shipping, order.tax, order.total) == (
        "EUR",
        5990,
        599,
        490,
        1100,
        5881,
    )
    assert order.status == "paid"
    assert order.discount_codes == ["WELCOME10"]
    assert order.placed_at == dt.datetime(2026, 3, 2, 11, 20, 5, tzinfo=dt.UTC)
    assert order.properties["shopify_id"] == 5940139491234
    assert "utm_campaign=spring" in order.properties["landing_site"]
    lines = lines_of(session, order)
    assert [(ln.sku, ln.quantity, ln.unit_price, ln.discount, ln.total) for ln in lines] == [
        ("MUG-BLU", 2, 1250, 250, 2250),
        (None, 1, 3490, 349, 3141),
    ]
    # The lines after discounts plus shipping are what the customer paid (taxes are included in the prices).
    assert sum(ln.total for ln in lines) + order.shipping == order.total
    products = {p.sku: p for p in session.scalars(sa.select(Product).where(Product.workspace_id == ws))}
    assert set(products) == {"MUG-BLU", "shopify:7513594249378:42469880037538"}
    assert lines[0].product_id == products["MUG-BLU"].id
    contact = session.get(Contact, order.contact_id)
    assert contact is not None
    assert (contact.email, contact.external_id, contact.first_name, contact.last_name) == (
        "ana.silva@example.pt",
        "shopify:7123456789012",
        "Ana",
        "Silva",
    )
    assert (contact.country, contact.city, contact.region) == ("PT", "Porto", "Porto")
    assert contact.email_consent is True
    assert contact.consent_source == "shopify"
    assert contact.consent_at == dt.datetime(2026, 3, 2, 11, 20, 4, tzinfo=dt.UTC)


def test_replayed_webhook_id_is_harmless(client: TestClient, session: Session, ws: int) -> None:
    body = payload("shopify_order_create.json")
    first = shopify_post(client, ws, body, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    again = shopify_post(client, ws, body, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    assert first.json()["status"] == "processed"
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert count(session, Order, ws) == 1
    assert count(session, OrderLine, ws) == 2
    assert count(session, Receipt, ws) == 1


def test_same_payload_under_a_new_id_changes_nothing(client: TestClient, session: Session, ws: int) -> None:
    body = payload("shopify_order_create.json")
    shopify_post(client, ws, body)
    order = the_order(session, ws, "#1001")
    line_ids = [ln.id for ln in lines_of(session, order)]
    r = shopify_post(client, ws, body)
    assert r.json()["counts"].get("orders_unchanged") == 1
    assert r.json()["counts"].get("orders_updated", 0) == 0
    assert [ln.id for ln in lines_of(session, order)] == line_ids


def test_orders_updated_updates_the_same_order(client: TestClient, session: Session, ws: int) -> None:
    shopify_post(client, ws, payload("shopify_order_create.json"))
    r = shopify_post(client, ws, payload("shopify_order_updated.json"), topic="orders/updated")
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["orders_updated"] == 1
    assert count(session, Order, ws) == 1
    session.expire_all()
    order = the_order(session, ws, "#1001")
    assert (order.status, order.subtotal, order.discount, order.total) == ("cancelled", 2500, 250, 2740)
    assert [ln.sku for ln in lines_of(session, order)] == ["MUG-BLU"]
    assert count(session, Contact, ws) == 1


def test_an_older_update_arriving_late_does_not_win(client: TestClient, session: Session, ws: int) -> None:
    shopify_post(client, ws, payload("shopify_order_updated.json"), topic="orders/updated")
    r = shopify_post(client, ws, payload("shopify_order_create.json"))
    assert r.json()["counts"].get("orders_updated", 0) == 0
    session.expire_all()
    assert the_order(session, ws, "#1001").status == "cancelled"


@pytest.mark.parametrize(
    ("currency", "price", "expected"),
    [
        ("JPY", "1500", 1500),
        ("JPY", "1500.00", 1500),
        ("EUR", "12.5", 1250),
        ("KWD", "12.345", 12345),
        ("BHD", "0.5", 500),
    ],
)
def test_money_follows_the_currency_exponent(
    client: TestClient, session: Session, ws: int, currency: str, price: str, expected: int
) -> None:
    body = payload("shopify_order_create.json")
    body.update(
        currency=currency,
        total_line_items_price=price,
        total_discounts="0",
        total_tax="0",
        total_price=price,
        total_shipping_price_set=None,
        shipping_lines=[],
    )
    body["line_items"] = [{**body["line_items"][0], "quantity": 1, "price": price, "discount_allocations": []}]
    r = shopify_post(client, ws, body)
    assert r.status_code == 200, r.text
    order = the_order(session, ws, "#1001")
    assert (order.currency, order.subtotal, order.total) == (currency, expected, expected)
    assert lines_of(session, order)[0].unit_price == expected


def test_sub_minor_amount_is_422_naming_the_field(client: TestClient, session: Session, ws: int) -> None:
    body = payload("shopify_order_create.json")
    body.update(total_price="58.815")
    r = shopify_post(client, ws, body)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"].startswith("total_price")
    assert stored_nothing(session, ws)


@pytest.mark.parametrize("kind", ["missing", "wrong-secret", "tampered", "garbage"])
def test_bad_shopify_signature_is_401_and_stores_nothing(
    client: TestClient, session: Session, ws: int, kind: str
) -> None:
    body = payload("shopify_order_create.json")
    raw = json.dumps(body).encode()
    if kind == "missing":
        r = shopify_post(client, ws, raw, secret=None)
    elif kind == "wrong-secret":
        r = shopify_post(client, ws, raw, secret="not-the-secret")
    elif kind == "tampered":
        r = shopify_post(client, ws, raw.replace(b'"58.81"', b'"0.01"'), signature=sign(SECRET, raw))
    else:
        r = shopify_post(client, ws, raw, signature="%%%not base64%%%")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert stored_nothing(session, ws)


def test_unknown_workspace_or_no_secret_is_401(client: TestClient, session: Session, workspace: Workspace) -> None:
    body = payload("shopify_order_create.json")
    assert shopify_post(client, workspace.id, body).status_code == 401
    assert shopify_post(client, 987654321, body).status_code == 401
    assert stored_nothing(session, workspace.id)


def test_another_workspaces_secret_does_not_open_this_one(
    client: TestClient, session: Session, ws: int, make: Any
) -> None:
    from storefunnel.workspaces.service import create_workspace

    other = create_workspace(session, f"other-{uuid.uuid4().hex[:6]}")
    set_secret(session, other.id, "shopify", "other-secret")
    r = shopify_post(client, ws, payload("shopify_order_create.json"), secret="other-secret")
    assert r.status_code == 401
    assert stored_nothing(session, ws)


def test_malformed_json_unknown_topic_and_oversize(client: TestClient, session: Session, ws: int) -> None:
    broken = shopify_post(client, ws, b'{"name": "#1001", ')
    assert broken.status_code == 400
    assert "JSON" in broken.json()["detail"]
    not_object = shopify_post(client, ws, b"[1, 2]")
    assert not_object.status_code == 400
    topic = shopify_post(client, ws, payload("shopify_order_create.json"), topic="products/create")
    assert topic.status_code == 400
    assert "products/create" in topic.json()["detail"]
    big = b'{"pad": "' + b"x" * (MAX_BODY + 10) + b'"}'
    too_large = shopify_post(client, ws, big)
    assert too_large.status_code == 413
    assert stored_nothing(session, ws)


def test_customers_create_upserts_the_contact(client: TestClient, session: Session, ws: int) -> None:
    r = shopify_post(client, ws, payload("shopify_customer_create.json"), topic="customers/create")
    assert r.status_code == 200, r.text
    contact = session.scalars(sa.select(Contact).where(Contact.workspace_id == ws)).one()
    assert (contact.email, contact.external_id, contact.first_name, contact.city, contact.country) == (
        "joao.pereira@example.pt",
        "shopify:7123456790001",
        "João",
        "Lisboa",
        "PT",
    )
    assert contact.email_consent is True
    unsubscribed = payload("shopify_customer_create.json")
    unsubscribed["email_marketing_consent"] = {"state": "unsubscribed", "consent_updated_at": "2026-05-01T00:00:00Z"}
    unsubscribed["email"] = "JOAO.PEREIRA@example.pt"
    shopify_post(client, ws, unsubscribed, topic="customers/update")
    session.expire_all()
    assert count(session, Contact, ws) == 1
    assert session.get(Contact, contact.id).email_consent is False  # type: ignore[union-attr]


def test_an_order_joins_the_contact_a_customer_webhook_made(client: TestClient, session: Session, ws: int) -> None:
    customer = payload("shopify_customer_create.json")
    shopify_post(client, ws, customer, topic="customers/create")
    order = payload("shopify_order_create.json")
    order["email"] = order["contact_email"] = customer["email"]
    order["customer"] = {**customer}
    shopify_post(client, ws, order)
    assert count(session, Contact, ws) == 1
    contact = session.scalars(sa.select(Contact).where(Contact.workspace_id == ws)).one()
    assert the_order(session, ws, "#1001").contact_id == contact.id


def test_woocommerce_order_created_and_updated(client: TestClient, session: Session, ws: int) -> None:
    body = payload("woocommerce_order_created.json")
    r = woo_post(client, ws, body)
    assert r.status_code == 200, r.text
    order = the_order(session, ws, "4127")
    assert order.source == "woocommerce"
    assert (order.currency, order.subtotal, order.discount, order.shipping, order.tax, order.total) == (
        "EUR",
        4500,
        450,
        500,
        1047,
        5597,
    )
    assert order.subtotal - order.discount + order.shipping + order.tax == order.total
    assert order.status == "paid"
    assert order.discount_codes == ["spring10"]
    assert order.placed_at == dt.datetime(2026, 4, 18, 14, 42, 10, tzinfo=dt.UTC)
    lines = lines_of(session, order)
    assert [(ln.sku, ln.quantity, ln.unit_price, ln.discount, ln.total) for ln in lines] == [
        ("TEE-M-BLK", 2, 1500, 300, 2700),
        (None, 1, 1500, 150, 1350),
    ]
    contact = session.get(Contact, order.contact_id)
    assert contact is not None
    assert (contact.email, contact.external_id, contact.country, contact.city) == (
        "marta.costa@example.com",
        "woocommerce:311",
        "PT",
        "Lisboa",
    )
    updated = copy.deepcopy(body)
    updated.update(status="completed", date_modified_gmt="2026-04-20T10:00:00")
    updated2 = copy.deepcopy(updated)
    updated2.update(status="refunded", date_modified_gmt="2026-04-25T10:00:00")
    assert woo_post(client, ws, updated2, "order.updated").status_code == 200
    assert woo_post(client, ws, updated, "order.updated").json()["counts"].get("orders_updated", 0) == 0
    session.expire_all()
    assert the_order(session, ws, "4127").status == "refunded"
    assert count(session, Order, ws) == 1


def test_woocommerce_replay_signature_and_ping(client: TestClient, session: Session, ws: int) -> None:
    body = payload("woocommerce_order_created.json")
    assert woo_post(client, ws, body, delivery="d-1").json()["status"] == "processed"
    assert woo_post(client, ws, body, delivery="d-1").json()["status"] == "duplicate"
    assert count(session, Receipt, ws) == 1
    bad = woo_post(client, ws, {**body, "id": 9999}, secret="wrong")
    assert bad.status_code == 401
    assert count(session, Order, ws) == 1
    ping = client.post(
        f"/webhooks/woocommerce/{ws}",
        content=b"webhook_id=17",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ping.status_code == 200
    assert ping.json()["status"] == "ping"
    unknown = woo_post(client, ws, body, topic="product.created")
    assert unknown.status_code == 400


def test_webhooks_through_a_real_server(live_server: Any, committed_session: Session) -> None:
    """Signed deliveries over real HTTP to uvicorn, committed before the 2xx: a new session sees them."""
    import httpx

    from storefunnel.workspaces.service import create_workspace

    ws = create_workspace(committed_session, f"live-{uuid.uuid4().hex[:8]}")
    set_secret(committed_session, ws.id, "shopify", SECRET)
    committed_session.commit()
    raw = json.dumps(payload("shopify_order_create.json")).encode()
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": sign(SECRET, raw),
        "X-Shopify-Webhook-Id": "live-1",
        "Content-Type": "application/json",
    }
    r = httpx.post(f"{live_server.url}/webhooks/shopify/{ws.id}", content=raw, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    bad = httpx.post(
        f"{live_server.url}/webhooks/shopify/{ws.id}",
        content=raw,
        headers={**headers, "X-Shopify-Hmac-Sha256": sign("nope", raw), "X-Shopify-Webhook-Id": "live-2"},
        timeout=30,
    )
    assert bad.status_code == 401
    committed_session.expire_all()
    assert count(committed_session, Order, ws.id) == 1
    assert count(committed_session, Receipt, ws.id) == 1
