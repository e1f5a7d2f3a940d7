"""The Together hat in a real Chromium against a real server: the advice, the funnel and who buys, as the API says."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key
from storefunnel.models import KeyKind
from storefunnel.workspaces.service import create_user
from tests.e2e.browser import launch
from tests.e2e.test_models_browser import PASSWORD
from tests.fixtures.server import LiveServer
from tests.insight.simulated import simulated_store

pytestmark = pytest.mark.e2e

QUERY = "from=2026-10-04&to=2026-10-31"


def test_together_hat_walk(live_server: LiveServer, committed_session: Session, database_url: str) -> None:
    ws, _ = simulated_store(database_url)
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    create_user(committed_session, ws, email, PASSWORD)
    key = create_key(committed_session, ws, KeyKind.api)[1]
    committed_session.commit()
    api = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    advice = api.get(f"/api/v1/insight/advice?{QUERY}").json()
    funnel = api.get(f"/api/v1/insight/funnel?{QUERY}").json()
    who = api.get("/api/v1/insight/who-buys?from=2025-11-01&to=2026-10-31").json()

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
            page.set_default_timeout(120_000)
            page.goto(live_server.url + "/together/advice?" + QUERY)
            page.fill("#email", email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector('[data-testid="chart-stages"]')
            assert page.inner_text('[data-testid="summary"]').strip() == advice["summary"]
            statuses = page.locator('[data-testid="stages"] tbody tr[data-stage]').evaluate_all(
                "rows => rows.map(r => [r.dataset.stage, r.dataset.status])"
            )
            assert statuses == [[s["stage"], s["status"]] for s in advice["stages"]]
            shown = page.locator('[data-testid="recommendations"] li').count()
            assert shown == len(advice["recommendations"])

            page.fill('[data-testid="targets"] input[name="leads_per_week"]', "1234")
            page.click('[data-testid="targets"] button[type=submit]')
            page.wait_for_selector('[data-testid="targets"]')
            assert page.input_value('[data-testid="targets"] input[name="leads_per_week"]') == "1234.0"
            assert api.get("/api/v1/insight/advice/targets").json()["leads_per_week"] == 1234

            page.click('nav a[href="/together/funnel"]')
            page.wait_for_selector('[data-testid="chart-steps"]')
            page.goto(live_server.url + "/together/funnel?" + QUERY)
            page.wait_for_selector('[data-testid="steps"]')
            counts = page.locator('[data-testid="steps"] tbody tr td:nth-child(2)').all_inner_texts()
            assert [int(c.replace(",", "")) for c in counts] == [s["count"] for s in funnel["steps"]]

            page.click('nav a[href="/together/who-buys"]')
            page.wait_for_selector('[data-testid="finding"]')
            page.goto(live_server.url + "/together/who-buys?from=2025-11-01&to=2026-10-31")
            page.wait_for_selector('[data-testid="finding"]')
            if who["top"]:
                assert who["top"]["sentence"] in page.inner_text('[data-testid="finding"]')
        finally:
            browser.close()
