"""The flow editor in a real Chromium against a real server: change a step's wait, email subject and condition, see a
refusal next to the step, add and remove steps, switch the flow on; after a reload (and in the database) it stuck."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect, sync_playwright
from sqlalchemy.orm import Session

from storefunnel.messaging import flows
from storefunnel.models import EmailTemplate, Flow, Workspace
from storefunnel.workspaces.service import create_user, create_workspace
from tests.e2e.browser import launch
from tests.e2e.test_marketing_browser import shot
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.e2e

PASSWORD = "flows are edited here"


@dataclass
class Store:
    workspace_id: int
    flow_id: int
    email: str


@pytest.fixture
def store(committed_session: Session) -> Iterator[Store]:
    s = committed_session
    ws = create_workspace(s, f"flows-{uuid.uuid4().hex[:10]}")
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    create_user(s, ws.id, email, PASSWORD)
    flow = flows.install(s, ws.id, "welcome", enabled=False)
    s.commit()
    yield Store(ws.id, flow.id, email)
    s.delete(s.get(Workspace, ws.id))
    s.commit()


def test_edit_a_step_in_the_browser_and_it_persists(
    live_server: LiveServer, store: Store, committed_session: Session
) -> None:
    base = live_server.url
    problems: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            page.goto(f"{base}/marketing/flows/{store.flow_id}")
            page.fill("#email", store.email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/marketing/flows/{store.flow_id}")
            step = page.locator('.flow-step[data-step="1"]')
            expect(step).to_have_attribute("data-delay-minutes", str(2 * 24 * 60))

            # Step 2: wait 3 days instead of 2, a new subject, only if the welcome was not opened. Saved by HTMX.
            step.locator('[data-field="delay"]').fill("3")
            step.locator('[data-field="subject"]').fill("Three days with {{ store }}")
            step.locator('[data-field="condition"]').select_option("no_open_of_previous")
            step.locator('[data-testid="save-step-1"]').click()
            expect(page.locator('.flow-step[data-step="1"]')).to_have_attribute("data-delay-minutes", str(3 * 24 * 60))
            assert page.url == f"{base}/marketing/flows/{store.flow_id}"  # swapped in place, no navigation

            # A wait the API refuses is refused here, next to the step, and the typed value stays.
            step = page.locator('.flow-step[data-step="2"]')
            step.locator('[data-field="delay"]').fill("400")
            step.locator('[data-testid="save-step-2"]').click()
            expect(page.locator('[data-testid="error-step-2"]')).to_contain_text("at most 365 days")
            expect(page.locator('.flow-step[data-step="2"] [data-field="delay"]')).to_have_value("400")
            refused = [m for m in problems if "status of 422" in m]
            assert len(refused) == 1  # the browser logs the refusal's status; nothing else went wrong
            problems.remove(refused[0])
            shot(page, "flow-editor-error")

            # Add a fourth step a week later with the first email, then remove the first step.
            add = page.locator('[data-testid="add-step"]')
            add.locator('[data-field="delay"]').fill("7")
            add.locator('[data-field="unit"]').select_option("days")
            add.locator('[data-field="template"]').select_option(label="welcome-1")
            add.locator("button[type=submit]").click()
            expect(page.locator(".flow-step")).to_have_count(4)
            page.locator('[data-testid="remove-step-0"]').click()
            expect(page.locator(".flow-step")).to_have_count(3)

            page.locator('[data-testid="flow-toggle"]').click()
            expect(page.locator('[data-testid="flow-state"]')).to_have_attribute("data-enabled", "on")

            # After a reload the page shows what is stored.
            page.reload()
            steps = page.locator(".flow-step")
            expect(steps).to_have_count(3)
            expect(steps.nth(0)).to_have_attribute("data-delay-minutes", str(3 * 24 * 60))
            expect(steps.nth(0).locator('[data-field="subject"]')).to_have_value("Three days with {{ store }}")
            expect(steps.nth(0).locator('[data-field="condition"]')).to_have_value("no_open_of_previous")
            expect(steps.nth(2)).to_have_attribute("data-delay-minutes", str(7 * 24 * 60))
            shot(page, "flow-editor")
        finally:
            browser.close()
    assert problems == []

    s = committed_session
    s.expire_all()
    flow = s.get(Flow, store.flow_id)
    assert flow is not None
    assert flow.enabled
    stored = flows.steps_of(s, flow.id)
    assert [x.delay_minutes for x in stored] == [3 * 24 * 60, 5 * 24 * 60, 7 * 24 * 60]
    assert stored[0].condition == {"no_open_of_previous": True}
    names = dict(
        s.execute(
            sa.select(EmailTemplate.id, EmailTemplate.name).where(EmailTemplate.workspace_id == store.workspace_id)
        ).all()
    )
    assert [names[x.template_id] for x in stored] == ["welcome-2", "welcome-3", "welcome-1"]
    second = s.get(EmailTemplate, stored[0].template_id)
    assert second is not None
    assert second.subject == "Three days with {{ store }}"
