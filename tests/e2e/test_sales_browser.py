"""The Sales pages in a real Chromium against a real server: Pipeline counts, then a lead's page and its reasons."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import sync_playwright
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storefunnel.cycle import service as cycle
from storefunnel.models import Contact, StageChange
from storefunnel.scoring import service as scoring
from storefunnel.workspaces.service import create_user
from tests.e2e.browser import launch
from tests.fixtures.server import LiveServer
from tests.scoring.helpers import SimStore, drop, simulated_store

pytestmark = pytest.mark.e2e

PASSWORD = "a browser typed this"


@pytest.fixture
def store(engine: Engine) -> Iterator[tuple[SimStore, str]]:
    today = dt.datetime.now(dt.UTC).date()
    s = simulated_store(engine, contacts=2000, days=100, seed=13, anchor=today)
    email = f"seller-{uuid.uuid4().hex[:8]}@example.com"
    with Session(engine) as sess:
        cycle.recompute(sess, s.workspace_id)
        create_user(sess, s.workspace_id, email, PASSWORD)
        sess.commit()
    yield s, email
    drop(engine, s.workspace_id)


def test_pipeline_then_a_lead_and_why(live_server: LiveServer, store: tuple[SimStore, str], engine: Engine) -> None:
    sim, email = store
    base = live_server.url
    problems: list[str] = []
    with Session(engine) as s:
        counts = dict(
            s.execute(
                sa.select(Contact.stage, sa.func.count())
                .where(Contact.workspace_id == sim.workspace_id, Contact.stage.is_not(None))
                .group_by(Contact.stage)
            ).all()
        )
        lead = scoring.leads_to_follow_up(s, sim.workspace_id, 1)[0]
        history = s.scalars(
            sa.select(StageChange.stage)
            .where(StageChange.contact_id == lead["contact_id"])
            .order_by(StageChange.changed_at)
        ).all()
        explanation = scoring.explain(s, sim.workspace_id, lead["contact_id"])
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            page.goto(base + "/sales/pipeline")
            assert page.url.startswith(base + "/login?next=/sales/pipeline")
            page.fill("#email", email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/sales/pipeline")
            for stage, n in counts.items():
                row = page.locator(f'table.stages tr[data-stage="{stage}"]')
                assert row.get_attribute("data-contacts") == str(n)
            assert page.locator('[data-figure="total"]').get_attribute("data-value") == str(sum(counts.values()))
            assert page.locator('svg[data-chart="stages"] rect').count() == 6
            assert page.locator('svg[data-chart="stages"]').bounding_box()["height"] > 100  # type: ignore[index]

            # The 30-day preset swaps the body in place and the address follows.
            page.click('a[data-preset="7"]')
            page.wait_for_selector('.chip.active[data-preset="7"]')
            assert page.url.endswith("/sales/pipeline?preset=7")

            page.click('nav.nav a[href="/sales/follow-up"]')
            page.wait_for_url(base + "/sales/follow-up")
            first = page.locator("table.follow-up tbody tr").first
            assert first.get_attribute("data-contact") == str(lead["contact_id"])
            first.locator('[data-testid="contact-link"]').click()
            page.wait_for_url(base + f"/sales/contacts/{lead['contact_id']}")

            shown = page.locator("table.stage-history tbody tr").evaluate_all(
                "rows => rows.map(r => r.getAttribute('data-stage'))"
            )
            assert shown == list(history)
            score = page.locator('[data-figure="score"]').get_attribute("data-value")
            assert score is not None
            assert float(score) == pytest.approx(explanation["score"])
            top = max(explanation["factors"], key=lambda f: abs(f["contribution"]))
            cell = page.locator(f'table.explanation tr[data-feature="{top["feature"]}"] td').first
            assert cell.inner_text() == top["text"]
        finally:
            browser.close()
    assert problems == []
