from fastapi.testclient import TestClient


def test_create_read_update_list_product(client: TestClient, auth: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/products",
        json={"sku": "MUG-1", "name": "Mug", "price": 1250, "currency": "EUR"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert client.get(f"/api/v1/products/{pid}", headers=auth).json()["price"] == 1250
    patched = client.patch(f"/api/v1/products/{pid}", json={"price": 990}, headers=auth)
    assert patched.json()["price"] == 990
    for i in range(3):
        client.post(
            "/api/v1/products",
            json={"sku": f"S{i}", "name": f"N{i}", "price": 1, "currency": "EUR"},
            headers=auth,
        )
    page1 = client.get("/api/v1/products?limit=2", headers=auth).json()
    page2 = client.get(f"/api/v1/products?limit=2&cursor={page1['next_cursor']}", headers=auth).json()
    ids = [p["id"] for p in page1["data"] + page2["data"]]
    assert len(set(ids)) == 4
    assert page2["next_cursor"] is None


def test_duplicate_sku_is_409_problem(client: TestClient, auth: dict[str, str]) -> None:
    body = {"sku": "DUP", "name": "x", "price": 1, "currency": "EUR"}
    assert client.post("/api/v1/products", json=body, headers=auth).status_code == 201
    dup = client.post("/api/v1/products", json=body, headers=auth)
    assert dup.status_code == 409
    assert dup.headers["content-type"].startswith("application/problem+json")
    assert "sku" in dup.json()["detail"]


def test_unknown_field_and_wrong_type_name_the_field(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post(
        "/api/v1/products",
        json={"sku": "A", "name": "x", "price": "lots", "currency": "EUR", "colour": "red"},
        headers=auth,
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "price" in detail
    assert "colour" in detail


def test_missing_key_is_401(client: TestClient) -> None:
    r = client.get("/api/v1/products")
    assert r.status_code == 401
    assert r.json()["status"] == 401


def test_hostile_ids_and_text_are_422_not_500(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/api/v1/products/99999999999999999999", headers=auth).status_code == 422
    r = client.post("/api/v1/products", json={"sku": "A\x00", "name": "x", "price": 1, "currency": "EUR"}, headers=auth)
    assert r.status_code == 422
    assert "sku" in r.json()["detail"]
