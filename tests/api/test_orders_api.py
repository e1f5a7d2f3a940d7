"""Orders API: money adds up server-side, contacts are linked or upserted, filters and pagination, both backends."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.models import Contact, Order, OrderLine, Workspace
from storefunnel.workspaces.service import create_workspace

URL = "/api/v1/orders"


def _problem(r: Any, status: int, field: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert field in body["detail"], body
    return body


def _order(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "placed_at": "2026-05-01T10:00:00+02:00",
        "currency": "EUR",
        "lines": [{"sku": "MUG", "quantity": 2, "unit_price": 1250}],
    }
    body.update(fields)
    return body


def test_create_computes_money_and_links_products(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    mug = make.product(session, workspace.id, sku="MUG", name="Blue mug", price=1250)
    contact = make.contact(session, workspace.id)
    body = _order(
        contact_id=contact.id,
        external_id="1001",
        lines=[
            {"sku": "MUG", "quantity": 3, "unit_price": 1250, "discount": 250},  # 3500
            {"sku": "GIFT-WRAP", "name": "Gift wrap", "quantity": 1, "unit_price": 300},  # 300, no product
        ],
        discount=500,
        shipping=490,
        tax=731,
        total=3500 + 300 - 500 + 490 + 731,
        discount_codes=["SPRING"],
        properties={"channel": "web"},
    )
    r = client.post(URL, json=body, headers=auth)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["subtotal"] == 3800
    assert order["total"] == 4521
    assert order["placed_at"].startswith("2026-05-01T08:00:00")  # stored and returned in UTC
    assert order["contact_id"] == contact.id
    assert [ln["total"] for ln in order["lines"]] == [3500, 300]
    assert order["lines"][0]["product_id"] == mug.id
    assert order["lines"][0]["name"] == "Blue mug"
    assert order["lines"][1]["product_id"] is None
    assert order["status"] == "paid"
    row = session.get(Order, order["id"])
    assert row is not None
    assert row.total == 4521
    line_total = session.scalar(sa.select(sa.func.sum(OrderLine.total)).where(OrderLine.order_id == row.id))
    assert line_total == row.subtotal
    assert client.get(f"{URL}/{order['id']}", headers=auth).json() == order


def test_client_total_or_subtotal_that_disagrees_is_422(client: TestClient, auth: dict[str, str]) -> None:
    _problem(client.post(URL, json=_order(total=2499), headers=auth), 422, "total")
    _problem(client.post(URL, json=_order(subtotal=1), headers=auth), 422, "subtotal")
    _problem(client.post(URL, json=_order(discount=2501), headers=auth), 422, "discount")
    assert client.post(URL, json=_order(total=2500, subtotal=2500), headers=auth).status_code == 201


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"placed_at": "2026-05-01T10:00:00"}, "placed_at"),
        ({"placed_at": "yesterday"}, "placed_at"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"lines": []}, "lines"),
        ({"lines": [{"sku": "A", "quantity": 0, "unit_price": 1}]}, "quantity"),
        ({"lines": [{"sku": "A", "quantity": 1, "unit_price": -1}]}, "unit_price"),
        ({"lines": [{"sku": "A", "quantity": 1, "unit_price": 1.5}]}, "unit_price"),
        ({"lines": [{"sku": "A", "quantity": 1, "unit_price": 100, "discount": 101}]}, "discount"),
        ({"lines": [{"quantity": 1, "unit_price": 100}]}, "name"),
        ({"shipping": -1}, "shipping"),
        ({"status": "lost"}, "status"),
        ({"email": "nope"}, "email"),
        ({"email": "a@example.com", "contact_id": 1}, "contact_id"),
        ({"properties": {"x": "y" * 20_000}}, "properties"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    client: TestClient, auth: dict[str, str], fields: dict[str, Any], field: str
) -> None:
    _problem(client.post(URL, json=_order(**fields), headers=auth), 422, field)


def test_contact_of_another_workspace_is_refused(
    client: TestClient, auth: dict[str, str], session: Session, make: Any
) -> None:
    other = create_workspace(session, "orders-other-ws")
    stranger = make.contact(session, other.id)
    body = _problem(client.post(URL, json=_order(contact_id=stranger.id), headers=auth), 422, "contact_id")
    assert stranger.email not in str(body)
    assert session.scalar(sa.select(sa.func.count()).select_from(Order).where(Order.contact_id == stranger.id)) == 0


def test_email_upserts_the_contact(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    known = make.contact(session, workspace.id, email="known@example.com")
    first = client.post(URL, json=_order(email="Known@Example.com"), headers=auth).json()
    assert first["contact_id"] == known.id
    new = client.post(URL, json=_order(email="new@example.com"), headers=auth).json()
    again = client.post(URL, json=_order(email="NEW@example.com"), headers=auth).json()
    assert new["contact_id"] == again["contact_id"] != known.id
    created = session.get(Contact, new["contact_id"])
    assert created is not None
    assert created.workspace_id == workspace.id
    assert created.email == "new@example.com"
    guest = client.post(URL, json=_order(), headers=auth).json()
    assert guest["contact_id"] is None


def test_external_id_is_unique_per_source(client: TestClient, auth: dict[str, str], session: Session) -> None:
    assert client.post(URL, json=_order(external_id="A-1"), headers=auth).status_code == 201
    _problem(client.post(URL, json=_order(external_id="A-1"), headers=auth), 409, "external_id")
    assert client.post(URL, json=_order(external_id="A-1", source="pos"), headers=auth).status_code == 201
    assert session.scalar(sa.select(sa.func.count()).select_from(Order).where(Order.external_id == "A-1")) == 2


def test_update_status_and_properties_only(client: TestClient, auth: dict[str, str]) -> None:
    oid = client.post(URL, json=_order(), headers=auth).json()["id"]
    r = client.patch(f"{URL}/{oid}", json={"status": "refunded", "properties": {"note": "broken"}}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refunded"
    assert r.json()["properties"] == {"note": "broken"}
    assert r.json()["total"] == 2500
    _problem(client.patch(f"{URL}/{oid}", json={"total": 1}, headers=auth), 422, "total")
    _problem(client.patch(f"{URL}/{oid}", json={"status": None}, headers=auth), 422, "status")
    _problem(client.patch(f"{URL}/999999999", json={}, headers=auth), 404, "999999999")


def _ids(client: TestClient, auth: dict[str, str], **params: Any) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = client.get(URL, params=query, headers=auth)
        assert r.status_code == 200, r.text
        ids += [o["id"] for o in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return ids


def test_filters_and_pagination(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    t = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    ws = workspace.id
    mug = make.product(session, ws)
    alice, bob = make.contact(session, ws), make.contact(session, ws)
    o1 = make.order(session, ws, contact=alice, placed_at=t, lines=[(mug, 1)])
    o2 = make.order(session, ws, contact=alice, placed_at=t + dt.timedelta(days=1), status="refunded")
    o3 = make.order(session, ws, contact=bob, placed_at=t + dt.timedelta(days=2), currency="USD")
    o4 = make.order(session, ws, placed_at=t + dt.timedelta(days=3))
    o5 = make.order(session, ws, contact=bob, placed_at=t + dt.timedelta(days=4))
    walked = _ids(client, auth)
    assert walked == [o5.id, o4.id, o3.id, o2.id, o1.id]
    assert _ids(client, auth, contact_id=alice.id) == [o2.id, o1.id]
    assert _ids(client, auth, status="refunded") == [o2.id]
    assert _ids(client, auth, currency="USD") == [o3.id]
    day1, day3 = (t + dt.timedelta(days=1)).isoformat(), (t + dt.timedelta(days=3)).isoformat()
    assert _ids(client, auth, placed_after=day1, placed_before=day3) == [o3.id, o2.id]
    _problem(client.get(URL, params={"placed_after": "2026-04-01T00:00:00"}, headers=auth), 422, "placed_after")
    page = client.get(URL, params={"contact_id": alice.id}, headers=auth).json()["data"]
    assert page[1]["lines"][0]["product_id"] == mug.id
    assert page[0]["lines"] == []


def test_out_of_range_input_is_4xx_never_500(client: TestClient, auth: dict[str, str]) -> None:
    huge = 10**20
    _problem(client.get(f"{URL}/{huge}", headers=auth), 422, "order_id")
    _problem(client.get(URL, params={"contact_id": huge}, headers=auth), 422, "contact_id")
    _problem(client.post(URL, json=_order(contact_id=huge), headers=auth), 422, "contact_id")
    big_line = [{"sku": "A", "quantity": 1_000_000, "unit_price": 10**13}]
    _problem(client.post(URL, json=_order(lines=big_line), headers=auth), 422, "unit_price")
    _problem(client.post(URL, json=_order(placed_at="9999-12-31T23:59:59-05:00"), headers=auth), 422, "placed_at")
    _problem(client.post(URL, json=_order(external_id="a\u0000"), headers=auth), 422, "external_id")
    _problem(client.get(URL, params={"currency": "E\u0000R"}, headers=auth), 422, "currency")
    raw_nan = (
        b'{"placed_at": "2026-05-01T10:00:00Z", "currency": "EUR", "properties": {"x": Infinity},'
        b' "lines": [{"sku": "A", "quantity": 1, "unit_price": 1}]}'
    )
    r = client.post(URL, content=raw_nan, headers={**auth, "content-type": "application/json"})
    _problem(r, 422, "properties")
