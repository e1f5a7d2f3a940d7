"""The OpenAPI description is served publicly and describes every API route the app has."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from storefunnel.main import create_app


def test_openapi_is_served_without_a_key_and_lists_the_routes(client: TestClient) -> None:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "storefunnel"
    paths = spec["paths"]
    for path, methods in {
        "/api/v1/contacts": {"get", "post"},
        "/api/v1/contacts/{contact_id}": {"get", "patch"},
        "/api/v1/contacts/{contact_id}/timeline": {"get"},
        "/api/v1/orders": {"get", "post"},
        "/api/v1/orders/{order_id}": {"get", "patch"},
        "/api/v1/products": {"get", "post"},
    }.items():
        assert methods <= set(paths[path]), path


def test_every_api_route_is_in_the_spec(client: TestClient) -> None:
    """Nothing under /api is served undocumented: the spec and the router agree route for route."""
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for route in iter_route_contexts(create_app().routes):
        path = route.path_format or ""
        if not path.startswith("/api/v1/") or path in {"/api/v1/openapi.json", "/api/v1/docs"}:
            continue
        for method in route.methods or ():
            assert method.lower() in paths.get(path, {}), f"{method} {path} is missing from the OpenAPI spec"


def test_spec_documents_validation_and_the_timeline_union(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "email" in schemas["ContactCreate"]["properties"]
    assert schemas["ContactCreate"]["additionalProperties"] is False
    assert "placed_at" in schemas["OrderCreate"]["required"]
    timeline = spec["paths"]["/api/v1/contacts/{contact_id}/timeline"]["get"]
    page_ref = timeline["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    items = schemas[page_ref]["properties"]["data"]["items"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(items["discriminator"]["mapping"]) == {"touch", "order", "stage_change"}


def test_docs_page_is_served(client: TestClient) -> None:
    r = client.get("/api/v1/docs")
    assert r.status_code == 200
    assert "swagger" in r.text.lower()
