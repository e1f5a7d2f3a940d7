"""Contacts API: create/read/update, validation per field, filters and pagination, on both backends."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.models import Contact, Workspace

URL = "/api/v1/contacts"


def _problem(r: Any, status: int, field: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert field in body["detail"], body
    return body


def test_create_read_update(client: TestClient, auth: dict[str, str], session: Session) -> None:
    body = {
        "email": "  Ana.Silva@Example.COM ",
        "first_name": "Ana",
        "last_name": "Silva",
        "phone": "+351 912 345 678",
        "country": "pt",
        "region": "Porto",
        "city": "Porto",
        "age_band": "25-29",
        "gender": "Female",
        "traits": {"plan": "gold", "visits": 3},
    }
    r = client.post(URL, json=body, headers=auth)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["email"] == "ana.silva@example.com"
    assert created["country"] == "PT"
    assert created["gender"] == "female"
    assert created["age_band"] == "25-29"
    assert created["traits"] == {"plan": "gold", "visits": 3}
    assert created["email_consent"] is False
    assert created["consent_at"] is None
    row = session.get(Contact, created["id"])
    assert row is not None
    assert row.email == "ana.silva@example.com"

    got = client.get(f"{URL}/{created['id']}", headers=auth).json()
    assert got == created

    r = client.patch(f"{URL}/{created['id']}", json={"city": "Lisboa", "phone": None}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["city"] == "Lisboa"
    assert r.json()["phone"] is None
    assert r.json()["first_name"] == "Ana"


def test_consent_at_is_set_when_consent_flips_true(client: TestClient, auth: dict[str, str]) -> None:
    before = dt.datetime.now(dt.UTC)
    cid = client.post(URL, json={"email": "c@example.com"}, headers=auth).json()["id"]
    r = client.patch(f"{URL}/{cid}", json={"email_consent": True}, headers=auth)
    _problem(r, 422, "consent_source")
    r = client.patch(f"{URL}/{cid}", json={"email_consent": True, "consent_source": "checkout"}, headers=auth)
    assert r.status_code == 200, r.text
    consent_at = dt.datetime.fromisoformat(r.json()["consent_at"])
    assert consent_at >= before
    assert r.json()["unsubscribed_at"] is None
    # Saying yes again keeps the original moment of consent.
    again = client.patch(f"{URL}/{cid}", json={"email_consent": True}, headers=auth).json()
    assert dt.datetime.fromisoformat(again["consent_at"]) == consent_at
    off = client.patch(f"{URL}/{cid}", json={"email_consent": False}, headers=auth).json()
    assert off["email_consent"] is False
    assert off["unsubscribed_at"] is not None

    created = client.post(
        URL, json={"email": "d@example.com", "email_consent": True, "consent_source": "form"}, headers=auth
    ).json()
    assert created["consent_at"] is not None
    _problem(client.post(URL, json={"email": "e@example.com", "email_consent": True}, headers=auth), 422, "consent")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("country", "UK"),
        ("country", "PRT"),
        ("age_band", "20-30"),
        ("phone", "call me"),
        ("traits", "not an object"),
        ("traits", {"blob": "x" * 20_000}),
        ("first_name", "x" * 101),
        ("unsubscribed_at", "2026-01-01T00:00:00"),
        ("colour", "red"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    client: TestClient, auth: dict[str, str], field: str, value: Any
) -> None:
    body = {"email": "valid@example.com", field: value}
    _problem(client.post(URL, json=body, headers=auth), 422, field)


def test_contact_needs_email_or_external_id(client: TestClient, auth: dict[str, str]) -> None:
    _problem(client.post(URL, json={"first_name": "Nobody"}, headers=auth), 422, "email")
    r = client.post(URL, json={"external_id": "user-42"}, headers=auth)
    assert r.status_code == 201, r.text
    _problem(client.patch(f"{URL}/{r.json()['id']}", json={"external_id": None}, headers=auth), 422, "email")
    _problem(client.patch(f"{URL}/{r.json()['id']}", json={"traits": None}, headers=auth), 422, "traits")


def test_duplicate_email_is_409_naming_email(client: TestClient, auth: dict[str, str]) -> None:
    assert client.post(URL, json={"email": "dup@example.com"}, headers=auth).status_code == 201
    _problem(client.post(URL, json={"email": "DUP@example.com"}, headers=auth), 409, "email")
    other = client.post(URL, json={"email": "other@example.com"}, headers=auth).json()
    _problem(client.patch(f"{URL}/{other['id']}", json={"email": "dup@example.com"}, headers=auth), 409, "email")
    # Re-sending one's own email is not a conflict.
    assert client.patch(f"{URL}/{other['id']}", json={"email": "other@example.com"}, headers=auth).status_code == 200


def test_same_email_in_two_workspaces_is_fine(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    from storefunnel.workspaces.service import create_workspace

    other = create_workspace(session, "other-shop-for-email")
    make.contact(session, other.id, email="shared@example.com")
    assert client.post(URL, json={"email": "shared@example.com"}, headers=auth).status_code == 201


def test_unknown_id_is_404(client: TestClient, auth: dict[str, str]) -> None:
    _problem(client.get(f"{URL}/999999999", headers=auth), 404, "999999999")
    _problem(client.patch(f"{URL}/999999999", json={}, headers=auth), 404, "999999999")


def _ids(client: TestClient, auth: dict[str, str], **params: Any) -> list[int]:
    """Walk every page of the list, asserting each page is full except the last."""
    ids: list[int] = []
    cursor = None
    while True:
        query = {**params, "limit": 3, **({"cursor": cursor} if cursor else {})}
        r = client.get(URL, params=query, headers=auth)
        assert r.status_code == 200, r.text
        page = r.json()
        ids += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert len(page["data"]) == 3


def test_filters(client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any) -> None:
    t = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ws = workspace.id
    ana = make.contact(
        session,
        ws,
        email="ana@shop.pt",
        first_name="Ana",
        last_name="Silva",
        country="PT",
        city="Porto",
        stage="buying",
        lead_at=t,
        lead_channel="Paid Social",
        created_at=t,
    )
    bob = make.contact(
        session,
        ws,
        email="bob@shop.de",
        first_name="Bob",
        country="DE",
        city="Berlin",
        stage="prospecting",
        created_at=t + dt.timedelta(days=10),
    )
    eve = make.contact(
        session,
        ws,
        email="eve_100%@shop.pt",
        first_name="Eve",
        last_name="Silvana",
        country="PT",
        city="porto",
        lead_at=t,
        lead_channel="Email",
        created_at=t + dt.timedelta(days=20),
    )
    make.order(session, ws, contact=bob)
    assert sorted(_ids(client, auth)) == sorted([ana.id, bob.id, eve.id])
    assert _ids(client, auth, email="ANA@shop.pt") == [ana.id]
    assert sorted(_ids(client, auth, q="silv")) == sorted([ana.id, eve.id])
    assert _ids(client, auth, q="ana silva") == [ana.id]
    assert _ids(client, auth, q="100%") == [eve.id]
    assert _ids(client, auth, q="_") == [eve.id]
    assert _ids(client, auth, stage="buying") == [ana.id]
    assert _ids(client, auth, lead_channel="Email") == [eve.id]
    assert sorted(_ids(client, auth, country="pt")) == sorted([ana.id, eve.id])
    assert sorted(_ids(client, auth, city="PORTO")) == sorted([ana.id, eve.id])
    assert sorted(_ids(client, auth, is_lead="true")) == sorted([ana.id, eve.id])
    assert _ids(client, auth, is_lead="false") == [bob.id]
    assert _ids(client, auth, is_customer="true") == [bob.id]
    assert sorted(_ids(client, auth, is_customer="false")) == sorted([ana.id, eve.id])
    after = (t + dt.timedelta(days=10)).isoformat()
    before = (t + dt.timedelta(days=20)).isoformat()
    assert _ids(client, auth, created_after=after, created_before=before) == [bob.id]
    assert sorted(_ids(client, auth, created_after=after)) == sorted([bob.id, eve.id])
    _problem(client.get(URL, params={"created_after": "2026-03-01T00:00:00"}, headers=auth), 422, "created_after")
    _problem(client.get(URL, params={"stage": "nope"}, headers=auth), 422, "stage")
    _problem(client.get(URL, params={"cursor": "garbage!"}, headers=auth), 422, "cursor")


def test_pagination_walks_every_contact_once(
    client: TestClient, auth: dict[str, str], session: Session, workspace: Workspace, make: Any
) -> None:
    made = [make.contact(session, workspace.id).id for _ in range(11)]
    walked = _ids(client, auth)
    assert walked == sorted(made, reverse=True)
    assert len(set(walked)) == len(walked) == 11


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "nul@example.com", "first_name": "a\u0000b"}, "first_name"),
        ({"email": "nul@example.com", "traits": {"k": ["x", "a\u0000b"]}}, "traits"),
        ({"email": "nul@example.com", "traits": {"a\u0000": 1}}, "traits"),
    ],
)
def test_nul_characters_are_422_not_a_database_error(
    client: TestClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    _problem(client.post(URL, json=body, headers=auth), 422, field)


def test_out_of_range_input_is_4xx_never_500(client: TestClient, auth: dict[str, str]) -> None:
    huge = 10**20
    _problem(client.get(f"{URL}/{huge}", headers=auth), 422, "contact_id")
    _problem(client.get(f"{URL}/{huge}/timeline", headers=auth), 422, "contact_id")
    _problem(client.get(URL, params={"q": "a\u0000"}, headers=auth), 422, "q")
    _problem(client.get(URL, params={"cursor": "aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}, headers=auth), 422, "cursor")
    raw_nan = b'{"email": "nan@example.com", "traits": {"score": NaN}}'
    r = client.post(URL, content=raw_nan, headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422, r.text
