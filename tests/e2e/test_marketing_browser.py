"""Marketing in a real Chromium against a real server: make a write key in Settings, send events over HTTP with it
(as a store's backend would, and through the page snippet), watch them arrive in Recent events, find the lead."""

from __future__ import annotations

import base64
import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy.orm import Session

from storefunnel.config import get_settings
from storefunnel.models import Workspace
from storefunnel.workspaces.service import create_user, create_workspace
from tests.e2e.browser import launch
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.e2e

TZ = "Europe/Lisbon"
PASSWORD = "a marketer typed this"
SHOTS = Path(os.environ.get("STOREFUNNEL_SCREENSHOTS", "bench/out/screenshots"))


@dataclass
class Store:
    workspace_id: int
    email: str


@pytest.fixture
def store(committed_session: Session) -> Iterator[Store]:
    s = committed_session
    ws = create_workspace(s, f"marketing-{uuid.uuid4().hex[:10]}", timezone=TZ)
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    create_user(s, ws.id, email, PASSWORD)
    s.commit()
    yield Store(ws.id, email)
    s.delete(s.get(Workspace, ws.id))
    s.commit()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@contextmanager
def shop_site(html: str) -> Iterator[str]:
    """A one-page store on its own origin (another port), served from a thread of this process."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/shop.html"
    finally:
        server.shutdown()
        server.server_close()


def send_batch(base: str, write_key: str, messages: list[dict[str, object]]) -> httpx.Response:
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    return httpx.post(
        base + "/v1/batch", json={"batch": messages}, headers={"Authorization": f"Basic {basic}"}, timeout=10
    )


def test_write_key_events_arrive_live_and_the_lead_shows(live_server: LiveServer, store: Store) -> None:
    base = live_server.url
    problems: list[str] = []
    anon = f"anon-{uuid.uuid4().hex[:8]}"
    lead_email = f"lead-{uuid.uuid4().hex[:6]}@example.com"
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900}, timezone_id="America/Chicago")
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            page.goto(base + "/settings")
            page.fill("#email", store.email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/settings")

            # Create a write key: shown once, with a working copy button.
            page.fill('[data-testid="create-write"] input[name="name"]', "web shop")
            page.click('[data-testid="create-write"] button[type=submit]')
            token = page.locator('[data-testid="new-key-token"]').inner_text().strip()
            assert token.startswith("sfw_")
            page.click('[data-testid="new-key"] [data-copy]')
            page.wait_for_selector('[data-testid="new-key"] [data-copied="true"]')
            assert page.evaluate("navigator.clipboard.readText()") == token
            assert page.locator('[data-testid="keys-write"] tbody tr').count() == 1
            assert token[:12] in page.locator('[data-testid="keys-write"]').inner_text()
            shot(page, "settings")

            # Recent events is open and polling before anything is sent.
            page.goto(base + "/marketing/events")
            assert page.locator("tr[data-touch-id]").count() == 0
            now = dt.datetime.now(dt.UTC)
            r = send_batch(
                base,
                token,
                [
                    {
                        "type": "page",
                        "anonymousId": anon,
                        "messageId": uuid.uuid4().hex,
                        "timestamp": (now - dt.timedelta(minutes=3)).isoformat(),
                        "properties": {
                            "url": "https://shop.test/spring?utm_source=news&utm_medium=email&utm_campaign=spring"
                        },
                    },
                    {
                        "type": "identify",
                        "anonymousId": anon,
                        "userId": "cust-e2e",
                        "messageId": uuid.uuid4().hex,
                        "timestamp": (now - dt.timedelta(minutes=2)).isoformat(),
                        "traits": {"email": lead_email, "firstName": "Inês"},
                    },
                    {
                        "type": "track",
                        "userId": "cust-e2e",
                        "event": "Product Viewed",
                        "messageId": uuid.uuid4().hex,
                        "timestamp": (now - dt.timedelta(minutes=1)).isoformat(),
                    },
                ],
            )
            assert r.status_code == 200
            assert r.json() == {"success": True}
            expect(page.locator("tr[data-touch-id]")).to_have_count(2)  # brought by the 2 s poll
            rows = page.locator("tr[data-touch-id]")
            assert rows.nth(0).get_attribute("data-kind") == "track"
            assert "Product Viewed" in rows.nth(0).inner_text()
            assert lead_email in rows.nth(0).inner_text()
            assert rows.nth(1).get_attribute("data-kind") == "page"
            assert "Email" in rows.nth(1).inner_text()  # the utm-tagged visit's channel
            assert lead_email in page.locator("table.profiles").inner_text()  # the identify call

            page.select_option('[data-testid="kind-filter"]', "track")
            page.wait_for_selector('#event-feed[data-kind="track"]')
            assert page.locator("tr[data-touch-id]").count() == 1
            shot(page, "events")

            # The lead, on the Leads page, with the channel and its first touches.
            page.goto(base + "/marketing/leads?preset=7")
            lead_row = page.locator("table.latest-leads tbody tr").first
            assert lead_email in lead_row.inner_text()
            assert "Inês" in lead_row.inner_text()
            assert "Email" in lead_row.inner_text()
            touches = lead_row.locator("ol.touches li")
            assert touches.count() == 2
            assert "page" in touches.nth(0).inner_text()
            assert "news / email / spring" in touches.nth(0).inner_text()
            assert page.locator('[data-figure="leads"]').get_attribute("data-value") == "1"
            assert page.locator('tr[data-channel="Email"]').get_attribute("data-leads") == "1"
            page.wait_for_selector('[data-leads-chart][data-state="ready"]')
            painted = page.evaluate(
                """() => Array.from(document.querySelectorAll('[data-chart="leads"] canvas')).map(c => {
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })"""
            )
            assert len(painted) == 1
            assert painted[0] > 500
            shot(page, "leads")
        finally:
            browser.close()
    assert problems == []


def test_the_settings_snippet_sends_from_a_store_page(live_server: LiveServer, store: Store) -> None:
    """The browser snippet, pasted into a page elsewhere with a real write key, lands a page view and a track call."""
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            page.goto(base + "/settings")
            page.fill("#email", store.email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/settings")
            page.click('[data-testid="create-write"] button[type=submit]')
            token = page.locator('[data-testid="new-key-token"]').inner_text().strip()
            snippet = page.locator('[data-testid="browser-snippet"]').inner_text()
            assert "YOUR_WRITE_KEY" in snippet
            # The snippet names the server's public address; this test server listens on a free port instead.
            public = get_settings().public_url.rstrip("/")
            assert f'var host = "{public}"' in snippet
            snippet = snippet.replace(f'"{public}"', f'"{base}"').replace("YOUR_WRITE_KEY", token)

            html = "<!doctype html><title>Shop</title><h1>A shop</h1>" + snippet
            with shop_site(html) as shop_url:  # another origin, as a real store would be
                shop = browser.new_page()
                shop.set_default_timeout(10_000)
                statuses: list[int] = []
                shop.on("response", lambda resp: statuses.append(resp.status) if "/v1/" in resp.url else None)
                shop.goto(shop_url)
                shop.wait_for_function("window.analytics && window.analytics.ready === true")
                assert shop.evaluate("analytics.track('Added To Cart', {sku: 'MUG-1'}).then(r => r.status)") == 200
            page.goto(base + "/marketing/events")
            expect(page.locator("tr[data-touch-id]")).to_have_count(2)  # brought by the 2 s poll
            kinds = [page.locator("tr[data-touch-id]").nth(i).get_attribute("data-kind") for i in range(2)]
            assert sorted(k or "" for k in kinds) == ["page", "track"]
            assert "Added To Cart" in page.locator("table.events").inner_text()
            assert statuses
            assert all(s == 200 for s in statuses)
        finally:
            browser.close()
