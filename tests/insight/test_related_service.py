"""Related products from stored orders: planted pairs found, holdout hit rates, and the one-query
recommendations equal to ``insight.related.recommend`` over the same rules."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.insight import related, related_service
from storefunnel.models import KeyKind, Order, OrderLine, Workspace
from tests.fixtures.factories import create_contact, create_order, create_product
from tests.insight.simulated import simulated_store

SPLIT = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)


def test_rules_recover_planted_pairs(session: Session, database_url: str) -> None:
    ws, truth = simulated_store(database_url)
    related_service.build_related(session, ws)
    planted = {frozenset((p["sku_a"], p["sku_b"])) for p in truth["co_purchase_pairs"]}
    top = related_service.rules_report(session, ws, sort="lift", limit=2 * len(planted))["items"]
    found = {frozenset((r["antecedent"]["sku"], r["consequent"]["sku"])) for r in top}
    every = related_service.rules_report(session, ws, sort="lift", limit=1000)["items"]
    stored = {frozenset((r["antecedent"]["sku"], r["consequent"]["sku"])) for r in every}
    assert planted <= stored  # every planted pair is a stored rule
    assert len(found & planted) >= len(planted) - 1  # and all but at most one lead the list by lift


def test_holdout_hit_rates(session: Session, database_url: str) -> None:
    ws, _ = simulated_store(database_url)
    rep = related_service.holdout_hit_rate(session, ws, SPLIT, k=10)
    print("holdout", rep)  # noqa: T201
    # The simulator plants pairs inside a basket: completing a basket is where rules must beat best sellers.
    assert rep["baskets"]["hit_rate_rules"] > 1.3 * rep["baskets"]["hit_rate_best_sellers"]
    assert rep["customers"] > 100


def test_recommendations_equal_recommend_over_the_stored_rules(session: Session, database_url: str) -> None:
    ws, _ = simulated_store(database_url)
    related_service.build_related(session, ws)
    o, p = related_service.baskets(session, ws)
    rules, _, _ = related_service.compute_rules(o, p)
    sellers = session.execute(
        sa.text("SELECT product_id FROM best_sellers WHERE workspace_id = :ws AND segment_id IS NULL ORDER BY rank"),
        {"ws": ws},
    ).all()
    best = [r[0] for r in sellers]
    contacts = (
        session.execute(
            sa.select(Order.contact_id).where(Order.workspace_id == ws).distinct().order_by(Order.contact_id).limit(200)
        )
        .scalars()
        .all()
    )
    owned_rows = session.execute(
        sa.select(Order.contact_id, OrderLine.product_id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Order.workspace_id == ws, Order.contact_id.in_(contacts))
    ).all()
    owned: dict[int, list[int]] = {c: [] for c in contacts}
    for c, prod in owned_rows:
        owned[c].append(prod)
    expected = related.recommend([owned[c] for c in contacts], rules, k=10, fallback=best)
    fired = 0
    for c, want in zip(contacts, expected, strict=True):
        got = related_service.recommend_ids(session, ws, c, 10)
        assert [g[0] for g in got] == want, c
        fired += any(g[1] == "related" for g in got)
    assert fired > 0


def test_buying_group_best_sellers_come_before_the_stores(session: Session, workspace: Workspace) -> None:
    from storefunnel.segments import service as segments
    from storefunnel.segments.schemas import MembersChange, SegmentCreate

    ws = workspace.id
    a, b, c = (create_product(session, ws) for _ in range(3))
    fans = [create_contact(session, ws) for _ in range(3)]
    for i, fan in enumerate(fans):
        create_order(session, ws, fan, [(c, 1)], placed_at=dt.datetime(2026, 1, 2 + i, tzinfo=dt.UTC))
    for i in range(5):
        other = create_contact(session, ws)
        create_order(session, ws, other, [(a, 1)], placed_at=dt.datetime(2026, 1, 2 + i, tzinfo=dt.UTC))
    group = segments.create_segment(session, ws, SegmentCreate(name="fans", kind="static"))
    newcomer = create_contact(session, ws)
    segments.add_members(session, ws, group.id, MembersChange(contact_ids=[*(f.id for f in fans), newcomer.id]))
    related_service.build_related(session, ws, min_support=0.5)
    picks = related_service.recommend_ids(session, ws, newcomer.id, 3)
    assert picks[0][:2] == (c.id, "buying_group_best_seller")
    assert [p[0] for p in picks][1:] == [a.id]
    assert b.id not in [p[0] for p in picks]  # never sold: no basis to offer it


def test_api_related_and_isolation(
    session: Session, client: TestClient, database_url: str, auth: dict[str, str]
) -> None:
    ws, _ = simulated_store(database_url)
    sim_auth = {"Authorization": f"Bearer {create_key(session, ws, KeyKind.api)[1]}"}
    assert client.post("/api/v1/related/build", json={}, headers=sim_auth).status_code == 201
    rules = client.get("/api/v1/related/rules?limit=3", headers=sim_auth).json()
    assert len(rules["items"]) == 3
    pid = rules["items"][0]["antecedent"]["product_id"]
    per = client.get(f"/api/v1/related/products/{pid}", headers=sim_auth).json()
    assert all(r["antecedent"]["product_id"] == pid for r in per["items"])
    cid = session.scalar(sa.select(Order.contact_id).where(Order.workspace_id == ws).limit(1))
    recs = client.get(f"/api/v1/contacts/{cid}/recommendations?k=5", headers=sim_auth)
    assert recs.status_code == 200
    assert len(recs.json()["items"]) == 5
    # another workspace's key sees neither the contact nor the product
    assert client.get(f"/api/v1/contacts/{cid}/recommendations", headers=auth).status_code == 404
    assert client.get(f"/api/v1/related/products/{pid}", headers=auth).status_code == 404
    bad = client.get(f"/api/v1/contacts/{cid}/recommendations?k=0", headers=sim_auth)
    assert bad.status_code == 422
    assert "k" in bad.json()["detail"]
    assert client.post("/api/v1/related/build", json={"min_support": 2}, headers=sim_auth).status_code == 422
    holdout = client.get("/api/v1/related/holdout?split_at=2026-08-01", headers=sim_auth).json()
    assert holdout["customers"] > 0
    assert client.get("/api/v1/related/holdout?split_at=tomorrow", headers=sim_auth).status_code == 422


def test_no_orders_is_a_clear_422(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post("/api/v1/related/build", json={}, headers=auth)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("orders:")
    assert client.get("/api/v1/related/rules", headers=auth).status_code == 404
