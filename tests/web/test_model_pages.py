"""The three models' pages through the TestClient: empty states, figures equal to the API's, forms behind CSRF."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.insight import clv_service, related_service
from storefunnel.models import KeyKind, User, Workspace
from storefunnel.workspaces.service import create_user
from tests.insight.simulated import ANCHOR, simulated_store
from tests.insight.test_attribution_service import journeys_data  # noqa: F401  (fixture)
from tests.web.helpers import PASSWORD, csrf_from, login


@pytest.fixture
def signed_in(client: TestClient, user: User) -> TestClient:
    assert login(client, user.email)[0] == 303
    return client


def values(html: str, attr: str) -> list[str]:
    return re.findall(rf'{attr}="([^"]+)"', html)


def test_pages_are_in_the_nav_and_need_a_login(client: TestClient, signed_in: TestClient) -> None:
    html = signed_in.get("/overview").text
    for path in ("/marketing/attribution", "/sales/clv", "/sales/related"):
        assert f'href="{path}"' in html
    signed_in.cookies.clear()
    r = client.get("/sales/clv", follow_redirects=False)
    assert r.status_code == 303
    assert "/login" in r.headers["location"]


def test_empty_workspace_shows_what_to_do(signed_in: TestClient) -> None:
    clv_page = signed_in.get("/sales/clv")
    assert clv_page.status_code == 200
    assert "No lifetime-value fit yet" in clv_page.text
    related_page = signed_in.get("/sales/related")
    assert "No related products learnt yet" in related_page.text
    att = signed_in.get("/marketing/attribution")
    assert att.status_code == 200
    assert "No conversions with touches" in att.text


def test_refit_with_too_little_history_says_why(signed_in: TestClient) -> None:
    token = csrf_from(signed_in.get("/sales/clv").text)
    r = signed_in.post("/sales/clv/fit", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 422
    assert "orders:" in r.text
    assert signed_in.post("/sales/clv/fit", data={}, follow_redirects=False).status_code == 403


def test_attribution_page_matches_the_api(
    signed_in: TestClient,
    auth: dict[str, str],
    journeys_data: dict[str, int],  # noqa: F811
) -> None:
    q = "from=2026-03-01&to=2026-03-31&lookback_days=30"
    page = signed_in.get(f"/marketing/attribution?{q}")
    assert page.status_code == 200
    api = signed_in.get(f"/api/v1/attribution?{q}&bootstrap=0", headers=auth).json()
    for row in api["rows"]:
        cells = re.search(rf'<tr data-label="{re.escape(row["channel"])}">(.*?)</tr>', page.text, re.S)
        assert cells, row["channel"]
        for model, credit in row["conversions"].items():
            shown = re.search(rf'data-model="{model}" data-value="([^"]+)"', cells.group(1))
            assert shown, (row["channel"], model)
            assert float(shown.group(1)) == pytest.approx(credit, abs=1e-4)
    bad = signed_in.get("/marketing/attribution?by=device")
    assert bad.status_code == 422
    assert "by:" in bad.text


def test_clv_and_related_pages_on_a_simulated_store(session: Session, client: TestClient, database_url: str) -> None:
    ws, _ = simulated_store(database_url)
    owner = create_user(session, ws, f"owner-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
    assert login(client, owner.email)[0] == 303
    clv_service.fit_clv(session, ws, ANCHOR)
    related_service.build_related(session, ws)
    auth = {"Authorization": f"Bearer {create_key(session, ws, KeyKind.api)[1]}"}

    page = client.get("/sales/clv").text
    dist = client.get("/api/v1/clv/distribution", headers=auth).json()
    keep = client.get("/api/v1/clv/keep-in-touch?limit=50", headers=auth).json()
    assert re.search(rf'data-figure="customers" data-value="{dist["customers"]}"', page)
    assert re.search(rf'data-figure="keep_in_touch" data-value="{keep["total"]}"', page)
    assert re.search(rf'data-figure="total_clv" data-value="{dist["total"]:.0f}"', page)
    bars = [int(n) for n in values(page, "data-count")]
    assert bars == dist["counts"]
    listed = [int(c) for c in re.findall(r'<tr data-contact="(\d+)">\s*<td>\d+</td>', page)]
    assert listed == [c["contact_id"] for c in keep["items"]]

    rel = client.get("/sales/related").text
    rules = client.get("/api/v1/related/rules?limit=50", headers=auth).json()
    shown = [float(v) for v in re.findall(r'<td class="num" data-value="([^"]+)">', rel)]
    assert shown == pytest.approx([r["lift"] for r in rules["items"]], abs=1e-4)
    pid = rules["items"][0]["antecedent"]["product_id"]
    one = client.get(f"/sales/related?product_id={pid}").text
    assert set(values(one, "data-antecedent")) == {str(pid)}
    assert client.get("/sales/related?product_id=abc").status_code == 200


def test_other_workspace_sees_nothing(
    signed_in: TestClient, workspace: Workspace, database_url: str, session: Session
) -> None:
    ws, _ = simulated_store(database_url)
    related_service.build_related(session, ws)
    assert "No related products learnt yet" in signed_in.get("/sales/related").text
