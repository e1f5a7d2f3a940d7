"""Attribution and lifetime value in a real Chromium against a real server: the figures equal the API's."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.insight import clv_service
from storefunnel.models import KeyKind
from storefunnel.workspaces.service import create_user
from tests.e2e.browser import launch
from tests.fixtures.server import LiveServer
from tests.insight.simulated import ANCHOR, simulated_store

pytestmark = pytest.mark.e2e

PASSWORD = "a browser typed this"
QUERY = "from=2025-11-01&to=2026-10-31&lookback_days=30"


def test_attribution_and_clv_pages_show_the_apis_figures(
    live_server: LiveServer, committed_session: Session, database_url: str
) -> None:
    ws, _ = simulated_store(database_url)
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    create_user(committed_session, ws, email, PASSWORD)
    key = create_key(committed_session, ws, KeyKind.api)[1]
    clv_service.fit_clv(committed_session, ws, ANCHOR)
    committed_session.commit()
    api = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    attribution = api.get(f"/api/v1/attribution?{QUERY}&bootstrap=0").json()
    dist = api.get("/api/v1/clv/distribution").json()
    keep = api.get("/api/v1/clv/keep-in-touch?limit=50").json()

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
            page.set_default_timeout(120_000)
            page.goto(live_server.url + "/marketing/attribution?" + QUERY)
            page.fill("#email", email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector('[data-testid="attribution-table"]')
            conversions = page.get_attribute('[data-figure="conversions"]', "data-value")
            assert conversions == str(attribution["conversions"])
            for row in attribution["rows"]:
                tr = page.locator(f'tr[data-label="{row["channel"]}"]')
                for model in ("last_touch", "markov", "shapley"):
                    shown = tr.locator(f'td[data-model="{model}"]').get_attribute("data-value")
                    assert float(shown or "nan") == pytest.approx(row["conversions"][model], abs=1e-3)
                assert tr.locator('[data-interval="markov"]').count() == 1

            page.click('a[href="/sales/clv"]')
            page.wait_for_selector('[data-testid="clv-chart"]')
            assert page.get_attribute('[data-figure="customers"]', "data-value") == str(dist["customers"])
            assert page.get_attribute('[data-figure="keep_in_touch"]', "data-value") == str(keep["total"])
            bars = page.locator('[data-testid="clv-chart"] rect')
            assert [int(bars.nth(i).get_attribute("data-count") or -1) for i in range(bars.count())] == dist["counts"]
            listed = page.locator('[data-testid="keep-in-touch"] tbody tr').evaluate_all(
                "rows => rows.map(r => Number(r.getAttribute('data-contact')))"
            )
            assert listed == [c["contact_id"] for c in keep["items"]]
        finally:
            browser.close()
