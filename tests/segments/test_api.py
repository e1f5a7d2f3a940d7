"""/api/v1/segments over HTTP (TestClient on the test transaction)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import KeyKind
from storefunnel.workspaces.service import create_workspace

PT = {"field": "country", "op": "eq", "value": "PT"}
URL = "/api/v1/segments"


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    return body


def test_crud_evaluates_on_save(client: TestClient, auth: dict[str, str], people: dict[str, int]) -> None:
    r = client.post(URL, json={"name": "Portugal", "rules": PT, "description": "PT shoppers"}, headers=auth)
    assert r.status_code == 201, r.text
    seg = r.json()
    assert (seg["kind"], seg["member_count"], seg["rules"]) == ("dynamic", 2, PT)
    assert seg["refreshed_at"] is not None
    assert client.get(f"{URL}/{seg['id']}", headers=auth).json()["name"] == "Portugal"

    spain = {"field": "country", "op": "in", "value": ["ES"]}
    r = client.patch(f"{URL}/{seg['id']}", json={"rules": spain, "name": "Spain"}, headers=auth)
    assert (r.json()["member_count"], r.json()["name"]) == (1, "Spain")
    listed = client.get(URL, headers=auth).json()
    assert [s["name"] for s in listed["data"]] == ["Spain"]
    assert client.get(f"{URL}?kind=static", headers=auth).json()["data"] == []
    refreshed = client.post(f"{URL}/{seg['id']}/refresh", headers=auth).json()
    assert (refreshed["entered"], refreshed["left"], refreshed["member_count"]) == (0, 0, 1)

    assert client.delete(f"{URL}/{seg['id']}", headers=auth).status_code == 204
    problem(client.get(f"{URL}/{seg['id']}", headers=auth), 404)


def test_bad_rules_are_422_naming_the_node(client: TestClient, auth: dict[str, str]) -> None:
    rules = {"all": [PT, PT, {"any": [{"field": "country", "op": "gt", "value": "PT"}]}]}
    for url, body in ((URL, {"name": "x", "rules": rules}), (f"{URL}/preview", {"rules": rules})):
        body_ = problem(client.post(url, json=body, headers=auth), 422)
        assert body_["detail"].startswith("rules.all[2].any[0].op: 'gt' is not an operator for string field")
        assert body_["errors"][0]["path"] == "rules.all[2].any[0].op"
    body_ = problem(client.post(URL, json={"name": "x", "rules": {"segment": 424242}}, headers=auth), 422)
    assert body_["errors"] == [{"path": "rules.segment", "message": "unknown segment 424242"}]
    body_ = problem(client.post(URL, json={"name": "x", "rules": [PT]}, headers=auth), 422)
    assert "rules" in body_["detail"]
    body_ = problem(client.post(URL, json={"name": "x"}, headers=auth), 422)
    assert body_["detail"].startswith("rules:")
    assert client.get(URL, headers=auth).json()["data"] == []  # nothing half-saved


def test_preview_counts_without_saving(client: TestClient, auth: dict[str, str], people: dict[str, int]) -> None:
    rules = {"any": [PT, {"field": "order_count", "op": "gte", "value": 1}]}
    r = client.post(f"{URL}/preview", json={"rules": rules, "sample_size": 2}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3
    assert [c["id"] for c in body["sample"]] == [people["carla"], people["bob"]]  # newest first
    assert client.get(URL, headers=auth).json()["data"] == []
    assert client.post(f"{URL}/preview", json={"rules": PT, "sample_size": 0}, headers=auth).json() == {
        "count": 2,
        "sample": [],
    }
    problem(client.post(f"{URL}/preview", json={"rules": PT, "sample_size": 1000}, headers=auth), 422)


def test_members_pages_and_growth(client: TestClient, auth: dict[str, str], people: dict[str, int]) -> None:
    seg = client.post(URL, json={"name": "Anyone", "rules": {"field": "email", "op": "is_set"}}, headers=auth).json()
    assert seg["member_count"] == 4
    first = client.get(f"{URL}/{seg['id']}/members?limit=3", headers=auth).json()
    second = client.get(f"{URL}/{seg['id']}/members?limit=3&cursor={first['next_cursor']}", headers=auth).json()
    got = [m["contact_id"] for m in first["data"] + second["data"]]
    assert sorted(got) == sorted(people.values())
    assert second["next_cursor"] is None
    assert {m["email"] for m in first["data"]} <= {"ana@shop.pt", "bob@example.com", "carla@example.org",
                                                    "dan_x%@example.com"}  # fmt: skip
    assert client.get(f"{URL}/{seg['id']}/members?state=left", headers=auth).json()["data"] == []
    problem(client.get(f"{URL}/{seg['id']}/members?cursor=nonsense", headers=auth), 422)

    growth = client.get(f"{URL}/{seg['id']}/growth?interval=day", headers=auth).json()
    assert growth["interval"] == "day"
    assert growth["points"][-1]["members"] == 4
    assert sum(p["entered"] for p in growth["points"]) == 4
    problem(client.get(f"{URL}/{seg['id']}/growth?interval=hour", headers=auth), 422)
    problem(client.get(f"{URL}/{seg['id']}/growth?since=2026-03-02&until=2026-03-01", headers=auth), 422)
    problem(client.get(f"{URL}/{seg['id']}/growth?since=1990-01-01", headers=auth), 422)


def test_static_add_and_remove(client: TestClient, auth: dict[str, str], people: dict[str, int]) -> None:
    seg = client.post(URL, json={"name": "VIP", "kind": "static"}, headers=auth).json()
    assert (seg["kind"], seg["member_count"], seg["rules"]) == ("static", 0, None)
    r = client.post(
        f"{URL}/{seg['id']}/members", json={"contact_ids": [people["ana"]], "emails": ["bob@example.com"]}, headers=auth
    )
    assert r.json() == {"segment_id": seg["id"], "added": 2, "removed": 0, "member_count": 2}
    body = problem(client.post(f"{URL}/{seg['id']}/members", json={"emails": ["x@y.z"]}, headers=auth), 422)
    assert body["errors"] == [{"path": "emails[0]", "message": "no contact with email 'x@y.z'"}]
    r = client.post(f"{URL}/{seg['id']}/members/remove", json={"contact_ids": [people["ana"]]}, headers=auth)
    assert r.json()["removed"] == 1
    assert r.json()["member_count"] == 1
    dyn = client.post(URL, json={"name": "PT", "rules": PT}, headers=auth).json()
    problem(client.post(f"{URL}/{dyn['id']}/members", json={"contact_ids": [people["ana"]]}, headers=auth), 409)
    problem(client.post(URL, json={"name": "VIP", "kind": "static"}, headers=auth), 409)
    problem(client.post(URL, json={"name": "L2", "kind": "static", "rules": PT}, headers=auth), 422)


def test_workspaces_are_isolated(client: TestClient, auth: dict[str, str], session: Session) -> None:
    other = create_workspace(session, "segments-api-other")
    other_auth = {"Authorization": f"Bearer {create_key(session, other.id, KeyKind.api)[1]}"}
    theirs = client.post(URL, json={"name": "Theirs", "rules": PT}, headers=other_auth).json()
    problem(client.get(f"{URL}/{theirs['id']}", headers=auth), 404)
    problem(client.get(f"{URL}/{theirs['id']}/members", headers=auth), 404)
    problem(client.post(f"{URL}/{theirs['id']}/refresh", headers=auth), 404)
    problem(client.delete(f"{URL}/{theirs['id']}", headers=auth), 404)
    body = problem(client.post(URL, json={"name": "Mine", "rules": {"segment": theirs["id"]}}, headers=auth), 422)
    assert body["errors"][0]["path"] == "rules.segment"
    assert client.get(URL, headers=auth).json()["data"] == []
    problem(client.get(URL), 401)
