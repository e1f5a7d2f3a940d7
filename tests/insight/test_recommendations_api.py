"""GET /api/v1/contacts/{id}/recommendations: the names joined in, 404 for contacts outside the workspace (even
when the other workspace has rules), an empty list for a known contact with nothing to offer, and keys of two
workspaces used in turn never crossing, however warm the key cache is."""

from __future__ import annotations

import datetime as dt
import gc

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.insight import related_service
from storefunnel.models import Contact, KeyKind, Workspace
from storefunnel.workspaces.service import create_workspace
from tests.fixtures.factories import create_contact, create_order, create_product

DAY = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _store(session: Session, ws: int) -> tuple[Contact, int, int]:
    """Six baskets of a+b, two of c alone, and a contact who bought only a: b is their related pick."""
    a = create_product(session, ws, sku=f"A-{ws}", name="Tent", category="camping")
    b = create_product(session, ws, sku=f"B-{ws}", name="Sleeping bag", category="camping")
    c = create_product(session, ws, sku=f"C-{ws}", name="Mug", category="kitchen")
    for i in range(6):
        create_order(session, ws, create_contact(session, ws), [(a, 1), (b, 1)], placed_at=DAY + dt.timedelta(i))
    for i in range(2):
        create_order(session, ws, create_contact(session, ws), [(c, 1)], placed_at=DAY + dt.timedelta(i))
    buyer = create_contact(session, ws)
    create_order(session, ws, buyer, [(a, 1)], placed_at=DAY + dt.timedelta(9))
    related_service.build_related(session, ws, min_support=0.1)
    return buyer, b.id, c.id


def test_picks_carry_names_and_sources(
    session: Session, client: TestClient, workspace: Workspace, auth: dict[str, str]
) -> None:
    buyer, b, c = _store(session, workspace.id)
    r = client.get(f"/api/v1/contacts/{buyer.id}/recommendations?k=2", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["contact_id"] == buyer.id
    first, second = body["items"]
    assert first == {
        "product_id": b,
        "sku": f"B-{workspace.id}",
        "name": "Sleeping bag",
        "category": "camping",
        "source": "related",
        "score": first["score"],
    }
    assert first["score"] == pytest.approx(6 / 7)  # confidence of a -> b: 6 of the 7 baskets with a
    assert second["product_id"] == c
    assert (second["source"], second["score"], second["name"]) == ("best_seller", None, "Mug")


def test_unknown_and_foreign_contacts_are_404_known_without_picks_is_empty(
    session: Session, client: TestClient, workspace: Workspace, auth: dict[str, str]
) -> None:
    other = create_workspace(session, "other-store")
    foreign, _, _ = _store(session, other.id)  # the other workspace has rules and best sellers
    for cid in (foreign.id, 2**62):
        r = client.get(f"/api/v1/contacts/{cid}/recommendations", headers=auth)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == f"contact {cid} not found"
    mine = create_contact(session, workspace.id)  # this workspace has no rules yet: nothing to offer, not a 404
    r = client.get(f"/api/v1/contacts/{mine.id}/recommendations", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"contact_id": mine.id, "items": []}


def test_keys_of_two_workspaces_in_turn_never_cross(
    session: Session, client: TestClient, workspace: Workspace, auth: dict[str, str]
) -> None:
    other = create_workspace(session, "other-store")
    other_auth = {"Authorization": f"Bearer {create_key(session, other.id, KeyKind.api)[1]}"}
    mine, my_pick, _ = _store(session, workspace.id)
    theirs, their_pick, _ = _store(session, other.id)
    for _ in range(3):  # the first round fills the key cache, the next ones are served from it
        for headers, own, own_pick, foreign in ((auth, mine, my_pick, theirs), (other_auth, theirs, their_pick, mine)):
            r = client.get(f"/api/v1/contacts/{own.id}/recommendations", headers=headers)
            assert r.status_code == 200
            assert r.json()["items"][0]["product_id"] == own_pick
            assert client.get(f"/api/v1/contacts/{foreign.id}/recommendations", headers=headers).status_code == 404


def test_served_app_freezes_the_startup_heap() -> None:
    """``storefunnel serve`` runs this factory: the objects alive after start-up leave the collector's reach, so a
    full collection no longer pauses requests for 100 ms and more (bench/recommendations.py)."""
    from storefunnel.main import create_served_app

    gc.unfreeze()
    try:
        create_served_app()
        assert gc.get_freeze_count() > 100_000
    finally:
        gc.unfreeze()
